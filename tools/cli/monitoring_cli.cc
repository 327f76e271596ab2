#include "tools/cli/monitoring_cli.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/common/strings.h"
#include "services/scheduler/quantities.h"
#include "tools/cli/commands.h"

namespace mlops::cli {
namespace {

// The retraining an alert asked for, as the alerts table shows it.
std::string RetrainCell(const monitoring::v1::Alert& alert) {
  switch (alert.retrain()) {
    case monitoring::v1::RETRAIN_PENDING:
      return "pending";
    case monitoring::v1::RETRAIN_SUBMITTED:
      return alert.pipeline_run_id();
    case monitoring::v1::RETRAIN_FAILED:
      return "failed: " + alert.retrain_error();
    default:
      return alert.pipeline_run_id().empty() ? "-" : alert.pipeline_run_id();
  }
}

namespace mv1 = mlops::monitoring::v1;

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// NAME@VERSION -> (NAME, VERSION); VERSION 0 when absent.
std::pair<std::string, int64_t> NameVersion(const std::string& text, const std::string& what) {
  size_t at = text.find('@');
  if (at == std::string::npos) return {text, 0};
  return {text.substr(0, at), ParseInt(text.substr(at + 1), what + " version")};
}

mv1::DriftTest::Kind TestKind(const std::string& name) {
  if (name == "psi") return mv1::DriftTest::PSI;
  if (name == "ks") return mv1::DriftTest::KS;
  if (name == "chi2" || name == "chi-squared") return mv1::DriftTest::CHI_SQUARED;
  if (name == "js" || name == "jensen-shannon") return mv1::DriftTest::JENSEN_SHANNON;
  throw UsageError{"--test " + name + ": psi, ks, chi2 or js (optionally :THRESHOLD)"};
}

std::vector<mv1::DriftTest> Tests(Args& args) {
  std::vector<mv1::DriftTest> tests;
  for (const auto& list : args.TakeAll("--test")) {
    for (const auto& item : SplitList(list)) {
      mv1::DriftTest test;
      size_t colon = item.find(':');
      test.set_kind(TestKind(item.substr(0, colon)));
      if (colon != std::string::npos) {
        test.set_threshold(ParseDouble(item.substr(colon + 1), "--test threshold"));
      }
      tests.push_back(test);
    }
  }
  return tests;
}

const char* TestName(mv1::DriftTest::Kind kind) {
  switch (kind) {
    case mv1::DriftTest::PSI:
      return "PSI";
    case mv1::DriftTest::KS:
      return "KS";
    case mv1::DriftTest::CHI_SQUARED:
      return "chi2";
    case mv1::DriftTest::JENSEN_SHANNON:
      return "JS";
    default:
      return "?";
  }
}

// One block character per bin, scaled to the tallest bin of either distribution.
std::string Sparkline(const std::vector<double>& values, double max) {
  static const char* const kBlocks[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  std::string out;
  for (double v : values) {
    int level = max <= 0 ? 0 : static_cast<int>(std::lround(v / max * 8));
    out += kBlocks[std::clamp(level, 0, 8)];
  }
  return out;
}

std::string Short(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string Fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

class MonitoringCli {
 public:
  MonitoringCli(std::shared_ptr<grpc::Channel> channel, bool json)
      : stub_(mv1::MonitoringService::NewStub(channel)), json_(json) {}

  template <typename Request, typename Response>
  Response Call(grpc::Status (mv1::MonitoringService::Stub::*method)(grpc::ClientContext*,
                                                                     const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub_.get(), method, request, std::chrono::minutes(30));
  }

  int Profile(const std::string& command, Args& args) {
    if (command == "create") {
      mv1::CreateProfileRequest request;
      request.set_name(args.Positional("NAME"));
      auto dataset = args.Take("--dataset");
      if (!dataset) throw UsageError{"profile create needs --dataset NAME@VERSION"};
      request.set_dataset(*dataset);
      for (const auto& list : args.TakeAll("--categorical")) {
        for (const auto& c : SplitList(list)) request.add_categorical(c);
      }
      if (auto max = args.Take("--max-categories")) {
        request.set_max_categories(static_cast<int>(ParseInt(*max, "--max-categories")));
      }
      args.ExpectEmpty();
      auto profile = Call(&mv1::MonitoringService::Stub::CreateProfile, request);
      if (json_) return PrintJson(profile), 0;
      std::cout << "profile " << profile.name() << "@" << profile.version() << ": "
                << profile.rows() << " rows, " << profile.features_size() << " features, from "
                << profile.source() << "\n";
      return 0;
    }
    if (command == "show") {
      auto [name, version] = NameVersion(args.Positional("NAME[@VERSION]"), "profile");
      args.ExpectEmpty();
      mv1::GetProfileRequest request;
      request.set_name(name);
      request.set_version(version);
      auto profile = Call(&mv1::MonitoringService::Stub::GetProfile, request);
      if (json_) return PrintJson(profile), 0;
      std::cout << "profile " << profile.name() << "@" << profile.version() << " ("
                << profile.source() << ", " << profile.rows() << " rows)\n\n";
      std::vector<std::vector<std::string>> rows;
      for (const auto& f : profile.features()) {
        bool numeric = f.kind() == mv1::NUMERIC;
        std::vector<double> bins(
            numeric ? f.bin_proportions().begin() : f.category_proportions().begin(),
            numeric ? f.bin_proportions().end() : f.category_proportions().end());
        double max = bins.empty() ? 0 : *std::max_element(bins.begin(), bins.end());
        rows.push_back({f.name(), numeric ? "numeric" : "categorical", std::to_string(f.count()),
                        std::to_string(f.nulls()), numeric ? Short(f.mean()) : "-",
                        numeric ? Short(f.std()) : "-",
                        numeric ? Short(f.min()) + " .. " + Short(f.max())
                                : std::to_string(f.categories_size()) + " categories",
                        Sparkline(bins, max)});
      }
      PrintTable({"FEATURE", "KIND", "COUNT", "NULLS", "MEAN", "STD", "RANGE", "HISTOGRAM"}, rows);
      return 0;
    }
    if (command == "list") {
      args.ExpectEmpty();
      auto response = Call(&mv1::MonitoringService::Stub::ListProfiles, mv1::ListProfilesRequest());
      if (json_) return PrintJson(response), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& p : response.profiles()) {
        rows.push_back({p.name(), std::to_string(p.version()), std::to_string(p.rows()), p.source(),
                        FormatTime(p.create_time_ms())});
      }
      PrintTable({"PROFILE", "LATEST", "ROWS", "SOURCE", "CREATED"}, rows);
      return 0;
    }
    throw UsageError{"unknown command 'profile " + command + "'"};
  }

  int Monitor(const std::string& command, Args& args) {
    if (command == "create") return CreateMonitor(args);
    if (command == "list") {
      args.ExpectEmpty();
      auto response = Call(&mv1::MonitoringService::Stub::ListMonitors, mv1::ListMonitorsRequest());
      if (json_) return PrintJson(response), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : response.monitors()) {
        std::string model =
            m.model().empty() ? "-" : m.model() + "@" + std::to_string(m.resolved_version());
        std::string window = m.window_rows() > 0 ? std::to_string(m.window_rows()) + " rows"
                                                 : std::to_string(m.window_ms() / 1000) + " s";
        rows.push_back({m.name(), model, m.profile() + "@" + std::to_string(m.profile_version()),
                        std::to_string(m.features_size()), window,
                        m.retrain_pipeline_yaml().empty() ? "-" : "retrain"});
      }
      PrintTable({"MONITOR", "MODEL", "PROFILE", "FEATURES", "WINDOW", "ACTION"}, rows);
      return 0;
    }
    if (command == "report" || command == "reports") {
      mv1::ListReportsRequest request;
      request.set_monitor(args.Positional("MONITOR"));
      request.set_page_size(static_cast<int>(ParseInt(args.Take("--max").value_or("1"), "--max")));
      args.ExpectEmpty();
      auto response = Call(&mv1::MonitoringService::Stub::ListReports, request);
      if (json_) return PrintJson(response), 0;
      if (response.reports_size() == 0) {
        std::cout << "no report yet: the first window has not closed\n";
        return 0;
      }
      for (const auto& report : response.reports()) PrintReport(report, nullptr);
      return 0;
    }
    if (command == "alerts") {
      mv1::ListAlertsRequest request;
      if (auto monitor = args.OptionalPositional()) request.set_monitor(*monitor);
      request.set_unacknowledged_only(args.TakeFlag("--open"));
      args.ExpectEmpty();
      auto response = Call(&mv1::MonitoringService::Stub::ListAlerts, request);
      if (json_) return PrintJson(response), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& a : response.alerts()) {
        rows.push_back({a.id(), a.monitor(), FormatTime(a.time_ms()), a.reason(), RetrainCell(a),
                        a.acknowledged() ? "yes (" + a.acknowledged_by() + ")" : "no"});
      }
      PrintTable({"ALERT", "MONITOR", "TIME", "REASON", "RETRAINING RUN", "ACKED"}, rows);
      return 0;
    }
    if (command == "ingest") return Ingest(args);
    if (command == "ack") {
      mv1::AcknowledgeAlertRequest request;
      request.set_id(args.Positional("ALERT"));
      const char* user = std::getenv("USER");
      request.set_by(args.Take("--by").value_or(user != nullptr ? user : ""));
      args.ExpectEmpty();
      auto alert = Call(&mv1::MonitoringService::Stub::AcknowledgeAlert, request);
      if (json_) return PrintJson(alert), 0;
      std::cout << "alert " << alert.id() << " acknowledged by " << alert.acknowledged_by() << "\n";
      return 0;
    }
    throw UsageError{"unknown command 'monitor " + command + "'"};
  }

