// mlops: the command-line client. See `mlops help` and the README (commands, exit codes).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

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
#include "mlops_version.h"
#include "services/common/ids.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/data_cli.h"
#include "tools/cli/lineage_cli.h"
#include "tools/cli/monitoring_cli.h"
#include "tools/cli/pipeline_cli.h"
#include "tools/cli/run_cli.h"

namespace v1 = mlops::metadata::v1;
using mlops::StrCat;

using namespace mlops::cli;  // NOLINT: the CLI helpers

namespace {

constexpr char kUsage[] = R"(mlops: reproducible machine learning, from the command line.

Usage: mlops [--server HOST:PORT] [--output table|json] <group> <command> [args]

  --server    the mlops server (default $MLOPS_SERVER, else localhost:50051)
  --metadata_server, --artifact_server, --scheduler_server, --monitoring_server
              where each service runs when they are apart (default --server, then
              $MLOPS_METADATA_SERVER, ... then $MLOPS_SERVER)
  --output    table (default), json, or dot (lineage)
  mlops --version                   the version and the commit it was built from
  mlops completion bash             tab completion: source <(mlops completion bash)

Runs of your own code (recorded: git commit + uncommitted diff, command, environment, lockfiles,
params, input dataset versions; then logs, outputs, metrics.json, exit code):
  mlops run [--experiment E] [--name N] [--param K=V]... [--input NAME=DATASET@VERSION]...
            [--output PATH]... [--tag K=V]... -- COMMAND ARGS...
  mlops reproduce RUN [--tolerance 1e-6] [--keep]
                       reruns RUN from its recorded commit, diff, inputs and params; exit 0 only
                       when every output digest and metric matches
  mlops runs compare RUN RUN...        params, inputs and code that differ; metrics side by side

Experiments:
  mlops experiments create NAME [--description TEXT] [--tag K=V]...
  mlops experiments list [--deleted | --all]
  mlops experiments get EXPERIMENT
  mlops experiments rename EXPERIMENT NEW_NAME
  mlops experiments delete EXPERIMENT
  mlops experiments restore EXPERIMENT

Runs (EXPERIMENT is a name or an id; RUN is a run id):
  mlops runs create --experiment EXPERIMENT [--name NAME] [--param K=V]... [--tag K=V]...
                    [--request-id ID]
  mlops runs log RUN [--metric KEY=VALUE[@STEP]]... [--param K=V]... [--tag K=V]...
  mlops runs show RUN
  mlops runs finish RUN [--status FINISHED|FAILED|KILLED]
  mlops runs delete RUN
  mlops runs restore RUN
  mlops runs untag RUN KEY
  mlops runs search --experiment EXPERIMENT [--experiment ...] [--filter FILTER]
                    [--order-by "metrics.acc DESC"] [--max N] [--deleted | --all]
  mlops runs history RUN KEY [--max-points N]

Datasets (versions are content digests; REF is a tag, a digest or a digest prefix):
  mlops data push DIR|FILE --dataset NAME [--tag T]... [-m MESSAGE] [--chunk-size BYTES]
                  [--follow-symlinks]
  mlops data pull NAME[@REF] DIR [--verify]
  mlops data diff NAME@REF NAME@REF|REF [--max N]
  mlops data log NAME [--max N]
  mlops data list
  mlops data show NAME[@REF] [--files]
  mlops data tag NAME@REF TAG [--remove]

Artifacts (blobs addressed by the SHA-256 that sha256sum prints):
  mlops artifact put FILE [--no-pin]          prints the digest
  mlops artifact get DIGEST FILE|-
  mlops artifact stat DIGEST [--chunks]
  mlops artifact list [--max N]
  mlops artifact gc [--grace SECONDS] [--dry-run]
  mlops artifact scrub [--repair]

Lineage (REF: artifact:ID, execution:ID, run:RUN_ID or model:NAME@ALIAS|VERSION):
  mlops lineage REF [--upstream | --downstream | --both] [--depth N] [--stop FILTER]
                [--output table|json|dot]           (dot renders with Graphviz: dot -Tsvg)

Model registry:
  mlops models create NAME [--description TEXT] [--tag K=V]...
  mlops models register NAME --file MODEL_FILE | --digest SHA256 [--run RUN] [--artifact-id ID]
                       [--request-id ID]     --file uploads it and gives it a lineage node
  mlops models list
  mlops models versions NAME [--max N]
  mlops models show NAME[@ALIAS|VERSION]
  mlops models alias NAME ALIAS VERSION [--expect VERSION] [--reason TEXT]
  mlops models alias NAME ALIAS --delete
  mlops models history NAME ALIAS [--at TIME]         (TIME: ms or 2026-11-27T05:00:00Z)
  mlops models delete-version NAME VERSION

Pipelines (the scheduler; FILE is a pipeline spec in YAML, see docs/api.md):
  mlops pipeline submit FILE [--param K=V]... [--queue Q] [--no-cache] [--watch]
  mlops pipeline list [--max N]
  mlops pipeline status RUN            the DAG: each step's state, duration, attempts, cache hits
  mlops pipeline logs RUN STEP [--follow] [--stderr] [--attempt N]
  mlops pipeline cancel RUN
  mlops pipeline retry RUN             reruns only what failed or did not run
  mlops pipeline schedule FILE --name N --cron "0 3 * * *" [--param K=V]... [--queue Q]
  mlops pipeline schedules; mlops pipeline unschedule NAME
  mlops queues list
  mlops queues put NAME [--priority P] [--max-concurrency N] [--cpu 4] [--memory 8Gi] [--gpu 1]

Monitoring (drift of production data against the training data):
  mlops profile create NAME --dataset DATASET@VERSION [--categorical a,b] [--max-categories N]
  mlops profile show NAME[@VERSION]; mlops profile list
  mlops drift DATASET@VERSION --against PROFILE[@VERSION] [--test ks,psi:0.1,chi2,js]
                                       a table per feature; exit 3 when the dataset drifted
  mlops drift DATASET@VERSION --monitor NAME      stored as the monitor's report
  mlops monitor create NAME --profile P[@V] [--model M[@VERSION|ALIAS]] [--features a,b]
        [--test ks,psi] [--window-rows N | --window 10m] [--drift-share 0.5]
        [--task classification|regression --baseline B --max-degradation D]
        [--retrain FILE [--retrain-param K=V]... [--queue Q] [--cooldown 1h]]
  mlops monitor list; mlops monitor report NAME [--max N]
  mlops monitor ingest NAME --file ROWS.csv [--batch 1000]    stream production rows
  mlops monitor alerts [NAME] [--open]; mlops monitor ack ALERT [--by USER]

Filters: metrics.acc > 0.9 and params.opt = "adam" and tags.team != "x" and status = "FINISHED"
         (and, or, parentheses, = != < <= > >= in (...) like ilike; see docs/api.md)
)";

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
    if (mlops::IsValidId(ref)) return ref;
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

