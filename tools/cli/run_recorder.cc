#include "tools/cli/run_recorder.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_join.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"
#include "services/scheduler/metrics_file.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;

constexpr std::chrono::seconds kCallTimeout = std::chrono::minutes(5);

// Runs `command` in `dir`, its stdout and stderr shown on this process's and written to `logs`;
// returns its exit code (128 + the signal when one ended it; 127 when it cannot start, the reason
// in the stderr log). Ctrl-C and SIGTERM reach the command (it starts with them at their
// defaults) while this process waits, so the run is still marked.
int RunTeed(const std::vector<std::string>& command, const std::string& dir,
            const std::vector<std::string>& extra_env, const std::string& logs, std::ostream& log) {
  SpawnOptions options;
  options.argv = command;
  options.cwd = dir;
  options.out = Stdio::Pipe();
  options.err = Stdio::Pipe();
  options.SetEnv(extra_env);
  std::ofstream out_log(logs + "/stdout.log", std::ios::binary),
      err_log(logs + "/stderr.log", std::ios::binary);
  auto previous_int = ::signal(SIGINT, SIG_IGN);
  auto previous_term = ::signal(SIGTERM, SIG_IGN);
  int status = 127;
  auto child = Subprocess::Spawn(options);
  if (!child.ok()) {
    err_log << child.status().message() << "\n";
    log << "mlops: " << child.status().message() << "\n";
  } else {
    auto tee = [](std::ofstream& file, int fd) {
      return [&file, fd](std::string_view piece) {
        file.write(piece.data(), static_cast<std::streamsize>(piece.size()));
        (void)!::write(fd, piece.data(), piece.size());
      };
    };
    child->Drain(tee(out_log, 1), tee(err_log, 2));
    status = child->Wait();
  }
  ::signal(SIGINT, previous_int);
  ::signal(SIGTERM, previous_term);
  return status;
}

// `status` with what was being done in front of its message.
absl::Status Doing(std::string_view what, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), StrCat(what, ": ", status.message()));
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

RunRecorder::RunRecorder(std::shared_ptr<grpc::Channel> metadata,
                         std::shared_ptr<grpc::Channel> artifact, Endpoints endpoints,
                         std::ostream& log)
    : metadata_(mv1::MetadataService::NewStub(metadata)),
      lineage_(mv1::LineageService::NewStub(metadata)),
      artifacts_(std::move(artifact)),
      endpoints_(std::move(endpoints)),
      log_(log) {}

absl::StatusOr<RunOutcome> RunRecorder::Execute(const RunPlan& plan) {
  mv1::CreateRunRequest create;
  auto experiment_id = ExperimentId(plan.experiment);
  if (!experiment_id.ok()) return experiment_id.status();
  create.set_experiment_id(*experiment_id);
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
    top = RepositoryTop(plan.work_dir);
  } else if (absl::Status recorded = RecordCode(plan, source->mutable_code(), &top);
             !recorded.ok()) {
    return recorded;
  }
  if (!top.empty()) {
    (*create.mutable_tags())["mlops.repo_path"] = fs::relative(plan.work_dir, top).string();
  }
  for (const auto& [k, v] : CaptureEnvironment()) (*source->mutable_environment())[k] = v;
  if (const char* image = std::getenv("MLOPS_IMAGE_DIGEST")) source->set_image_digest(image);
  for (const auto& [key, path] : FindLockfiles(plan.work_dir, top)) {
    auto blob = artifacts_.UploadFile(path, /*pin=*/true, nullptr);
    if (!blob.ok()) return blob.status();
    (*source->mutable_dependency_digests())[key] = "sha256:" + blob->digest();
  }
  // Inputs: dataset versions resolved to their digest and materialised under .mlops-run/.
  std::map<std::string, std::string> input_paths;
  for (const auto& [local, ref] : plan.inputs) {
    size_t at = ref.find('@');
    std::string dataset = ref.substr(0, at),
                version = at == std::string::npos ? "" : ref.substr(at + 1);
    std::string dir = StrCat(plan.work_dir, "/", kRunScratchDir, "/inputs/", local);
    auto pulled = artifacts_.Pull(dataset, version, dir, nullptr);
    if (!pulled.ok()) {
      return absl::Status(pulled.status().code(),
                          StrCat("input ", local, " (", ref, "): ", pulled.status().message()));
    }
    mv1::InputDataset* input = source->add_inputs();
    input->set_name(dataset);
    input->set_digest("sha256:" + pulled->version.digest());
    (*create.mutable_tags())["mlops.input." + local] = dataset + "@" + pulled->version.digest();
    input_paths[local] = dir;
  }
  if (!plan.outputs.empty())
    (*create.mutable_tags())["mlops.outputs"] = absl::StrJoin(plan.outputs, ",");
  auto created =
      Call(metadata_.get(), &mv1::MetadataService::Stub::CreateRun, create, kCallTimeout);
  if (!created.ok()) return created.status();
  RunOutcome outcome;
  outcome.run = *std::move(created);
  log_ << "mlops: run " << outcome.run.id() << " (experiment " << plan.experiment << ")\n";
  absl::Status recorded = RunAndRecord(plan, *source, input_paths, &outcome);
  if (!recorded.ok()) {
    // Best effort: a run whose recording broke off is FAILED, with the reason, not left RUNNING.
    mv1::UpdateRunRequest update;
    update.mutable_run()->set_id(outcome.run.id());
    update.mutable_run()->set_status(mv1::FAILED);
    update.mutable_update_mask()->add_paths("status");
    (void)Tag(outcome.run.id(), {{"mlops.message", recorded.ToString()}});
    (void)Call(metadata_.get(), &mv1::MetadataService::Stub::UpdateRun, update, kCallTimeout);
    return recorded;
  }
  log_ << "mlops: run " << outcome.run.id() << " "
       << (outcome.exit_code == 0 ? "FINISHED" : "FAILED (" + outcome.message + ")") << "\n";
  return outcome;
}