  // Streams the rows of a CSV file (a header row; columns the profile calls categorical are sent
  // as categories, the rest as numbers) to a monitor, in batches.
  int Ingest(Args& args) {
    std::string monitor = args.Positional("MONITOR");
    auto file = args.Take("--file");
    if (!file) throw UsageError{"monitor ingest needs --file DATA.csv"};
    int64_t batch_rows = ParseInt(args.Take("--batch").value_or("1000"), "--batch");
    if (batch_rows <= 0) throw UsageError{"--batch: at least 1"};
    args.ExpectEmpty();
    mv1::GetMonitorRequest get;
    get.set_name(monitor);
    auto m = Call(&mv1::MonitoringService::Stub::GetMonitor, get);
    mv1::GetProfileRequest get_profile;
    get_profile.set_name(m.profile());
    get_profile.set_version(m.profile_version());
    auto profile = Call(&mv1::MonitoringService::Stub::GetProfile, get_profile);
    std::set<std::string> categorical;
    for (const auto& f : profile.features()) {
      if (f.kind() == mv1::CATEGORICAL) categorical.insert(f.name());
    }
    std::ifstream in(*file);
    if (!in) throw UsageError{"cannot read " + *file};
    auto split = [](const std::string& line) {
      std::vector<std::string> fields;
      std::stringstream row(line);
      std::string field;
      while (std::getline(row, field, ',')) fields.push_back(field);
      if (!line.empty() && line.back() == ',') fields.push_back("");
      return fields;
    };
    std::string line;
    if (!std::getline(in, line)) throw UsageError{*file + " is empty"};
    std::vector<std::string> header = split(line);
    mv1::SampleBatch batch;
    batch.set_monitor(monitor);
    std::vector<bool> is_categorical;
    for (const auto& name : header) {
      is_categorical.push_back(categorical.contains(name));
      if (is_categorical.back()) {
        batch.add_categorical_columns(name);
      } else {
        batch.add_numeric_columns(name);
      }
    }
    grpc::ClientContext context;
    mv1::IngestSamplesResponse response;
    auto writer = stub_->IngestSamples(&context, &response);
    int64_t rows = 0, in_batch = 0;
    auto flush = [&] {
      if (in_batch == 0) return;
      if (!writer->Write(batch)) return;
      batch.clear_numeric();
      batch.clear_categorical();
      batch.clear_numeric_columns();
      batch.clear_categorical_columns();
      batch.clear_monitor();
      // Later batches repeat the columns (the server maps them once per change).
      for (size_t c = 0; c < header.size(); ++c) {
        if (is_categorical[c]) {
          batch.add_categorical_columns(header[c]);
        } else {
          batch.add_numeric_columns(header[c]);
        }
      }
      in_batch = 0;
    };
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::vector<std::string> fields = split(line);
      if (fields.size() != header.size()) {
        throw UsageError{*file + ": row " + std::to_string(rows + 2) + " has " +
                         std::to_string(fields.size()) + " fields, the header " +
                         std::to_string(header.size())};
      }
      for (size_t c = 0; c < fields.size(); ++c) {
        if (is_categorical[c]) {
          batch.add_categorical(fields[c]);
        } else {
          char* end = nullptr;
          double value = std::strtod(fields[c].c_str(), &end);
          batch.add_numeric(fields[c].empty() || *end != '\0' ? std::nan("") : value);
        }
      }
      ++rows;
      if (++in_batch >= batch_rows) flush();
    }
    flush();
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (!status.ok()) FailRpc(status);
    if (json_) return PrintJson(response), 0;
    std::cout << "ingested " << response.rows() << " rows into " << monitor << "; "
              << response.closed_size() << " window(s) closed\n";
    for (const auto& report : response.closed()) {
      std::cout << "  window of " << report.rows() << " rows: drift share "
                << Fixed(report.drift_share(), 2) << (report.drifted() ? " (DRIFTED)" : "") << "\n";
    }
    return 0;
  }