int main(int argc, char** argv) {
  std::vector<std::string> raw(argv + 1, argv + argc);
  try {
    Args args(raw);
    if (raw.empty() || args.TakeFlag("--help") || args.TakeFlag("-h") ||
        (raw.size() == 1 && raw[0] == "help")) {
      std::cout << kUsage;
      return raw.empty() ? 2 : 0;
    }
    if (raw.size() == 1 && (raw[0] == "--version" || raw[0] == "version")) {
      std::cout << "mlops " << MLOPS_VERSION << " (commit " << MLOPS_COMMIT << ")\n";
      return 0;
    }
    // `mlops run` passes its own flags (--output PATH among them) and the command's: there the
    // global flags are only those before the word "run".
    Args prefix({});
    Args* globals = &args;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == "--server" || raw[i] == "--output" || raw[i] == "--metadata_server" ||
          raw[i] == "--artifact_server" || raw[i] == "--scheduler_server" ||
          raw[i] == "--monitoring_server") {
        ++i;
        continue;
      }
      if (raw[i].rfind("--", 0) == 0) continue;
      if (raw[i] == "run" || raw[i] == "reproduce") {
        prefix = Args({raw.begin(), raw.begin() + static_cast<long>(i)});
        args = Args({raw.begin() + static_cast<long>(i), raw.end()});
        globals = &prefix;
      }
      break;
    }
    Endpoints endpoints = TakeEndpoints(*globals);
    std::string output = globals->Take("--output").value_or("table");
    if (output != "table" && output != "json" && output != "dot") {
      throw UsageError{"--output must be table, json or dot"};
    }
    std::optional<std::string> word = args.OptionalPositional();
    if (!word) throw UsageError{"missing command group; groups: " + ValidWords("")};
    const CommandGroup* found = FindGroup(*word);
    if (found == nullptr) {
      throw UsageError{"unknown command group '" + *word + "'; groups: " + ValidWords("")};
    }
    std::string group = *word;
    if (found->name == "completion") {
      TakeCommand("completion", args);
      args.ExpectEmpty();
      std::cout << BashCompletion();
      return 0;
    }
    if (output == "dot" && group != "lineage") throw UsageError{"--output dot: lineage only"};
    auto metadata = ServiceChannel(endpoints.metadata);
    auto artifact =
        endpoints.artifact == endpoints.metadata ? metadata : ServiceChannel(endpoints.artifact);
    if (group == "run") {
      return RunCommandLine(args, metadata, artifact, endpoints, output == "json");
    }
    if (group == "reproduce") {
      return ReproduceCommandLine(args, metadata, artifact, endpoints, output == "json");
    }
    if (group == "profile" || group == "profiles" || group == "monitor" || group == "monitors" ||
        group == "drift") {
      return RunMonitoringCommand(group.rfind("profile", 0) == 0   ? "profile"
                                  : group.rfind("monitor", 0) == 0 ? "monitor"
                                                                   : "drift",
                                  args, ServiceChannel(endpoints.monitoring), output == "json");
    }
    std::string command = group == "lineage" ? "" : TakeCommand(found->name, args);
    if ((group == "runs") && command == "compare") {
      return CompareRunsCommandLine(args, metadata, artifact, output == "json");
    }
    if (group == "pipeline" || group == "pipelines" || group == "queues" || group == "queue") {
      return RunPipelineCommand(group.rfind("queue", 0) == 0 ? "queues" : "pipeline", command, args,
                                ServiceChannel(endpoints.scheduler), output == "json");
    }
    if (group == "lineage" || group == "models" || group == "model") {
      return RunLineageCommand(group == "model" ? "models" : group, command, args, metadata,
                               artifact, output);
    }
    if (group == "data" || group == "artifact" || group == "artifacts") {
      return RunDataCommand(group, command, args, artifact, output == "json");
    }
    Cli cli(metadata, output == "json");
    return cli.Run(group, command, args);
  } catch (const UsageError& e) {
    std::cerr << "mlops: " << e.message << "\n(see mlops --help)\n";
    return 2;
  }
}
