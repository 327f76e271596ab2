#include "tools/cli/run_cli.h"

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"
#include "services/scheduler/metrics_file.h"
#include "tools/cli/run_recording.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;

std::string Hex(const std::string& digest) {
  return digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
}

struct Captured {
  int exit_code = -1;
  std::string out;
};

// Runs argv (no shell) in `dir` with extra environment entries (NAME=VALUE); returns its exit code
// and stdout (stderr is dropped). -1 when it cannot start.
Captured Capture(const std::vector<std::string>& argv, const std::string& dir,
                 const std::vector<std::string>& extra_env = {}) {
  SpawnOptions options;
  options.argv = argv;
  options.cwd = dir;
  options.in = Stdio::Null();
  options.SetEnv(extra_env);
  Captured result;
  auto output = RunAndCapture(std::move(options));
  if (!output.ok()) return result;
  result.exit_code = output->exit_code;
  result.out = std::move(output->out);
  return result;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

class RunCli {
 public:
  RunCli(std::shared_ptr<grpc::Channel> metadata, std::shared_ptr<grpc::Channel> artifact,
         Endpoints endpoints, bool json)
      : metadata_(mv1::MetadataService::NewStub(metadata)),
        lineage_(mv1::LineageService::NewStub(metadata)),
        artifacts_(artifact),
        endpoints_(std::move(endpoints)),
        json_(json) {}

  template <typename Stub, typename Request, typename Response>
  Response Call(Stub* stub,
                grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub, method, request, std::chrono::minutes(5));
  }

  // What `mlops run` and `mlops reproduce` execute.
  struct Plan {
    std::string experiment = "default";
    std::string name;
    std::map<std::string, std::string> params;
    std::map<std::string, std::string> inputs;  // local name -> DATASET@REF
    std::vector<std::string> outputs;           // paths relative to the working dir
    std::vector<std::string> command;
    std::string work_dir;  // absolute
    std::map<std::string, std::string> tags;
    const mv1::RunSource* recorded = nullptr;  // reproduce: the original run's code and environment
  };
  struct Result {
    mv1::Run run;
    int exit_code = 0;
    std::map<std::string, std::string> outputs;  // path -> digest (hex)
    std::map<std::string, double> metrics;
    std::string message;
  };

  Result Execute(const Plan& plan) {
    Result result;
    mv1::CreateRunRequest create;
    create.set_experiment_id(ExperimentId(plan.experiment));
    create.set_name(plan.name);
    // In a pipeline step, a retried attempt finds the run its first attempt made for the same
    // command (and a reproduction the one for the same original run) instead of making another.
    create.set_request_id(
        StepRequestId(StrCat(plan.recorded != nullptr ? "reproduce/" : "run/", plan.experiment, "/",
                             plan.name, "/", absl::StrJoin(plan.command, std::string(1, '\0')))));
    for (const auto& [k, v] : plan.params) (*create.mutable_params())[k] = v;
    for (const auto& [k, v] : plan.tags) (*create.mutable_tags())[k] = v;
    mv1::RunSource* source = create.mutable_source();
    for (const auto& arg : plan.command) source->add_command(arg);
    source->set_working_dir(plan.work_dir);
    // Code: the commit and everything not committed, as a patch stored in the artifact service.
    std::string top;
    if (plan.recorded != nullptr) {
      *source->mutable_code() = plan.recorded->code();
      top = Trim(Capture({"git", "rev-parse", "--show-toplevel"}, plan.work_dir).out);
    } else {
      RecordCode(plan, source->mutable_code(), &top);
    }
    if (!top.empty()) {
      std::string relative = fs::relative(plan.work_dir, top).string();
      (*create.mutable_tags())["mlops.repo_path"] = relative;
    }
    auto environment = CaptureEnvironment();
    for (const auto& [k, v] : environment) (*source->mutable_environment())[k] = v;
    if (const char* image = std::getenv("MLOPS_IMAGE_DIGEST")) source->set_image_digest(image);
    RecordLockfiles(plan.work_dir, top, source);
    // Inputs: dataset versions resolved to their digest and materialised under .mlops-run/.
    std::map<std::string, std::string> input_paths;
    for (const auto& [local, ref] : plan.inputs) {
      size_t at = ref.find('@');
      std::string dataset = ref.substr(0, at),
                  version = at == std::string::npos ? "" : ref.substr(at + 1);
      std::string dir = plan.work_dir + "/" + kRunScratchDir + "/inputs/" + local;
      auto pulled = artifacts_.Pull(dataset, version, dir, nullptr);
      if (!pulled.ok()) {
        std::cerr << "mlops: input " << local << " (" << ref << "): " << pulled.status().message()
                  << "\n";
        std::exit(1);
      }
      mv1::InputDataset* input = source->add_inputs();
      input->set_name(dataset);
      input->set_digest("sha256:" + pulled->version.digest());
      (*create.mutable_tags())["mlops.input." + local] = dataset + "@" + pulled->version.digest();
      input_paths[local] = dir;
    }
    if (!plan.outputs.empty()) {
      std::string list;
      for (const auto& o : plan.outputs) list += (list.empty() ? "" : ",") + o;
      (*create.mutable_tags())["mlops.outputs"] = list;
    }
    result.run = Call(metadata_.get(), &mv1::MetadataService::Stub::CreateRun, create);
    const std::string run_id = result.run.id();
    std::cerr << "mlops: run " << run_id << " (experiment " << plan.experiment << ")\n";

    // The command, with MLOPS_* in its environment, its output shown and kept.
    // The command reaches each service where this CLI did (MLOPS_SERVER: the metadata service).
    std::vector<std::string> env = {"MLOPS_RUN_ID=" + run_id,
                                    "MLOPS_SERVER=" + endpoints_.metadata,
                                    "MLOPS_METADATA_SERVER=" + endpoints_.metadata,
                                    "MLOPS_ARTIFACT_SERVER=" + endpoints_.artifact,
                                    "MLOPS_SCHEDULER_SERVER=" + endpoints_.scheduler,
                                    "MLOPS_MONITORING_SERVER=" + endpoints_.monitoring,
                                    "MLOPS_EXPERIMENT_ID=" + result.run.experiment_id()};
    for (const auto& [k, v] : plan.params) env.push_back("MLOPS_PARAM_" + EnvName(k) + "=" + v);
    for (const auto& [k, v] : input_paths) env.push_back("MLOPS_INPUT_" + EnvName(k) + "=" + v);
    std::string logs = plan.work_dir + "/" + kRunScratchDir + "/logs/" + run_id;
    fs::create_directories(logs);
    // Scratch that git should not show: everything under .mlops-run is ignored.
    std::ofstream(plan.work_dir + "/" + kRunScratchDir + "/.gitignore") << "*\n";
    fs::remove(plan.work_dir + "/metrics.json");  // only what this run writes counts
    int status = Spawn(plan.command, plan.work_dir, env, logs);
    result.exit_code = status;
    mv1::LogBatchRequest batch;
    batch.set_run_id(run_id);
    for (const char* stream : {"stdout", "stderr"}) {
      auto blob = artifacts_.UploadFile(logs + "/" + stream + ".log", /*pin=*/true, nullptr);
      if (blob.ok()) (*batch.mutable_tags())[std::string("mlops.") + stream] = blob->digest();
    }
    (*batch.mutable_tags())["mlops.exit_code"] = std::to_string(status);
    if (status == 0) {
      for (const auto& path : plan.outputs) {
        std::string file = plan.work_dir + "/" + path;
        if (!fs::is_regular_file(file)) {
          result.message = "declared output " + path + " was not written";
          result.exit_code = 1;
          break;
        }
        auto blob = artifacts_.UploadFile(file, /*pin=*/true, nullptr);
        if (!blob.ok()) {
          result.message = "upload of " + path + ": " + std::string(blob.status().message());
          result.exit_code = 1;
          break;
        }
        result.outputs[path] = blob->digest();
        (*batch.mutable_tags())["mlops.output." + path] = blob->digest();
      }
    } else {
      result.message = status > 128 ? "killed by signal " + std::to_string(status - 128)
                                    : "exit code " + std::to_string(status);
    }
    auto points = scheduler::ReadMetricsFile(plan.work_dir + "/metrics.json");
    if (!points.ok()) {
      result.message = std::string(points.status().message());
      if (result.exit_code == 0) result.exit_code = 1;
    } else {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
      for (const auto& point : *points) {
        mv1::Metric* metric = batch.add_metrics();
        metric->set_key(point.key);
        metric->set_value(point.value);
        metric->set_step(point.step);
        metric->set_timestamp_ms(now);
      }
    }
    if (!result.message.empty()) (*batch.mutable_tags())["mlops.message"] = result.message;
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, batch);
    RecordLineage(result.run, *source, result.outputs);
    mv1::UpdateRunRequest update;
    update.mutable_run()->set_id(run_id);
    update.mutable_run()->set_status(result.exit_code == 0 ? mv1::FINISHED : mv1::FAILED);
    update.mutable_update_mask()->add_paths("status");
    Call(metadata_.get(), &mv1::MetadataService::Stub::UpdateRun, update);
    mv1::GetRunRequest get;
    get.set_run_id(run_id);
    result.run = Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get);
    for (const auto& m : result.run.latest_metrics()) result.metrics[m.key()] = m.value();
    std::cerr << "mlops: run " << run_id << " "
              << (result.exit_code == 0 ? "FINISHED" : "FAILED (" + result.message + ")") << "\n";
    return result;
  }

  int Run(Args& args) {
    Plan plan;
    plan.experiment = args.Take("--experiment").value_or("default");
    plan.name = args.Take("--name").value_or("");
    for (const auto& p : args.TakeAll("--param")) {
      auto [k, v] = SplitKeyValue(p, "--param");
      plan.params[k] = v;
    }
    for (const auto& i : args.TakeAll("--input")) {
      auto [k, v] = SplitKeyValue(i, "--input");
      plan.inputs[k] = v;
    }
    plan.outputs = args.TakeAll("--output");
    for (const auto& t : args.TakeAll("--tag")) {
      auto [k, v] = SplitKeyValue(t, "--tag");
      plan.tags[k] = v;
    }
    plan.command = args.Rest();
    if (plan.command.empty()) throw UsageError{"mlops run [flags] -- COMMAND ARGS..."};
    plan.work_dir = fs::current_path().string();
    if (plan.name.empty()) plan.name = fs::path(plan.command[0]).filename().string();
    Result result = Execute(plan);
    if (json_) PrintJson(result.run);
    return result.exit_code;
  }

  int Reproduce(Args& args) {
    std::string id = args.Positional("RUN");
    double tolerance = ParseDouble(args.Take("--tolerance").value_or("1e-6"), "--tolerance");
    bool keep = args.TakeFlag("--keep");
    args.ExpectEmpty();
    mv1::GetRunRequest get;
    get.set_run_id(id);
    mv1::Run original = Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get);
    const mv1::RunSource& source = original.source();
    if (source.command().empty()) throw UsageError{"run " + id + " recorded no command"};
    if (source.code().commit().empty()) {
      throw UsageError{"run " + id + " recorded no git commit: its code cannot be checked out"};
    }
    std::string top = Trim(Capture({"git", "rev-parse", "--show-toplevel"}, "").out);
    if (top.empty())
      throw UsageError{"mlops reproduce runs inside a clone of the run's repository"};
    if (Capture({"git", "cat-file", "-e", source.code().commit() + "^{commit}"}, top).exit_code !=
        0) {
      throw UsageError{"commit " + source.code().commit() + " is not in this clone (git fetch?)"};
    }
    // A worktree at the recorded commit, with the recorded uncommitted changes applied.
    std::string tmp = (fs::temp_directory_path() / ("mlops-reproduce-" + id)).string();
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    std::string tree = tmp + "/tree";
    if (Capture({"git", "worktree", "add", "--detach", tree, source.code().commit()}, top)
            .exit_code != 0) {
      std::cerr << "mlops: git worktree add failed\n";
      return 1;
    }
    auto cleanup = [&] {
      if (keep) {
        std::cerr << "mlops: kept " << tree << "\n";
        return;
      }
      Capture({"git", "worktree", "remove", "--force", tree}, top);
      fs::remove_all(tmp);
    };
    if (source.code().dirty() && !source.code().diff_digest().empty()) {
      std::string patch = tmp + "/changes.patch";
      auto downloaded = artifacts_.DownloadToFile(Hex(source.code().diff_digest()), patch, nullptr);
      if (!downloaded.ok() ||
          Capture({"git", "apply", "--binary", "--whitespace=nowarn", patch}, tree).exit_code !=
              0) {
        std::cerr << "mlops: cannot apply the recorded uncommitted changes\n";
        cleanup();
        return 1;
      }
    }
    Plan plan;
    auto tag = [&](const std::string& key) {
      auto it = original.tags().find(key);
      return it == original.tags().end() ? std::string() : it->second;
    };
    plan.work_dir = tree + "/" + tag("mlops.repo_path");
    fs::create_directories(plan.work_dir);
    plan.experiment = ExperimentName(original.experiment_id());
    plan.name = original.name() + " (reproduction)";
    plan.params = {original.params().begin(), original.params().end()};
    for (const auto& [key, value] : original.tags()) {
      if (key.rfind("mlops.input.", 0) == 0) plan.inputs[key.substr(12)] = value;
    }
    std::stringstream outputs(tag("mlops.outputs"));
    std::string output;
    while (std::getline(outputs, output, ',')) {
      if (!output.empty()) plan.outputs.push_back(output);
    }
    plan.command = {source.command().begin(), source.command().end()};
    plan.tags["mlops.reproduction_of"] = id;
    plan.recorded = &source;
    Result again = Execute(plan);
    cleanup();

    // The verdict: outputs by digest, metrics by value.
    Verdict judged = JudgeReproduction(original, plan.outputs, again.exit_code, again.outputs,
                                       again.metrics, tolerance);
    const std::string& verdict = judged.verdict;
    mv1::LogBatchRequest mark;
    mark.set_run_id(id);
    (*mark.mutable_tags())["mlops.reproduced"] = verdict;
    (*mark.mutable_tags())["mlops.reproduced_by"] = again.run.id();
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, mark);
    mv1::LogBatchRequest own;
    own.set_run_id(again.run.id());
    (*own.mutable_tags())["mlops.verdict"] = verdict;
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, own);
    if (json_) {
      std::cout << "{\"run\": \"" << id << "\", \"reproduction\": \"" << again.run.id()
                << "\", \"verdict\": \"" << verdict << "\"}\n";
    } else {
      PrintTable({"WHAT", "ORIGINAL", "REPRODUCTION", "VERDICT"}, judged.rows);
      std::cout << "\nrun " << id << " reproduced as " << again.run.id() << ": " << verdict
                << (verdict == "identical" ? " (bit for bit)" : "") << "\n";
    }
    return verdict == "different" ? 1 : 0;
  }

  int Compare(Args& args) {
    std::vector<std::string> ids;
    while (auto id = args.OptionalPositional()) ids.push_back(*id);
    args.ExpectEmpty();
    if (ids.size() < 2) throw UsageError{"runs compare RUN RUN..."};
    std::vector<mv1::Run> runs;
    for (const auto& id : ids) {
      mv1::GetRunRequest get;
      get.set_run_id(id);
      runs.push_back(Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get));
    }
    if (json_) {
      for (const auto& run : runs) PrintJson(run);
      return 0;
    }
    Comparison table = CompareRuns(runs);
    PrintTable(table.header, table.rows);
    std::cout << "\n(params, inputs and code are shown where they differ; metrics always)\n";
    return 0;
  }

 private:
  std::string ExperimentId(const std::string& name) {
    mv1::GetExperimentByNameRequest get;
    get.set_name(name);
    mv1::Experiment experiment;
    grpc::ClientContext context;
    grpc::Status status = metadata_->GetExperimentByName(&context, get, &experiment);
    if (status.ok()) return experiment.id();
    if (status.error_code() != grpc::StatusCode::NOT_FOUND) FailRpc(status);
    mv1::CreateExperimentRequest create;
    create.set_name(name);
    return Call(metadata_.get(), &mv1::MetadataService::Stub::CreateExperiment, create).id();
  }

  std::string ExperimentName(const std::string& id) {
    mv1::GetExperimentRequest get;
    get.set_experiment_id(id);
    return Call(metadata_.get(), &mv1::MetadataService::Stub::GetExperiment, get).name();
  }

  // The commit, branch and remote; uncommitted changes as a patch stored in the artifact service.
  void RecordCode(const Plan& plan, mv1::CodeVersion* code, std::string* top) {
    CodeSnapshot snapshot = SnapshotCode(plan.work_dir, plan.outputs);
    *top = snapshot.top;
    if (!snapshot.warning.empty()) std::cerr << "mlops: warning: " << snapshot.warning << "\n";
    if (snapshot.commit.empty()) return;
    code->set_commit(snapshot.commit);
    code->set_branch(snapshot.branch);
    code->set_repository(snapshot.repository);
    if (snapshot.patch.empty()) return;
    auto blob = artifacts_.UploadBytes(snapshot.patch, /*pin=*/true, nullptr);
    if (blob.ok()) {
      code->set_dirty(true);
      code->set_diff_digest("sha256:" + blob->digest());
      std::cerr << "mlops: warning: the working tree is dirty; its uncommitted changes ("
                << snapshot.patch.size() << " bytes of patch) are stored with the run as "
                << blob->digest().substr(0, 12) << "\n";
    }
  }

  void RecordLockfiles(const std::string& work_dir, const std::string& top,
                       mv1::RunSource* source) {
    for (const auto& [key, path] : FindLockfiles(work_dir, top)) {
      auto blob = artifacts_.UploadFile(path, /*pin=*/true, nullptr);
      if (blob.ok()) (*source->mutable_dependency_digests())[key] = "sha256:" + blob->digest();
    }
  }

  // The run as a lineage execution: the datasets it read and the outputs it wrote.
  void RecordLineage(const mv1::Run& run, const mv1::RunSource& source,
                     const std::map<std::string, std::string>& outputs) {
    for (auto [kind, name] :
         {std::pair{mv1::EXECUTION, "Command"}, std::pair{mv1::ARTIFACT, "RunOutput"}}) {
      mv1::PutTypeRequest type;
      type.mutable_type()->set_kind(kind);
      type.mutable_type()->set_name(name);
      Call(lineage_.get(), &mv1::LineageService::Stub::PutType, type);
    }
    mv1::PutExecutionRequest request;
    mv1::Execution* execution = request.mutable_execution();
    execution->set_type("Command");
    execution->set_name(run.name());
    execution->set_run_id(run.id());
    execution->set_external_id("run/" + run.id());
    execution->set_state(mv1::Execution::COMPLETE);
    for (const auto& input : source.inputs()) {
      auto* entry = request.add_artifacts();
      entry->set_event_type(mv1::Event::INPUT);
      entry->set_path(input.name());
      std::string ref = "dataset:" + input.name() + "@" + Hex(input.digest());
      entry->mutable_artifact()->set_type("Dataset");
      entry->mutable_artifact()->set_name(input.name() + "@" + Hex(input.digest()));
      entry->mutable_artifact()->set_external_id(ref);
      entry->mutable_artifact()->set_digest(Hex(input.digest()));
    }
    for (const auto& [path, digest] : outputs) {
      auto* entry = request.add_artifacts();
      entry->set_event_type(mv1::Event::OUTPUT);
      entry->set_path(path);
      entry->mutable_artifact()->set_type("RunOutput");
      entry->mutable_artifact()->set_name(path);
      entry->mutable_artifact()->set_external_id("blob:" + digest);
      entry->mutable_artifact()->set_digest(digest);
    }
    Call(lineage_.get(), &mv1::LineageService::Stub::PutExecution, request);
  }

  // Runs the command in `dir`, its stdout and stderr shown here and written to `logs`; returns its
  // exit code (128 + the signal when one ended it). Ctrl-C reaches the command, not mlops, so the
  // run is still marked.
  int Spawn(const std::vector<std::string>& command, const std::string& dir,
            const std::vector<std::string>& extra_env, const std::string& logs) {
    SpawnOptions options;
    options.argv = command;
    options.cwd = dir;
    options.out = Stdio::Pipe();
    options.err = Stdio::Pipe();
    options.SetEnv(extra_env);
    std::ofstream out_log(logs + "/stdout.log", std::ios::binary),
        err_log(logs + "/stderr.log", std::ios::binary);
    // Ctrl-C and SIGTERM reach the command (it starts with them at their defaults); mlops waits.
    auto previous_int = ::signal(SIGINT, SIG_IGN);
    auto previous_term = ::signal(SIGTERM, SIG_IGN);
    int status = 127;
    auto child = Subprocess::Spawn(options);
    if (!child.ok()) {
      err_log << child.status().message() << "\n";
      std::cerr << "mlops: " << child.status().message() << "\n";
    } else {
      child->Drain(
          [&](std::string_view piece) {
            out_log.write(piece.data(), static_cast<std::streamsize>(piece.size()));
            (void)!::write(1, piece.data(), piece.size());
          },
          [&](std::string_view piece) {
            err_log.write(piece.data(), static_cast<std::streamsize>(piece.size()));
            (void)!::write(2, piece.data(), piece.size());
          });
      status = child->Wait();
    }
    ::signal(SIGINT, previous_int);
    ::signal(SIGTERM, previous_term);
    return status;
  }

  std::unique_ptr<mv1::MetadataService::Stub> metadata_;
  std::unique_ptr<mv1::LineageService::Stub> lineage_;
  artifact::ArtifactClient artifacts_;
  Endpoints endpoints_;
  bool json_;
};

}  // namespace

int RunCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                   std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints, bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), endpoints, json);
  return cli.Run(args);
}

int ReproduceCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                         std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints,
                         bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), endpoints, json);
  return cli.Reproduce(args);
}

int CompareRunsCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                           std::shared_ptr<grpc::Channel> artifact, bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), {}, json);
  return cli.Compare(args);
}

}  // namespace mlops::cli