  int CreateMonitor(Args& args) {
    mv1::Monitor monitor;
    monitor.set_name(args.Positional("NAME"));
    auto profile = args.Take("--profile");
    if (!profile) throw UsageError{"monitor create needs --profile NAME[@VERSION]"};
    auto [name, version] = NameVersion(*profile, "--profile");
    monitor.set_profile(name);
    monitor.set_profile_version(version);
    if (auto model = args.Take("--model")) {
      size_t at = model->find('@');
      monitor.set_model(model->substr(0, at));
      if (at != std::string::npos) monitor.set_model_version(model->substr(at + 1));
    }
    for (const auto& list : args.TakeAll("--features")) {
      for (const auto& f : SplitList(list)) monitor.add_features(f);
    }
    if (auto schema = args.Take("--schema")) {
      auto [schema_name, schema_version] = NameVersion(*schema, "--schema");
      monitor.set_schema(schema_name);
      monitor.set_schema_version(schema_version);
    }
    for (const auto& test : Tests(args)) *monitor.add_tests() = test;
    if (auto rows = args.Take("--window-rows")) {
      monitor.set_window_rows(ParseInt(*rows, "--window-rows"));
    }
    if (auto window = args.Take("--window")) {
      int64_t ms = 0;
      if (!scheduler::ParseDuration(*window, &ms)) throw UsageError{"--window: a duration (10m)"};
      monitor.set_window_ms(ms);
    }
    if (auto share = args.Take("--drift-share")) {
      monitor.set_drift_share_threshold(ParseDouble(*share, "--drift-share"));
    }
    if (auto task = args.Take("--task")) monitor.set_task(*task);
    if (auto baseline = args.Take("--baseline")) {
      monitor.set_baseline(ParseDouble(*baseline, "--baseline"));
    }
    if (auto degradation = args.Take("--max-degradation")) {
      monitor.set_max_degradation(ParseDouble(*degradation, "--max-degradation"));
    }
    if (auto file = args.Take("--retrain")) {
      std::ifstream in(*file);
      if (!in) throw UsageError{"cannot read " + *file};
      std::stringstream text;
      text << in.rdbuf();
      monitor.set_retrain_pipeline_yaml(text.str());
    }
    for (const auto& param : args.TakeAll("--retrain-param")) {
      auto [k, v] = SplitKeyValue(param, "--retrain-param");
      (*monitor.mutable_retrain_params())[k] = v;
    }
    monitor.set_retrain_queue(args.Take("--queue").value_or(""));
    if (auto cooldown = args.Take("--cooldown")) {
      int64_t ms = 0;
      if (!scheduler::ParseDuration(*cooldown, &ms))
        throw UsageError{"--cooldown: a duration (1h)"};
      monitor.set_cooldown_ms(ms);
    }
    args.ExpectEmpty();
    auto created = Call(&mv1::MonitoringService::Stub::CreateMonitor, monitor);
    if (json_) return PrintJson(created), 0;
    std::cout << "monitor " << created.name() << ": " << created.features_size()
              << " features against profile " << created.profile() << "@"
              << created.profile_version();
    if (!created.model().empty()) {
      std::cout << ", model " << created.model() << " version " << created.resolved_version();
    }
    if (!created.schema().empty()) {
      std::cout << ", rows checked against schema " << created.schema() << "@"
                << created.schema_version();
    }
    std::cout << "\n";
    return 0;
  }

