#include "tools/cli/step_runner.h"

#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/grpc_status.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"

namespace mlops::cli {
namespace {

namespace sv1 = ::mlops::scheduler::v1;

// The step's process, for the signal handler: a pod's SIGTERM (deletion, preemption) reaches the
// step, which gets its grace period to stop.
std::atomic<pid_t> step_pid{0};

void ForwardSignal(int signal) {
  pid_t pid = step_pid.load();
  if (pid > 0) ::kill(pid, signal);
}

// Reports, retrying a scheduler that is unavailable for a moment (restarting, rescheduled):
// 8 tries, 0.5 s doubling to 8 s (about a minute in all).
absl::Status Report(sv1::SchedulerService::Stub* stub, const sv1::ReportAttemptRequest& request) {
  absl::Status status;
  auto delay = std::chrono::milliseconds(500);
  for (int attempt = 0; attempt < 8; ++attempt) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    sv1::ReportAttemptResponse response;
    status = FromGrpcStatus(stub->ReportAttempt(&context, request, &response));
    if (status.ok() || (status.code() != absl::StatusCode::kUnavailable &&
                        status.code() != absl::StatusCode::kDeadlineExceeded)) {
      return status;
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(8000));
  }
  return status;
}

// The step's checkpoint file, kept while the step runs: polled every second, uploaded and reported
// when it changed and then stayed the same for a poll (so a file being written is not taken half
// way), at most once per `interval`, and once more when the step has exited.
class CheckpointKeeper {
 public:
  CheckpointKeeper(std::string path, std::string attempt_id, std::chrono::milliseconds interval,
                   artifact::ArtifactClient* artifacts, sv1::SchedulerService::Stub* scheduler)
      : path_(std::move(path)),
        attempt_id_(std::move(attempt_id)),
        interval_(interval),
        artifacts_(artifacts),
        scheduler_(scheduler) {
    thread_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_; })) {
        lock.unlock();
        Poll(/*final=*/false);
        lock.lock();
      }
    });
  }
  // Stops polling, then keeps the file once more if it changed.
  void Finish() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    Poll(/*final=*/true);
  }

 private:
  struct Seen {
    int64_t mtime_ns = -1;
    int64_t size = -1;
    bool operator==(const Seen&) const = default;
  };

  void Poll(bool final) {
    struct stat info;
    if (::stat(path_.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return;
    Seen now{static_cast<int64_t>(info.st_mtim.tv_sec) * 1000000000 + info.st_mtim.tv_nsec,
             static_cast<int64_t>(info.st_size)};
    const bool stable = now == last_seen_;
    last_seen_ = now;
    if (now == kept_) return;
    if (!final && (!stable || std::chrono::steady_clock::now() - last_kept_at_ < interval_)) return;
    auto blob = artifacts_->UploadFile(path_, /*pin=*/true, nullptr);
    if (!blob.ok()) {
      std::cerr << "mlops step: checkpoint upload: " << blob.status() << "\n";
      return;
    }
    sv1::ReportCheckpointRequest request;
    request.set_attempt_id(attempt_id_);
    request.set_digest(blob->digest());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    sv1::ReportCheckpointResponse response;
    grpc::Status reported = scheduler_->ReportCheckpoint(&context, request, &response);
    if (!reported.ok()) {
      std::cerr << "mlops step: checkpoint report: " << reported.error_message() << "\n";
      return;
    }
    kept_ = now;
    last_kept_at_ = std::chrono::steady_clock::now();
  }

  const std::string path_, attempt_id_;
  const std::chrono::milliseconds interval_;
  artifact::ArtifactClient* artifacts_;
  sv1::SchedulerService::Stub* scheduler_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
  Seen last_seen_, kept_;  // the poller's (then Finish's, after the join)
  std::chrono::steady_clock::time_point last_kept_at_{};
};

// MLOPS_CHECKPOINT_INTERVAL_MS: at most one checkpoint upload per this long (default 30 s, at
// least 1 s).
std::chrono::milliseconds CheckpointInterval() {
  const char* text = std::getenv("MLOPS_CHECKPOINT_INTERVAL_MS");
  long long ms = text == nullptr ? 30000 : std::atoll(text);
  return std::chrono::milliseconds(std::max(1000LL, ms));
}

}  // namespace

