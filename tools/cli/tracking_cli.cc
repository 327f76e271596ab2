#include "tools/cli/tracking_cli.h"

#include <google/protobuf/util/json_util.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/common/ids.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::cli {
namespace {

namespace v1 = ::mlops::metadata::v1;

class Cli {
 public:
  Cli(std::shared_ptr<grpc::Channel> channel, bool json)
      : stub_(v1::MetadataService::NewStub(channel)), json_(json) {}

  int Run(const std::string& group, const std::string& command, Args& args) {
    if (group == "experiments" || group == "experiment" || group == "exp") {
      return Experiments(command, args);
    }
    if (group == "runs") return Runs(command, args);
    throw UsageError{"unknown group '" + group +
                     "' (experiments, runs, data, artifact, lineage, models, pipeline, queues, "
                     "profile, monitor, drift)"};
  }

 private:
  // Calls an RPC; on error prints it and exits 1.
  template <typename Request, typename Response>
  Response Call(grpc::Status (v1::MetadataService::Stub::*method)(grpc::ClientContext*,
                                                                  const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub_.get(), method, request, std::chrono::seconds(60));
  }

  // Calls a paged RPC until its next_page_token is empty, handing each page to `take`, which
  // returns false to stop early (and may adjust `request`, e.g. its page size, for the next call).
  template <typename Request, typename Response, typename Take>
  void ForEachPage(grpc::Status (v1::MetadataService::Stub::*method)(grpc::ClientContext*,
                                                                     const Request&, Response*),
                   Request& request, Take take) {
    do {
      Response page = Call(method, request);
      bool go_on = take(page);
      request.set_page_token(page.next_page_token());
      if (!go_on) break;
    } while (!request.page_token().empty());
  }

  std::string ResolveExperiment(const std::string& ref) {
    // An id, bare or in a project (projects/P/<id>), else a name (the channel puts a bare name in
    // the --project's project).
    if (absl::StatusOr<ScopedName> scoped = ParseScoped("EXPERIMENT", ref);
        scoped.ok() && mlops::IsValidId(scoped->name)) {
      return ref;
    }
    v1::GetExperimentByNameRequest request;
    request.set_name(ref);
    return Call(&v1::MetadataService::Stub::GetExperimentByName, request).id();
  }

  void PrintExperiment(const v1::Experiment& e) {
    if (json_) return PrintJson(e);
    std::cout << "id:          " << e.id() << "\nname:        " << e.name()
              << "\ndescription: " << e.description()
              << "\nstage:       " << v1::LifecycleStage_Name(e.lifecycle_stage())
              << "\ncreated:     " << FormatTime(e.create_time_ms()) << "\n";
    for (const auto& [k, v] :
         std::map<std::string, std::string>(e.tags().begin(), e.tags().end())) {
      std::cout << "tag:         " << k << "=" << v << "\n";
    }
  }

  void PrintRun(const v1::Run& run) {
    if (json_) return PrintJson(run);
    std::cout << "id:          " << run.id() << "\nexperiment:  " << run.experiment_id()
              << "\nname:        " << run.name()
              << "\nstatus:      " << v1::RunStatus_Name(run.status())
              << (run.lifecycle_stage() == v1::DELETED ? " (deleted)" : "")
              << "\nstarted:     " << FormatTime(run.start_time_ms())
              << "\nended:       " << FormatTime(run.end_time_ms()) << "\n";
    const auto& code = run.source().code();
    if (!code.commit().empty()) {
      std::cout << "commit:      " << code.commit() << (code.dirty() ? " (dirty)" : "") << "\n";
    }
    if (run.source().command_size() > 0) {
      std::string command;
      for (const auto& arg : run.source().command()) command += (command.empty() ? "" : " ") + arg;
      std::cout << "command:     " << command << "\n";
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& [k, v] :
         std::map<std::string, std::string>(run.params().begin(), run.params().end())) {
      rows.push_back({"param", k, v, ""});
    }
    for (const auto& [k, v] :
         std::map<std::string, std::string>(run.tags().begin(), run.tags().end())) {
      rows.push_back({"tag", k, v, ""});
    }
    std::vector<v1::Metric> metrics(run.latest_metrics().begin(), run.latest_metrics().end());
    std::sort(metrics.begin(), metrics.end(),
              [](const auto& a, const auto& b) { return a.key() < b.key(); });
    for (const auto& m : metrics) {
      rows.push_back({"metric", m.key(), mlops::FormatDouble(m.value()), std::to_string(m.step())});
    }
    if (!rows.empty()) {
      std::cout << "\n";
      PrintTable({"KIND", "KEY", "VALUE", "STEP"}, rows);
    }
  }

