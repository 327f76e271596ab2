// mlops-bench validation: data validation of a large dataset version against its schema.
//
//   mlops-bench validation [--json] [--rows=1000000] [--features=100] [--categorical=20]
//                          [--rounds=3] [--pandas=true] [--work_dir=/tmp] [--server_bin=PATH]
//
// The data: an int key column (unique), --categorical string columns of 10 values each, and float
// columns in [0, 100] up to --features, as one .mlcol file. The schema is inferred from a clean
// 100,000-row reference (the floats' range written in); the version checked has anomalies planted
// in 0.1 % of its rows (a value out of range, an unseen category, a repeated key) and 2 % missing
// values in one column.
//
// Figures (medians of --rounds):
//   validate_seconds          the Validator over the mapped file, in this process (one thread):
//                             every feature's type, range, domain, missing fraction and key.
//   floor_seconds             one pass over the same columns in memory: numbers summed, text
//                             lengths summed.
//   ratio_to_floor            validate_seconds / floor_seconds.
//   values_per_s              rows x features / validate_seconds.
//   anomalies                 anomalies found (4 planted).
//   infer_seconds             InferSchema over the reference.
//   rpc_validate_seconds      Validate through a child mlops-server: the version pulled from the
//                             artifact service, read, checked, stored, recorded in lineage.
//   rpc_check_seconds         the checks alone inside that call (its report's duration_ms).
//   pandas_seconds            pandas doing the same checks on the same columns already in a
//                             DataFrame (tools/bench/validation_pandas.py; Debian python3-pandas),
//                             the median of --rounds; absent when pandas is not installed.
//   pandas_ratio              pandas_seconds / validate_seconds.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/monitoring/table.h"
#include "services/monitoring/validation.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

namespace mv1 = ::mlops::monitoring::v1;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The columns described above; with `plant`, the anomalies too.
std::vector<monitoring::Column> Generate(uint64_t rows, int features, int categorical, bool plant,
                                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<monitoring::Column> columns(static_cast<size_t>(features));
  auto& key = columns[0];
  key.name = "id";
  key.owned.resize(rows);
  for (uint64_t r = 0; r < rows; ++r) key.owned[r] = static_cast<double>(r);
  static const char* const kValues[] = {"red",  "green", "blue",   "cyan", "magenta",
                                        "gold", "black", "silver", "teal", "white"};
  for (int f = 1; f < features; ++f) {
    auto& c = columns[static_cast<size_t>(f)];
    if (f <= categorical) {
      c.name = "c" + std::to_string(f);
      c.numeric = false;
      c.strings.resize(rows);
      for (auto& s : c.strings) s = kValues[rng() % 10];
    } else {
      c.name = "x" + std::to_string(f);
      std::uniform_real_distribution<double> uniform(0, 100);
      c.owned.resize(rows);
      for (double& v : c.owned) v = uniform(rng);
    }
  }
  if (plant) {
    const uint64_t every = 1000;  // 0.1 %
    auto& range = columns[static_cast<size_t>(features - 1)].owned;
    for (uint64_t r = 5; r < rows; r += every) range[r] = 1000;
    if (categorical > 0) {
      for (uint64_t r = 7; r < rows; r += every) columns[1].strings[r] = "orange";
    }
    for (uint64_t r = 9; r < rows; r += every) key.owned[r] = key.owned[r - 1];
    auto& missing = columns[static_cast<size_t>(features - 2)].owned;
    for (uint64_t r = 3; r < rows; r += 50) missing[r] = std::nan("");
  }
  for (auto& c : columns) {
    if (c.numeric) c.values = c.owned.data();
  }
  return columns;
}

// The schema as the JSON validation_pandas.py reads: [{name, type, min, max, values,
// max_missing, unique}, ...].
std::string SchemaJson(const mv1::Schema& schema) {
  std::string out = "[";
  for (int i = 0; i < schema.features_size(); ++i) {
    const auto& f = schema.features(i);
    out += i ? ",\n" : "";
    out += "{\"name\": \"" + f.name() + "\", \"type\": \"" +
           mv1::FeatureSchema::Type_Name(f.type()) + "\"";
    if (f.has_min()) out += ", \"min\": " + std::to_string(f.min());
    if (f.has_max()) out += ", \"max\": " + std::to_string(f.max());
    out += ", \"max_missing\": " + std::to_string(f.max_missing());
    out += std::string(", \"unique\": ") + (f.unique() ? "true" : "false");
    out += ", \"values\": [";
    for (int v = 0; v < f.values_size(); ++v) out += (v ? ", \"" : "\"") + f.values(v) + "\"";
    out += "]}";
  }
  return out + "]\n";
}

// Runs `command` and returns what it printed on stdout ("" when it failed).
std::string Output(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return ::pclose(pipe) == 0 ? out : "";
}

}  // namespace