absl::StatusOr<int> RunStep(const std::string& manifest_json, const std::vector<std::string>& argv,
                            std::shared_ptr<grpc::Channel> artifact_channel,
                            std::shared_ptr<grpc::Channel> scheduler_channel) {
  if (argv.empty()) return absl::InvalidArgumentError("no command: mlops step run -- COMMAND...");
  sv1::StepManifest manifest;
  if (auto parsed = google::protobuf::util::JsonStringToMessage(manifest_json, &manifest);
      !parsed.ok() || manifest.attempt_id().empty()) {
    return absl::InvalidArgumentError(
        StrCat("MLOPS_STEP_MANIFEST is not a step manifest: ",
               parsed.ok() ? "no attempt_id" : std::string(parsed.message())));
  }
  auto scheduler = sv1::SchedulerService::NewStub(scheduler_channel);
  sv1::ReportAttemptRequest report;
  report.set_attempt_id(manifest.attempt_id());
  // What the wrapper could not do fails the attempt with that reason.
  auto give_up = [&](const std::string& error) {
    std::cerr << "mlops step: " << error << "\n";
    report.clear_outputs();
    report.clear_metrics_json();
    report.set_error(error);
    absl::Status reported = Report(scheduler.get(), report);
    if (!reported.ok()) std::cerr << "mlops step: reporting that: " << reported << "\n";
    return kStepWrapperFailed;
  };

  artifact::ClientOptions client_options;
  client_options.sync_downloads = false;  // scratch copies: the artifact service has them
  artifact::ArtifactClient artifacts(artifact_channel, client_options);
  std::error_code ec;
  for (const sv1::StepManifest::Input& input : manifest.inputs()) {
    absl::Status fetched;
    if (!input.dataset().empty()) {
      fetched = artifacts.Pull(input.dataset(), input.version(), input.path(), nullptr).status();
    } else {
      std::filesystem::create_directories(std::filesystem::path(input.path()).parent_path(), ec);
      fetched = artifacts.DownloadToFile(input.digest(), input.path(), nullptr);
    }
    if (!fetched.ok()) return give_up(StrCat("input ", input.name(), ": ", fetched.ToString()));
  }
  for (const auto& [name, path] : manifest.outputs()) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  }
  if (!manifest.checkpoint_path().empty()) {
    std::filesystem::create_directories(
        std::filesystem::path(manifest.checkpoint_path()).parent_path(), ec);
    if (!manifest.checkpoint_digest().empty()) {
      // An earlier attempt's: the step resumes from it.
      absl::Status restored = artifacts.DownloadToFile(manifest.checkpoint_digest(),
                                                       manifest.checkpoint_path(), nullptr);
      if (!restored.ok()) return give_up("restoring the checkpoint: " + restored.ToString());
    }
  }

  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.in = Stdio::Null();
  auto child = Subprocess::Spawn(spawn);
  if (!child.ok()) return give_up(std::string(child.status().message()));
  std::optional<CheckpointKeeper> checkpoint;
  if (!manifest.checkpoint_path().empty()) {
    checkpoint.emplace(manifest.checkpoint_path(), manifest.attempt_id(), CheckpointInterval(),
                       &artifacts, scheduler.get());
  }
  step_pid = child->pid();
  struct sigaction forward {};
  forward.sa_handler = ForwardSignal;
  sigaction(SIGTERM, &forward, nullptr);
  sigaction(SIGINT, &forward, nullptr);
  const int exit_code = child->Wait();
  step_pid = 0;
  if (checkpoint) checkpoint->Finish();  // also after a failure: the retry starts from it
  if (exit_code != 0) return exit_code;  // the step failed: its exit code says so, nothing to keep

  for (const auto& [name, path] : manifest.outputs()) {
    if (!std::filesystem::is_regular_file(path, ec)) {
      return give_up(StrCat("declared output ", name, " (", path, ") was not written"));
    }
    auto blob = artifacts.UploadFile(path, /*pin=*/true, nullptr);
    if (!blob.ok())
      return give_up(StrCat("upload of output ", name, ": ", blob.status().ToString()));
    (*report.mutable_outputs())[name] = blob->digest();
  }
  if (!manifest.metrics_path().empty() &&
      std::filesystem::is_regular_file(manifest.metrics_path(), ec)) {
    std::ifstream in(manifest.metrics_path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    report.set_metrics_json(text.str());
  }
  absl::Status reported = Report(scheduler.get(), report);
  if (!reported.ok()) {
    std::cerr << "mlops step: reporting the outputs: " << reported << "\n";
    return kStepWrapperFailed;
  }
  return 0;
}

}  // namespace mlops::cli