absl::Status RunRecorder::RunAndRecord(const RunPlan& plan, const mv1::RunSource& source,
                                       const std::map<std::string, std::string>& input_paths,
                                       RunOutcome* outcome) {
  const std::string run_id = outcome->run.id();
  // The command, with MLOPS_* in its environment, its output shown and kept. It reaches each
  // service where this process did (MLOPS_SERVER: the metadata service).
  std::vector<std::string> env = {"MLOPS_RUN_ID=" + run_id,
                                  "MLOPS_SERVER=" + endpoints_.metadata,
                                  "MLOPS_METADATA_SERVER=" + endpoints_.metadata,
                                  "MLOPS_ARTIFACT_SERVER=" + endpoints_.artifact,
                                  "MLOPS_SCHEDULER_SERVER=" + endpoints_.scheduler,
                                  "MLOPS_MONITORING_SERVER=" + endpoints_.monitoring,
                                  "MLOPS_EXPERIMENT_ID=" + outcome->run.experiment_id()};
  for (const auto& [k, v] : plan.params) env.push_back("MLOPS_PARAM_" + EnvName(k) + "=" + v);
  for (const auto& [k, v] : input_paths) env.push_back("MLOPS_INPUT_" + EnvName(k) + "=" + v);
  const std::string scratch = StrCat(plan.work_dir, "/", kRunScratchDir);
  const std::string logs = StrCat(scratch, "/logs/", run_id);
  std::error_code error;
  fs::create_directories(logs, error);
  if (error) {
    return absl::FailedPreconditionError(StrCat("cannot create ", logs, ": ", error.message()));
  }
  // Scratch that git should not show: everything under .mlops-run is ignored.
  std::ofstream(scratch + "/.gitignore") << "*\n";
  fs::remove(plan.work_dir + "/metrics.json", error);  // only what this run writes counts
  const int status = RunTeed(plan.command, plan.work_dir, env, logs, log_);
  outcome->exit_code = status;

  mv1::LogBatchRequest batch;
  batch.set_run_id(run_id);
  for (const char* stream : {"stdout", "stderr"}) {
    auto blob = artifacts_.UploadFile(StrCat(logs, "/", stream, ".log"), /*pin=*/true, nullptr);
    if (!blob.ok()) return Doing(StrCat("storing the ", stream, " log"), blob.status());
    (*batch.mutable_tags())[StrCat("mlops.", stream)] = blob->digest();
  }
  (*batch.mutable_tags())["mlops.exit_code"] = std::to_string(status);
  if (status == 0) {
    for (const auto& path : plan.outputs) {
      const std::string file = plan.work_dir + "/" + path;
      if (!fs::is_regular_file(file)) {
        outcome->message = "declared output " + path + " was not written";
        outcome->exit_code = 1;
        break;
      }
      auto blob = artifacts_.UploadFile(file, /*pin=*/true, nullptr);
      if (!blob.ok()) {
        outcome->message = StrCat("upload of ", path, ": ", blob.status().message());
        outcome->exit_code = 1;
        break;
      }
      outcome->outputs[path] = blob->digest();
      (*batch.mutable_tags())["mlops.output." + path] = blob->digest();
    }
  } else {
    outcome->message = status > 128 ? "killed by signal " + std::to_string(status - 128)
                                    : "exit code " + std::to_string(status);
  }
  auto points = scheduler::ReadMetricsFile(plan.work_dir + "/metrics.json");
  if (!points.ok()) {
    outcome->message = std::string(points.status().message());
    if (outcome->exit_code == 0) outcome->exit_code = 1;
  } else {
    const int64_t now = NowMs();
    for (const auto& point : *points) {
      mv1::Metric* metric = batch.add_metrics();
      metric->set_key(point.key);
      metric->set_value(point.value);
      metric->set_step(point.step);
      metric->set_timestamp_ms(now);
    }
  }
  if (!outcome->message.empty()) (*batch.mutable_tags())["mlops.message"] = outcome->message;
  if (auto logged =
          Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, batch, kCallTimeout);
      !logged.ok()) {
    return Doing("logging the outcome", logged.status());
  }
  if (absl::Status linked = RecordLineage(outcome->run, source, outcome->outputs); !linked.ok()) {
    return Doing("recording the lineage", linked);
  }
  mv1::UpdateRunRequest update;
  update.mutable_run()->set_id(run_id);
  update.mutable_run()->set_status(outcome->exit_code == 0 ? mv1::FINISHED : mv1::FAILED);
  update.mutable_update_mask()->add_paths("status");
  if (auto updated =
          Call(metadata_.get(), &mv1::MetadataService::Stub::UpdateRun, update, kCallTimeout);
      !updated.ok()) {
    return Doing("marking the run", updated.status());
  }
  auto stored = GetRun(run_id);
  if (!stored.ok()) return stored.status();
  outcome->run = *std::move(stored);
  for (const auto& m : outcome->run.latest_metrics()) outcome->metrics[m.key()] = m.value();
  return absl::OkStatus();
}