  static v1::ViewType View(Args& args) {
    if (args.TakeFlag("--all")) return v1::ALL;
    if (args.TakeFlag("--deleted")) return v1::DELETED_ONLY;
    return v1::ACTIVE_ONLY;
  }

  int Experiments(const std::string& command, Args& args) {
    using Stub = v1::MetadataService::Stub;
    if (command == "create") {
      v1::CreateExperimentRequest request;
      if (auto d = args.Take("--description")) request.set_description(*d);
      for (const auto& tag : args.TakeAll("--tag")) {
        auto [k, v] = SplitKeyValue(tag, "--tag");
        (*request.mutable_tags())[k] = v;
      }
      request.set_name(args.Positional("NAME"));
      args.ExpectEmpty();
      PrintExperiment(Call(&Stub::CreateExperiment, request));
      return 0;
    }
    if (command == "list") {
      v1::ListExperimentsRequest request;
      request.set_view(View(args));
      args.ExpectEmpty();
      v1::ListExperimentsResponse all;
      ForEachPage(&Stub::ListExperiments, request, [&](v1::ListExperimentsResponse& page) {
        for (auto& e : *page.mutable_experiments()) *all.add_experiments() = std::move(e);
        return true;
      });
      if (json_) {
        PrintJson(all);
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& e : all.experiments()) {
        rows.push_back({e.id(), e.name(), v1::LifecycleStage_Name(e.lifecycle_stage()),
                        FormatTime(e.create_time_ms()), e.description()});
      }
      PrintTable({"ID", "NAME", "STAGE", "CREATED", "DESCRIPTION"}, rows);
      return 0;
    }
    std::string ref = args.Positional("EXPERIMENT");
    if (command == "get" || command == "show") {
      args.ExpectEmpty();
      v1::GetExperimentRequest request;
      request.set_experiment_id(ResolveExperiment(ref));
      PrintExperiment(Call(&Stub::GetExperiment, request));
      return 0;
    }
    if (command == "rename") {
      v1::UpdateExperimentRequest request;
      request.mutable_experiment()->set_id(ResolveExperiment(ref));
      request.mutable_experiment()->set_name(args.Positional("NEW_NAME"));
      request.mutable_update_mask()->add_paths("name");
      args.ExpectEmpty();
      PrintExperiment(Call(&Stub::UpdateExperiment, request));
      return 0;
    }
    if (command == "delete" || command == "restore") {
      args.ExpectEmpty();
      std::string id = ResolveExperiment(ref);
      if (command == "delete") {
        v1::DeleteExperimentRequest request;
        request.set_experiment_id(id);
        PrintExperiment(Call(&Stub::DeleteExperiment, request));
      } else {
        v1::RestoreExperimentRequest request;
        request.set_experiment_id(id);
        PrintExperiment(Call(&Stub::RestoreExperiment, request));
      }
      return 0;
    }
    throw UsageError{"unknown command 'experiments " + command + "'"};
  }

