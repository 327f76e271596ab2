// `mlops schema ...`, `mlops validate ...` and `mlops validations ...`: data validation on the
// monitoring service (docs/validation.md).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/common/strings.h"
#include "services/monitoring/schema_yaml.h"
#include "tools/cli/commands.h"
#include "tools/cli/monitoring_cli.h"

namespace mlops::cli {
namespace {

namespace mv1 = mlops::monitoring::v1;

std::string KindName(mv1::Anomaly::Kind kind) {
  std::string name = mv1::Anomaly::Kind_Name(kind);
  for (char& c : name) c = c == '_' ? ' ' : static_cast<char>(std::tolower(c));
  return name;
}

// A schema file's YAML, parsed. UsageError naming the file otherwise.
mv1::Schema ReadSchemaFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError{"cannot read " + path};
  std::stringstream text;
  text << in.rdbuf();
  auto schema = monitoring::SchemaFromYaml(text.str());
  if (!schema.ok()) throw UsageError{path + ": " + std::string(schema.status().message())};
  return *std::move(schema);
}

bool IsSchemaFile(const std::string& text) {
  return text.ends_with(".yaml") || text.ends_with(".yml") ||
         std::filesystem::is_regular_file(text);
}

class ValidationCli {
 public:
  ValidationCli(std::shared_ptr<grpc::Channel> channel, bool json)
      : stub_(mv1::MonitoringService::NewStub(channel)), json_(json) {}

  template <typename Request, typename Response>
  Response Call(grpc::Status (mv1::MonitoringService::Stub::*method)(grpc::ClientContext*,
                                                                     const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub_.get(), method, request, std::chrono::minutes(30));
  }

  int Schema(const std::string& command, Args& args) {
    if (command == "infer") {
      mv1::InferSchemaRequest request;
      request.set_dataset(args.Positional("DATASET@VERSION"));
      if (auto list = args.Take("--categorical")) {
        std::stringstream in(*list);
        std::string item;
        while (std::getline(in, item, ',')) {
          if (!item.empty()) request.add_categorical(item);
        }
      }
      if (auto n = args.Take("--max-categories")) {
        request.set_max_categories(static_cast<int32_t>(ParseInt(*n, "--max-categories")));
      }
      request.set_save(args.TakeFlag("--save"));
      args.ExpectEmpty();
      return Print(Call(&mv1::MonitoringService::Stub::InferSchema, request));
    }
    if (command == "put") {
      mv1::Schema schema = ReadSchemaFile(args.Positional("FILE.yaml"));
      if (auto name = args.Take("--name")) schema.set_name(*name);
      args.ExpectEmpty();
      if (schema.name().empty())
        throw UsageError{"the schema names no dataset: add name: or --name"};
      auto stored = Call(&mv1::MonitoringService::Stub::PutSchema, schema);
      if (json_) return PrintJson(stored), 0;
      std::cout << "schema " << stored.name() << " version " << stored.version() << ": "
                << stored.features_size() << " features\n";
      return 0;
    }
    if (command == "show") {
      std::string text = args.Positional("DATASET[@VERSION]");
      args.ExpectEmpty();
      mv1::GetSchemaRequest request;
      size_t at = text.find('@');
      request.set_name(text.substr(0, at));
      if (at != std::string::npos) request.set_version(ParseInt(text.substr(at + 1), "version"));
      return Print(Call(&mv1::MonitoringService::Stub::GetSchema, request));
    }
    throw UsageError{"mlops schema infer|put|show"};
  }

  int Validate(Args& args) {
    mv1::ValidateRequest request;
    request.set_dataset(args.Positional("DATASET@VERSION"));
    if (auto schema = args.Take("--schema")) {
      if (IsSchemaFile(*schema)) {
        *request.mutable_inline_schema() = ReadSchemaFile(*schema);
      } else {
        size_t at = schema->find('@');
        request.set_schema(schema->substr(0, at));
        if (at != std::string::npos) {
          request.set_schema_version(ParseInt(schema->substr(at + 1), "--schema version"));
        }
      }
    }
    args.ExpectEmpty();
    auto report = Call(&mv1::MonitoringService::Stub::Validate, request);
    if (json_) return PrintJson(report), report.valid() ? 0 : 3;  // exit 3 either way
    PrintReport(report);
    return report.valid() ? 0 : 3;
  }

  int Validations(Args& args) {
    mv1::ListValidationsRequest request;
    request.set_dataset(args.Positional("DATASET"));
    if (auto n = args.Take("--max")) request.set_page_size(ParseInt(*n, "--max"));
    args.ExpectEmpty();
    auto response = Call(&mv1::MonitoringService::Stub::ListValidations, request);
    if (json_) return PrintJson(response), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : response.reports()) {
      rows.push_back(
          {FormatTime(r.time_ms()), r.dataset(),
           r.schema().empty() ? "(given)" : r.schema() + "@" + std::to_string(r.schema_version()),
           std::to_string(r.rows()), r.valid() ? "valid" : "INVALID",
           std::to_string(r.anomalies_size())});
    }
    PrintTable({"TIME", "DATASET", "SCHEMA", "ROWS", "VERDICT", "ANOMALIES"}, rows);
    return 0;
  }

 private:
  int Print(const mv1::Schema& schema) {
    if (json_) return PrintJson(schema), 0;
    std::cout << monitoring::SchemaToYaml(schema);
    return 0;
  }

  static void PrintReport(const mv1::ValidationReport& report) {
    std::cout << report.dataset() << ": " << report.rows() << " rows against schema "
              << (report.schema().empty()
                      ? std::string("(given)")
                      : report.schema() + "@" + std::to_string(report.schema_version()))
              << " in " << report.duration_ms() << " ms\n";
    if (report.valid()) {
      std::cout << "valid: no anomaly\n";
      return;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& a : report.anomalies()) {
      std::string examples;
      for (const auto& e : a.examples()) examples += (examples.empty() ? "" : ", ") + e;
      rows.push_back({a.feature().empty() ? "-" : a.feature(), KindName(a.kind()), a.expected(),
                      a.found(), a.rows() > 0 ? std::to_string(a.rows()) : "-",
                      examples.empty() ? (a.file().empty() ? "-" : a.file()) : examples});
    }
    PrintTable({"FEATURE", "ANOMALY", "EXPECTED", "FOUND", "ROWS", "EXAMPLES"}, rows);
    std::cout << "INVALID: " << report.anomalies_size() << " anomalies\n";
  }

  std::unique_ptr<mv1::MonitoringService::Stub> stub_;
  bool json_;
};

}  // namespace

int RunValidationCommand(const std::string& group, Args& args,
                         std::shared_ptr<grpc::Channel> channel, bool json) {
  ValidationCli cli(std::move(channel), json);
  if (group == "validate") return cli.Validate(args);
  if (group == "validations") return cli.Validations(args);
  return cli.Schema(TakeCommand("schema", args), args);
}

}  // namespace mlops::cli