absl::StatusOr<mv1::Run> RunRecorder::GetRun(const std::string& id) {
  mv1::GetRunRequest get;
  get.set_run_id(id);
  return Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get, kCallTimeout);
}

absl::StatusOr<Reproduction> RunRecorder::Reproduce(const mv1::Run& original,
                                                    const std::string& top, double tolerance,
                                                    bool keep) {
  const mv1::RunSource& source = original.source();
  // A worktree at the recorded commit, with the recorded uncommitted changes applied.
  const std::string scratch =
      (fs::temp_directory_path() / ("mlops-reproduce-" + original.id())).string();
  const std::string tree = scratch + "/tree";
  std::error_code error;
  fs::remove_all(scratch, error);
  fs::create_directories(scratch, error);
  if (absl::Status added = AddWorktree(top, source.code().commit(), tree); !added.ok()) {
    return added;
  }
  auto cleanup = [&] {
    if (keep) {
      log_ << "mlops: kept " << tree << "\n";
      return;
    }
    RemoveWorktree(top, tree);
    fs::remove_all(scratch, error);
  };
  if (source.code().dirty() && !source.code().diff_digest().empty()) {
    const std::string patch = scratch + "/changes.patch";
    absl::Status applied =
        artifacts_.DownloadToFile(DigestHexOf(source.code().diff_digest()), patch, nullptr);
    if (applied.ok()) applied = ApplyPatch(tree, patch);
    if (!applied.ok()) {
      cleanup();
      return applied;
    }
  }
  RunPlan plan;
  auto tag = [&](const std::string& key) {
    auto it = original.tags().find(key);
    return it == original.tags().end() ? std::string() : it->second;
  };
  plan.work_dir = tree + "/" + tag("mlops.repo_path");
  fs::create_directories(plan.work_dir, error);
  auto experiment = ExperimentName(original.experiment_id());
  if (!experiment.ok()) {
    cleanup();
    return experiment.status();
  }
  plan.experiment = *experiment;
  plan.name = original.name() + " (reproduction)";
  plan.params = {original.params().begin(), original.params().end()};
  for (const auto& [key, value] : original.tags()) {
    if (key.rfind("mlops.input.", 0) == 0) plan.inputs[key.substr(12)] = value;
  }
  std::stringstream outputs(tag("mlops.outputs"));
  for (std::string output; std::getline(outputs, output, ',');) {
    if (!output.empty()) plan.outputs.push_back(output);
  }
  plan.command = {source.command().begin(), source.command().end()};
  plan.tags["mlops.reproduction_of"] = original.id();
  plan.recorded = &source;
  auto again = Execute(plan);
  cleanup();
  if (!again.ok()) return again.status();

  // The verdict: outputs by digest, metrics by value.
  Reproduction reproduction;
  reproduction.verdict = JudgeReproduction(original, plan.outputs, again->exit_code, again->outputs,
                                           again->metrics, tolerance);
  reproduction.again = *std::move(again);
  const std::string& verdict = reproduction.verdict.verdict;
  if (absl::Status marked = Tag(
          original.id(),
          {{"mlops.reproduced", verdict}, {"mlops.reproduced_by", reproduction.again.run.id()}});
      !marked.ok()) {
    return marked;
  }
  if (absl::Status marked = Tag(reproduction.again.run.id(), {{"mlops.verdict", verdict}});
      !marked.ok()) {
    return marked;
  }
  return reproduction;
}