  int Runs(const std::string& command, Args& args) {
    using Stub = v1::MetadataService::Stub;
    if (command == "create") {
      v1::CreateRunRequest request;
      auto experiment = args.Take("--experiment");
      if (!experiment) throw UsageError{"runs create needs --experiment"};
      if (auto name = args.Take("--name")) request.set_name(*name);
      // In a pipeline step, one run per experiment and name per step (retries get the same).
      request.set_request_id(
          args.Take("--request-id")
              .value_or(StepRequestId("runs/" + *experiment + "/" + request.name())));
      for (const auto& p : args.TakeAll("--param")) {
        auto [k, v] = SplitKeyValue(p, "--param");
        (*request.mutable_params())[k] = v;
      }
      for (const auto& t : args.TakeAll("--tag")) {
        auto [k, v] = SplitKeyValue(t, "--tag");
        (*request.mutable_tags())[k] = v;
      }
      args.ExpectEmpty();
      request.set_experiment_id(ResolveExperiment(*experiment));
      auto run = Call(&Stub::CreateRun, request);
      if (json_) {
        PrintJson(run);
      } else {
        std::cout << run.id() << "\n";
      }
      return 0;
    }
    if (command == "search") {
      v1::SearchRunsRequest request;
      auto experiments = args.TakeAll("--experiment");
      if (experiments.empty()) throw UsageError{"runs search needs --experiment"};
      if (auto f = args.Take("--filter")) request.set_filter(*f);
      if (auto o = args.Take("--order-by")) request.add_order_by(*o);
      int64_t max = 100;
      if (auto m = args.Take("--max")) max = ParseInt(*m, "--max");
      request.set_view(View(args));
      args.ExpectEmpty();
      for (const auto& e : experiments) request.add_experiment_ids(ResolveExperiment(e));
      v1::SearchRunsResponse all;
      auto next_page_size = [&] {
        request.set_page_size(static_cast<int>(std::min<int64_t>(max - all.runs_size(), 1000)));
      };
      next_page_size();
      ForEachPage(&Stub::SearchRuns, request, [&](v1::SearchRunsResponse& page) {
        for (auto& run : *page.mutable_runs()) *all.add_runs() = std::move(run);
        next_page_size();
        return all.runs_size() < max;
      });
      if (json_) {
        PrintJson(all);
        return 0;
      }
      // Columns: the params and metrics present in the results, sorted.
      std::map<std::string, int> param_keys, metric_keys;
      for (const auto& run : all.runs()) {
        for (const auto& [k, v] : run.params()) param_keys[k]++;
        for (const auto& m : run.latest_metrics()) metric_keys[m.key()]++;
      }
      std::vector<std::string> header = {"RUN", "NAME", "STATUS", "STARTED"};
      for (const auto& [k, n] : param_keys) header.push_back("params." + k);
      for (const auto& [k, n] : metric_keys) header.push_back("metrics." + k);
      std::vector<std::vector<std::string>> rows;
      for (const auto& run : all.runs()) {
        std::vector<std::string> row = {run.id(), run.name(), v1::RunStatus_Name(run.status()),
                                        FormatTime(run.start_time_ms())};
        for (const auto& [k, n] : param_keys) {
          auto it = run.params().find(k);
          row.push_back(it == run.params().end() ? "-" : it->second);
        }
        for (const auto& [k, n] : metric_keys) {
          std::string cell = "-";
          for (const auto& m : run.latest_metrics()) {
            if (m.key() == k) cell = mlops::FormatDouble(m.value());
          }
          row.push_back(cell);
        }
        rows.push_back(std::move(row));
      }
      PrintTable(header, rows);
      std::cout << "(" << all.runs_size() << " runs)\n";
      return 0;
    }
    std::string run_id = args.Positional("RUN");
    if (command == "log") {
      v1::LogBatchRequest request;
      request.set_run_id(run_id);
      for (const auto& p : args.TakeAll("--param")) {
        auto [k, v] = SplitKeyValue(p, "--param");
        (*request.mutable_params())[k] = v;
      }
      for (const auto& t : args.TakeAll("--tag")) {
        auto [k, v] = SplitKeyValue(t, "--tag");
        (*request.mutable_tags())[k] = v;
      }
      for (const auto& m : args.TakeAll("--metric")) {
        auto [k, rest] = SplitKeyValue(m, "--metric");
        v1::Metric* metric = request.add_metrics();
        metric->set_key(k);
        size_t at = rest.rfind('@');
        metric->set_value(ParseDouble(rest.substr(0, at), "--metric " + k + " value"));
        if (at != std::string::npos) {
          metric->set_step(ParseInt(rest.substr(at + 1), "--metric " + k + " step"));
        }
        metric->set_timestamp_ms(mlops::NowMs());
      }
      args.ExpectEmpty();
      if (request.params().empty() && request.tags().empty() && request.metrics().empty()) {
        throw UsageError{"runs log needs at least one --metric, --param or --tag"};
      }
      Call(&Stub::LogBatch, request);
      if (!json_) {
        std::cout << "logged " << request.metrics_size() << " metrics, " << request.params_size()
                  << " params, " << request.tags_size() << " tags\n";
      }
      return 0;
    }
    if (command == "show" || command == "get") {
      args.ExpectEmpty();
      v1::GetRunRequest request;
      request.set_run_id(run_id);
      PrintRun(Call(&Stub::GetRun, request));
      return 0;
    }
    if (command == "finish") {
      std::string status = mlops::ToUpper(args.Take("--status").value_or("FINISHED"));
      args.ExpectEmpty();
      v1::RunStatus value;
      if (!v1::RunStatus_Parse(status, &value) || value == v1::RUN_STATUS_UNSPECIFIED) {
        throw UsageError{"--status must be FINISHED, FAILED, KILLED or RUNNING"};
      }
      v1::UpdateRunRequest request;
      request.mutable_run()->set_id(run_id);
      request.mutable_run()->set_status(value);
      request.mutable_update_mask()->add_paths("status");
      PrintRun(Call(&Stub::UpdateRun, request));
      return 0;
    }
    if (command == "delete" || command == "restore") {
      args.ExpectEmpty();
      if (command == "delete") {
        v1::DeleteRunRequest request;
        request.set_run_id(run_id);
        PrintRun(Call(&Stub::DeleteRun, request));
      } else {
        v1::RestoreRunRequest request;
        request.set_run_id(run_id);
        PrintRun(Call(&Stub::RestoreRun, request));
      }
      return 0;
    }
    if (command == "untag") {
      v1::DeleteTagRequest request;
      request.set_run_id(run_id);
      request.set_key(args.Positional("KEY"));
      args.ExpectEmpty();
      Call(&Stub::DeleteTag, request);
      return 0;
    }
    if (command == "history") {
      v1::GetMetricHistoryRequest request;
      request.set_run_id(run_id);
      request.set_key(args.Positional("KEY"));
      if (auto m = args.Take("--max-points")) {
        request.set_max_points(static_cast<int>(ParseInt(*m, "--max-points")));
      }
      args.ExpectEmpty();
      v1::GetMetricHistoryResponse all;
      ForEachPage(&Stub::GetMetricHistory, request, [&](v1::GetMetricHistoryResponse& page) {
        for (auto& m : *page.mutable_metrics()) *all.add_metrics() = std::move(m);
        all.set_total_points(page.total_points());
        return true;
      });
      if (json_) {
        PrintJson(all);
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : all.metrics()) {
        rows.push_back({std::to_string(m.step()), mlops::FormatDouble(m.value()),
                        FormatTime(m.timestamp_ms())});
      }
      PrintTable({"STEP", "VALUE", "TIME"}, rows);
      if (all.total_points() > all.metrics_size()) {
        std::cout << "(" << all.metrics_size() << " of " << all.total_points()
                  << " points: min, max and last per bucket)\n";
      }
      return 0;
    }
    throw UsageError{"unknown command 'runs " + command + "'"};
  }

  std::unique_ptr<v1::MetadataService::Stub> stub_;
  bool json_;
};

}  // namespace

int RunTrackingCommand(const std::string& group, const std::string& command, Args& args,
                       std::shared_ptr<grpc::Channel> channel, bool json) {
  Cli cli(std::move(channel), json);
  return cli.Run(group, command, args);
}

}  // namespace mlops::cli