int RunValidationBench(int argc, char** argv) {
  bool json = false, pandas = true;
  uint64_t rows = 1000000;
  int features = 100, categorical = 20, rounds = 3;
  std::string work_parent = "/tmp";
  std::string server_bin = BenchDir() + "/../server/mlops-server";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) { return FlagValue(argv[i], name); };
    if (arg == "--json") {
      json = true;
    } else if (auto v = value("--rows")) {
      rows = std::strtoull(v, nullptr, 10);
    } else if (auto v = value("--features")) {
      features = std::max(3, std::atoi(v));
    } else if (auto v = value("--categorical")) {
      categorical = std::atoi(v);
    } else if (auto v = value("--rounds")) {
      rounds = std::max(1, std::atoi(v));
    } else if (auto v = value("--pandas")) {
      pandas = std::string(v) == "true";
    } else if (auto v = value("--work_dir")) {
      work_parent = v;
    } else if (auto v = value("--server_bin")) {
      server_bin = v;
    } else {
      std::cerr << "usage: mlops-bench validation [--json] [--rows=N] [--features=N] "
                   "[--categorical=N] [--rounds=N] [--pandas=true|false] [--work_dir=DIR] "
                   "[--server_bin=PATH]\n";
      return 2;
    }
  }
  categorical = std::clamp(categorical, 0, features - 3);
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  std::string dir = work_parent + "/mlops-bench-validation-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  std::map<std::string, double> figures;

  log("generating the reference and the version to check ...");
  std::filesystem::create_directories(dir + "/prod");
  const uint64_t reference_rows = std::min<uint64_t>(rows, 100000);
  {
    auto reference = Generate(reference_rows, features, categorical, false, 1);
    if (!monitoring::WriteColumnar(dir + "/ref.mlcol", reference, reference_rows).ok()) return 1;
    auto production = Generate(rows, features, categorical, true, 2);
    if (!monitoring::WriteColumnar(dir + "/prod/prod.mlcol", production, rows).ok()) return 1;
  }
  auto reference = monitoring::Table::ReadFile(dir + "/ref.mlcol");
  auto table = monitoring::Table::ReadFile(dir + "/prod/prod.mlcol");
  if (!reference.ok() || !table.ok()) return 1;

  auto start = Clock::now();
  auto inferred = monitoring::InferSchema({reference->get()}, {});
  figures["infer_seconds"] = Seconds(start);
  if (!inferred.ok()) {
    std::cerr << "infer: " << inferred.status() << "\n";
    return 1;
  }
  mv1::Schema schema = *inferred;
  schema.set_name("bench");
  // The reference has 100,000 ids; the checked version's go up to `rows`. The floats get the
  // range they are drawn from (inference gives a float none).
  schema.mutable_features(0)->set_max(static_cast<double>(rows));
  for (int f = categorical + 1; f < features; ++f) {
    schema.mutable_features(f)->set_min(0);
    schema.mutable_features(f)->set_max(100);
  }

  log("floor: one pass over the columns ...");
  std::vector<double> floors, checks;
  double checksum = 0;
  for (int round = 0; round < rounds; ++round) {
    start = Clock::now();
    double sum = 0;
    for (const auto& c : (*table)->columns()) {
      if (c.numeric) {
        for (uint64_t r = 0; r < rows; ++r) sum += c.values[r];
      } else {
        for (const auto& s : c.strings) sum += static_cast<double>(s.size());
      }
    }
    floors.push_back(Seconds(start));
    checksum += sum;
  }
  log("validating in process ...");
  size_t anomalies = 0;
  for (int round = 0; round < rounds; ++round) {
    start = Clock::now();
    monitoring::Validator validator(schema);
    validator.Add(**table, "prod.mlcol");
    anomalies = validator.Finish().size();
    checks.push_back(Seconds(start));
  }
  figures["floor_seconds"] = Median(floors);
  figures["validate_seconds"] = Median(checks);
  figures["ratio_to_floor"] = figures["validate_seconds"] / figures["floor_seconds"];
  figures["values_per_s"] = static_cast<double>(rows) * features / figures["validate_seconds"];
  figures["anomalies"] = static_cast<double>(anomalies);

  if (pandas) {
    std::string script = BenchDir() + "/validation_pandas.py";
    if (!std::filesystem::exists(script))
      script = MLOPS_SOURCE_DIR "/tools/bench/validation_pandas.py";
    std::ofstream(dir + "/schema.json") << SchemaJson(schema);
    log("pandas: the same checks ...");
    std::string out = Output("/usr/bin/python3 " + script + " " + dir + "/prod/prod.mlcol " + dir +
                             "/schema.json " + std::to_string(rounds));
    double seconds = std::atof(out.c_str());
    if (seconds > 0) {
      figures["pandas_seconds"] = seconds;
      figures["pandas_ratio"] = seconds / figures["validate_seconds"];
    } else {
      log("pandas: not run (is python3-pandas installed?)");
    }
  }
  table->reset();
  reference->reset();

  log("Validate through a server ...");
  int pid = 0;
  int port = SpawnServer(server_bin, dir + "/server", &pid);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  auto stub = mv1::MonitoringService::NewStub(channel);
  artifact::ArtifactClient client(channel);
  if (!client.Push(dir + "/prod", "bench", {}, "", nullptr).ok()) {
    std::cerr << "push failed\n";
    StopServer(pid);
    return 1;
  }
  {
    mv1::Schema stored;
    grpc::ClientContext context;
    if (!stub->PutSchema(&context, schema, &stored).ok()) {
      std::cerr << "PutSchema failed\n";
      StopServer(pid);
      return 1;
    }
  }
  std::vector<double> rpc, rpc_check;
  for (int round = 0; round < rounds; ++round) {
    mv1::ValidateRequest request;
    request.set_dataset("bench");
    mv1::ValidationReport report;
    grpc::ClientContext context;
    start = Clock::now();
    grpc::Status status = stub->Validate(&context, request, &report);
    rpc.push_back(Seconds(start));
    if (!status.ok()) {
      std::cerr << "Validate: " << status.error_message() << "\n";
      StopServer(pid);
      return 1;
    }
    rpc_check.push_back(report.duration_ms() / 1000.0);
  }
  figures["rpc_validate_seconds"] = Median(rpc);
  figures["rpc_check_seconds"] = Median(rpc_check);
  StopServer(pid);
  figures["rows"] = static_cast<double>(rows);
  figures["features"] = features;
  if (checksum == 0.123456789) std::cerr << "";  // keeps the floor's sums
  std::filesystem::remove_all(dir);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