absl::Status RunRecorder::Tag(const std::string& run_id,
                              const std::map<std::string, std::string>& tags) {
  mv1::LogBatchRequest batch;
  batch.set_run_id(run_id);
  for (const auto& [key, value] : tags) (*batch.mutable_tags())[key] = value;
  return Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, batch, kCallTimeout).status();
}

absl::StatusOr<std::string> RunRecorder::ExperimentId(const std::string& name) {
  mv1::GetExperimentByNameRequest get;
  get.set_name(name);
  auto found =
      Call(metadata_.get(), &mv1::MetadataService::Stub::GetExperimentByName, get, kCallTimeout);
  if (found.ok()) return found->id();
  if (found.status().code() != absl::StatusCode::kNotFound) return found.status();
  mv1::CreateExperimentRequest create;
  create.set_name(name);
  auto created =
      Call(metadata_.get(), &mv1::MetadataService::Stub::CreateExperiment, create, kCallTimeout);
  if (!created.ok()) return created.status();
  return created->id();
}

absl::StatusOr<std::string> RunRecorder::ExperimentName(const std::string& id) {
  mv1::GetExperimentRequest get;
  get.set_experiment_id(id);
  auto experiment =
      Call(metadata_.get(), &mv1::MetadataService::Stub::GetExperiment, get, kCallTimeout);
  if (!experiment.ok()) return experiment.status();
  return experiment->name();
}

absl::Status RunRecorder::RecordCode(const RunPlan& plan, mv1::CodeVersion* code,
                                     std::string* top) {
  CodeSnapshot snapshot = SnapshotCode(plan.work_dir, plan.outputs);
  *top = snapshot.top;
  if (!snapshot.warning.empty()) log_ << "mlops: warning: " << snapshot.warning << "\n";
  if (snapshot.commit.empty()) return absl::OkStatus();
  code->set_commit(snapshot.commit);
  code->set_branch(snapshot.branch);
  code->set_repository(snapshot.repository);
  if (snapshot.patch.empty()) return absl::OkStatus();
  auto blob = artifacts_.UploadBytes(snapshot.patch, /*pin=*/true, nullptr);
  if (!blob.ok()) return blob.status();
  code->set_dirty(true);
  code->set_diff_digest("sha256:" + blob->digest());
  log_ << "mlops: warning: the working tree is dirty; its uncommitted changes ("
       << snapshot.patch.size() << " bytes of patch) are stored with the run as "
       << blob->digest().substr(0, 12) << "\n";
  return absl::OkStatus();
}

absl::Status RunRecorder::RecordLineage(const mv1::Run& run, const mv1::RunSource& source,
                                        const std::map<std::string, std::string>& outputs) {
  for (auto [kind, name] :
       {std::pair{mv1::EXECUTION, "Command"}, std::pair{mv1::ARTIFACT, "RunOutput"}}) {
    mv1::PutTypeRequest type;
    type.mutable_type()->set_kind(kind);
    type.mutable_type()->set_name(name);
    auto put = Call(lineage_.get(), &mv1::LineageService::Stub::PutType, type, kCallTimeout);
    if (!put.ok()) return put.status();
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
    entry->mutable_artifact()->set_type("Dataset");
    entry->mutable_artifact()->set_name(input.name() + "@" + DigestHexOf(input.digest()));
    entry->mutable_artifact()->set_external_id("dataset:" + input.name() + "@" +
                                               DigestHexOf(input.digest()));
    entry->mutable_artifact()->set_digest(DigestHexOf(input.digest()));
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
  return Call(lineage_.get(), &mv1::LineageService::Stub::PutExecution, request, kCallTimeout)
      .status();
}

}  // namespace mlops::cli