  int Drift(Args& args) {
    mv1::EvaluateDatasetRequest request;
    request.set_dataset(args.Positional("DATASET[@VERSION]"));
    auto against = args.Take("--against");
    auto monitor = args.Take("--monitor");
    if (against.has_value() == monitor.has_value()) {
      throw UsageError{"drift needs --against PROFILE[@VERSION] or --monitor NAME"};
    }
    if (against) {
      auto [name, version] = NameVersion(*against, "--against");
      request.set_profile(name);
      request.set_profile_version(version);
    } else {
      request.set_monitor(*monitor);
    }
    for (const auto& test : Tests(args)) *request.add_tests() = test;
    args.ExpectEmpty();
    auto report = Call(&mv1::MonitoringService::Stub::EvaluateDataset, request);
    if (json_) return PrintJson(report), report.drifted() ? 3 : 0;  // exit 3 either way
    mv1::Profile profile;
    {
      mv1::GetProfileRequest get;
      if (against) {
        auto [name, version] = NameVersion(*against, "--against");
        get.set_name(name);
        get.set_version(version);
      } else {
        mv1::GetMonitorRequest get_monitor;
        get_monitor.set_name(*monitor);
        auto m = Call(&mv1::MonitoringService::Stub::GetMonitor, get_monitor);
        get.set_name(m.profile());
        get.set_version(m.profile_version());
      }
      profile = Call(&mv1::MonitoringService::Stub::GetProfile, get);
    }
    PrintReport(report, &profile);
    return report.drifted() ? 3 : 0;
  }

