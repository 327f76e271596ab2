#include "services/scheduler/local_executor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <sstream>

#include "services/common/ids.h"
#include "services/common/strings.h"

extern char** environ;

namespace mlops::scheduler {

const char* OutcomeName(AttemptResult::Outcome outcome) {
  switch (outcome) {
    case AttemptResult::Outcome::kSucceeded:
      return "SUCCEEDED";
    case AttemptResult::Outcome::kFailed:
      return "FAILED";
    case AttemptResult::Outcome::kTimedOut:
      return "TIMED_OUT";
    case AttemptResult::Outcome::kCanceled:
      return "CANCELED";
    case AttemptResult::Outcome::kLost:
      return "LOST";
  }
  return "UNKNOWN";
}

namespace {

// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot; 0 if gone.
uint64_t StartTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return 0;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

}  // namespace

struct LocalExecutor::Attempt {
  std::string id;
  pid_t pid = -1;
  int pidfd = -1;
  int wake_fd = -1;  // eventfd: Cancel wakes the watcher
  int64_t start_ms = 0;
  int64_t deadline_ms = 0;  // 0: none
  std::atomic<bool> cancel{false};
  std::function<void(const AttemptResult&)> done;
};

LocalExecutor::LocalExecutor() : LocalExecutor(Options()) {}
LocalExecutor::LocalExecutor(Options options) : options_(options) {}

LocalExecutor::~LocalExecutor() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, attempt] : attempts_) ids.push_back(id);
  }
  for (const auto& id : ids) Cancel(id).IgnoreError();
  while (running_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

absl::StatusOr<std::string> LocalExecutor::Launch(const LaunchSpec& spec,
                                                  std::function<void(const AttemptResult&)> done) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("argv: empty command");
  auto attempt = std::make_shared<Attempt>();
  attempt->id = spec.attempt_id;
  attempt->done = std::move(done);
  {
    std::lock_guard lock(mu_);
    if (attempts_.contains(spec.attempt_id)) {
      return absl::AlreadyExistsError("attempt " + spec.attempt_id + " is running");
    }
    attempts_[spec.attempt_id] = attempt;
  }
  auto forget = [&] {
    std::lock_guard lock(mu_);
    attempts_.erase(spec.attempt_id);
  };
  // Environment: PATH and HOME from the scheduler, then the step's.
  std::map<std::string, std::string> env;
  for (const char* name : {"PATH", "HOME", "LANG", "TZ"}) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  env["TMPDIR"] = spec.work_dir;
  for (const auto& [k, v] : spec.env) env[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  std::string out = spec.work_dir + "/stdout.log", err = spec.work_dir + "/stderr.log";
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addchdir_np(&actions, spec.work_dir.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // its own process group
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);  // servers block SIGTERM; steps must not inherit it
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    forget();
    if (rc == ENOENT || rc == EACCES || rc == ENOEXEC) {
      return absl::FailedPreconditionError(
          StrCat("cannot start '", spec.argv[0], "': ", std::strerror(rc)));
    }
    return absl::UnavailableError(StrCat("posix_spawn '", spec.argv[0], "': ", std::strerror(rc)));
  }
  attempt->pid = pid;
  // pidfd_open through syscall(): Debian 12's <sys/pidfd.h> lacks C linkage for C++.
  attempt->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  attempt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  attempt->start_ms = NowMs();
  attempt->deadline_ms = spec.timeout_ms > 0 ? attempt->start_ms + spec.timeout_ms : 0;
  std::string handle =
      StrCat(std::to_string(pid), ":", std::to_string(pid), ":", std::to_string(StartTicks(pid)));
  running_.fetch_add(1);
  std::thread([this, attempt] { Watch(attempt); }).detach();
  return handle;
}