  // The report as a table per feature: each test's statistic against its threshold, and the
  // reference and current distributions side by side when the profile is at hand.
  void PrintReport(const mv1::DriftReport& report, const mv1::Profile* profile) {
    std::cout << (report.source() == "window" ? "window" : report.source()) << ": " << report.rows()
              << " rows";
    if (report.source() == "window") {
      std::cout << ", " << FormatTime(report.start_time_ms()) << " .. "
                << FormatTime(report.end_time_ms());
    }
    std::cout << "\ndrift: " << Fixed(report.drift_share(), 2) << " of the features"
              << (report.drifted() ? " (DRIFTED)" : "") << "\n";
    if (report.labeled() > 0) {
      std::cout << "labels: " << report.labeled() << ", accuracy " << Fixed(report.accuracy())
                << ", rmse " << Fixed(report.rmse()) << ", mae " << Fixed(report.mae())
                << (report.degraded() ? " (DEGRADED)" : "") << "\n";
    }
    if (report.anomalies_size() > 0) {
      std::cout << "skew: " << report.anomalies_size() << " anomalies against the schema\n";
      for (const auto& a : report.anomalies()) std::cout << "  " << a.description() << "\n";
    }
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : report.features()) {
      std::string histogram;
      if (profile != nullptr) {
        for (const auto& p : profile->features()) {
          if (p.name() != f.name()) continue;
          std::vector<double> reference(p.kind() == mv1::NUMERIC ? p.bin_proportions().begin()
                                                                 : p.category_proportions().begin(),
                                        p.kind() == mv1::NUMERIC ? p.bin_proportions().end()
                                                                 : p.category_proportions().end());
          std::vector<double> current(f.proportions().begin(), f.proportions().end());
          double max = 0;
          for (double v : reference) max = std::max(max, v);
          for (double v : current) max = std::max(max, v);
          histogram = "ref " + Sparkline(reference, max) + " | now " + Sparkline(current, max);
        }
      }
      if (f.tests_size() == 0) {
        rows.push_back({f.name(), "-", "-", "-", "no values", histogram});
        continue;
      }
      bool first = true;
      for (const auto& t : f.tests()) {
        bool p_test = t.kind() == mv1::DriftTest::KS || t.kind() == mv1::DriftTest::CHI_SQUARED;
        std::string threshold = p_test
                                    ? "p=" + Fixed(t.p_value()) + (t.drifted() ? " < " : " >= ") +
                                          FormatDouble(t.threshold())
                                    : (t.drifted() ? ">= " : "< ") + FormatDouble(t.threshold());
        rows.push_back({first ? f.name() : "", TestName(t.kind()), Fixed(t.statistic()), threshold,
                        t.drifted() ? "DRIFT" : "ok", first ? histogram : ""});
        first = false;
      }
    }
    PrintTable({"FEATURE", "TEST", "STATISTIC", "THRESHOLD", "VERDICT", "DISTRIBUTION"}, rows);
    std::cout << "\n";
  }

 private:
  std::unique_ptr<mv1::MonitoringService::Stub> stub_;
  bool json_;
};

}  // namespace

int RunMonitoringCommand(const std::string& group, Args& args,
                         std::shared_ptr<grpc::Channel> channel, bool json) {
  MonitoringCli cli(std::move(channel), json);
  if (group == "drift") return cli.Drift(args);
  std::string command = TakeCommand(group, args);
  return group == "profile" ? cli.Profile(command, args) : cli.Monitor(command, args);
}

}  // namespace mlops::cli