void LocalExecutor::Watch(std::shared_ptr<Attempt> attempt) {
  AttemptResult result;
  result.start_ms = attempt->start_ms;
  bool timed_out = false;
  int64_t kill_at = 0;  // SIGKILL time once SIGTERM was sent
  auto terminate = [&](int64_t now) {
    if (kill_at == 0) {
      ::kill(-attempt->pid, SIGTERM);
      kill_at = now + options_.kill_grace_ms;
    }
  };
  for (;;) {
    int64_t now = NowMs();
    if (attempt->cancel.load()) terminate(now);
    if (attempt->deadline_ms > 0 && now >= attempt->deadline_ms && !timed_out &&
        !attempt->cancel.load()) {
      timed_out = true;
      terminate(now);
    }
    if (kill_at > 0 && now >= kill_at) ::kill(-attempt->pid, SIGKILL);
    int64_t wait_ms = -1;
    if (kill_at > 0) {
      wait_ms = std::max<int64_t>(0, kill_at - now);
    } else if (attempt->deadline_ms > 0) {
      wait_ms = std::max<int64_t>(0, attempt->deadline_ms - now);
    }
    pollfd fds[2] = {{attempt->pidfd, POLLIN, 0}, {attempt->wake_fd, POLLIN, 0}};
    int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
    if (ready > 0 && (fds[1].revents & POLLIN)) {
      uint64_t value;
      (void)!::read(attempt->wake_fd, &value, sizeof(value));
    }
    if (ready > 0 && (fds[0].revents & POLLIN)) break;
  }
  int status = 0;
  while (::waitpid(attempt->pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::kill(-attempt->pid, SIGKILL);  // whatever the step left behind in its group
  result.end_ms = NowMs();
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  if (attempt->cancel.load()) {
    result.outcome = AttemptResult::Outcome::kCanceled;
    result.message = "canceled";
  } else if (timed_out) {
    result.outcome = AttemptResult::Outcome::kTimedOut;
    result.message = "timed out after " + std::to_string(result.end_ms - result.start_ms) + " ms";
  } else if (WIFEXITED(status) && result.exit_code == 0) {
    result.outcome = AttemptResult::Outcome::kSucceeded;
  } else {
    result.outcome = AttemptResult::Outcome::kFailed;
    result.message = WIFEXITED(status) ? "exit code " + std::to_string(result.exit_code)
                                       : "killed by signal " + std::to_string(result.signal) +
                                             " (" + strsignal(result.signal) + ")";
  }
  {
    std::lock_guard lock(mu_);  // after this no Cancel can reach the descriptors
    attempts_.erase(attempt->id);
  }
  ::close(attempt->pidfd);
  ::close(attempt->wake_fd);
  attempt->done(result);
  running_.fetch_sub(1);
}

absl::Status LocalExecutor::Cancel(const std::string& attempt_id) {
  std::shared_ptr<Attempt> attempt;
  {
    std::lock_guard lock(mu_);
    auto it = attempts_.find(attempt_id);
    if (it == attempts_.end()) {
      return absl::NotFoundError("attempt " + attempt_id + " is not running");
    }
    attempt = it->second;
    attempt->cancel = true;
    uint64_t one = 1;
    (void)!::write(attempt->wake_fd, &one, sizeof(one));
  }
  return absl::OkStatus();
}

AttemptResult LocalExecutor::Recover(const std::string& attempt_id, const std::string& handle) {
  AttemptResult result;
  result.outcome = AttemptResult::Outcome::kLost;
  result.end_ms = NowMs();
  long long pid = 0, pgid = 0;
  unsigned long long ticks = 0;
  if (std::sscanf(handle.c_str(), "%lld:%lld:%llu", &pid, &pgid, &ticks) == 3 && pid > 0 &&
      StartTicks(static_cast<pid_t>(pid)) == ticks) {
    // Still running, orphaned by the old scheduler: stop it; its outputs are never collected.
    ::kill(-static_cast<pid_t>(pgid), SIGKILL);
    result.message = "the scheduler restarted while attempt " + attempt_id + " ran; it was stopped";
  } else {
    result.message =
        "the scheduler restarted while attempt " + attempt_id + " ran; its process is gone";
  }
  return result;
}

}  // namespace mlops::scheduler
