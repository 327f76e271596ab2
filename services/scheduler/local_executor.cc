#include "services/scheduler/local_executor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
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
  pid_t pgid = -1;          // replica 0's pid; every replica is in its group
  std::vector<pid_t> pids;  // by rank
  std::vector<int> pidfds;  // by rank; -1 once reaped
  int wake_fd = -1;         // eventfd: Cancel wakes the watcher
  int64_t start_ms = 0;
  int64_t deadline_ms = 0;  // 0: none
  std::atomic<bool> cancel{false};
  std::function<void(const AttemptResult&)> done;
};

namespace {

// A port nobody listens on now, for the replicas' rendezvous (MASTER_PORT).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string Describe(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  int signal = WTERMSIG(status);
  return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
}

bool Succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// Processes whose environment carries MLOPS_ATTEMPT_ID=<attempt_id> (an attempt recorded before its
// handle was), as (pid, process group) pairs.
std::vector<std::pair<pid_t, pid_t>> FindByAttemptEnv(const std::string& attempt_id) {
  std::vector<std::pair<pid_t, pid_t>> found;
  std::string wanted = "MLOPS_ATTEMPT_ID=" + attempt_id;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "environ", std::ios::binary);
    std::string var;
    while (std::getline(in, var, '\0')) {
      if (var == wanted) {
        pid_t pid = static_cast<pid_t>(std::atoi(name.c_str()));
        found.emplace_back(pid, ::getpgid(pid));
        break;
      }
    }
  }
  return found;
}

}  // namespace

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
  if (spec.replicas < 1) return absl::InvalidArgumentError("replicas: at least 1");
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
  // Environment: PATH and HOME from the scheduler, then the step's, then the replica's place in
  // the gang (the names torch.distributed and most launchers read).
  std::map<std::string, std::string> env;
  for (const char* name : {"PATH", "HOME", "LANG", "TZ"}) {
    if (const char* value = std::getenv(name)) env[name] = value;
  }
  env["TMPDIR"] = spec.work_dir;
  for (const auto& [k, v] : spec.env) env[k] = v;
  env["MLOPS_ATTEMPT_ID"] = spec.attempt_id;  // lets Recover find an attempt without its handle
  env["WORLD_SIZE"] = std::to_string(spec.replicas);
  if (spec.replicas > 1) {
    env["MASTER_ADDR"] = "127.0.0.1";
    env["MASTER_PORT"] = std::to_string(FreePort());
  }
  std::vector<std::string> args = spec.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  std::string out = spec.work_dir + "/stdout.log", err = spec.work_dir + "/stderr.log";
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  // Replicas append to the same files.
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addchdir_np(&actions, spec.work_dir.c_str());
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  int rc = 0;
  for (int rank = 0; rank < spec.replicas && rc == 0; ++rank) {
    env["RANK"] = env["LOCAL_RANK"] = std::to_string(rank);
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Replica 0 leads a process group of its own; the others join it, so that one signal to the
    // group reaches the whole gang and everything it started.
    posix_spawnattr_setpgroup(&attr, rank == 0 ? 0 : attempt->pgid);
    posix_spawnattr_setsigmask(&attr, &none);  // servers block SIGTERM; steps must not inherit it
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) break;
    if (rank == 0) attempt->pgid = pid;
    attempt->pids.push_back(pid);
    // pidfd_open through syscall(): Debian 12's <sys/pidfd.h> lacks C linkage for C++.
    attempt->pidfds.push_back(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  }
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    // The replicas already started go with the gang.
    if (attempt->pgid > 0) ::kill(-attempt->pgid, SIGKILL);
    for (size_t i = 0; i < attempt->pids.size(); ++i) {
      while (::waitpid(attempt->pids[i], nullptr, 0) < 0 && errno == EINTR) {
      }
      ::close(attempt->pidfds[i]);
    }
    {
      std::lock_guard lock(mu_);
      attempts_.erase(spec.attempt_id);
    }
    if (rc == ENOENT || rc == EACCES || rc == ENOEXEC) {
      return absl::FailedPreconditionError(
          StrCat("cannot start '", spec.argv[0], "': ", std::strerror(rc)));
    }
    return absl::UnavailableError(StrCat("posix_spawn '", spec.argv[0], "': ", std::strerror(rc)));
  }
  attempt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  attempt->start_ms = NowMs();
  attempt->deadline_ms = spec.timeout_ms > 0 ? attempt->start_ms + spec.timeout_ms : 0;
  // pid:pgid:start ticks of replica 0, then ,pid:start ticks of each other replica.
  std::string handle = StrCat(std::to_string(attempt->pids[0]), ":", std::to_string(attempt->pgid),
                              ":", std::to_string(StartTicks(attempt->pids[0])));
  for (size_t i = 1; i < attempt->pids.size(); ++i) {
    handle += StrCat(",", std::to_string(attempt->pids[i]), ":",
                     std::to_string(StartTicks(attempt->pids[i])));
  }
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
      ::kill(-attempt->pgid, SIGTERM);
      kill_at = now + options_.kill_grace_ms;
    }
  };
  const size_t replicas = attempt->pids.size();
  std::vector<int> statuses(replicas, 0);
  size_t left = replicas;
  int failed_rank = -1;  // the first replica that did not succeed: the gang fails with it
  while (left > 0) {
    int64_t now = NowMs();
    if (attempt->cancel.load()) terminate(now);
    if (attempt->deadline_ms > 0 && now >= attempt->deadline_ms && !timed_out &&
        !attempt->cancel.load()) {
      timed_out = true;
      terminate(now);
    }
    if (kill_at > 0 && now >= kill_at) ::kill(-attempt->pgid, SIGKILL);
    int64_t wait_ms = -1;
    if (kill_at > 0) {
      wait_ms = std::max<int64_t>(0, kill_at - now);
    } else if (attempt->deadline_ms > 0) {
      wait_ms = std::max<int64_t>(0, attempt->deadline_ms - now);
    }
    std::vector<pollfd> fds;
    std::vector<size_t> ranks;
    for (size_t r = 0; r < replicas; ++r) {
      if (attempt->pidfds[r] < 0) continue;
      fds.push_back({attempt->pidfds[r], POLLIN, 0});
      ranks.push_back(r);
    }
    fds.push_back({attempt->wake_fd, POLLIN, 0});
    int ready =
        ::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
    if (ready <= 0) continue;
    if (fds.back().revents & POLLIN) {
      uint64_t value;
      (void)!::read(attempt->wake_fd, &value, sizeof(value));
    }
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      size_t r = ranks[i];
      while (::waitpid(attempt->pids[r], &statuses[r], 0) < 0 && errno == EINTR) {
      }
      ::close(attempt->pidfds[r]);
      attempt->pidfds[r] = -1;
      --left;
      if (!Succeeded(statuses[r]) && failed_rank < 0) {
        failed_rank = static_cast<int>(r);
        if (left > 0) terminate(NowMs());
      }
    }
  }
  ::kill(-attempt->pgid, SIGKILL);  // whatever the step left behind in its group
  result.end_ms = NowMs();
  int status = statuses[failed_rank >= 0 ? failed_rank : 0];
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
  } else if (failed_rank < 0) {
    result.outcome = AttemptResult::Outcome::kSucceeded;
  } else {
    result.outcome = AttemptResult::Outcome::kFailed;
    result.message = replicas > 1 ? StrCat("replica ", std::to_string(failed_rank), " of ",
                                           std::to_string(replicas), ": ", Describe(status))
                                  : Describe(status);
  }
  {
    std::lock_guard lock(mu_);  // after this no Cancel can reach the descriptors
    attempts_.erase(attempt->id);
  }
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
  // Process groups still running from the attempt: by the handle's pids and start times (a reused
  // pid does not match), or, with no handle recorded yet, by the attempt id in the environment.
  std::set<pid_t> groups;
  long long pid = 0, pgid = 0;
  unsigned long long ticks = 0;
  int consumed = 0;
  if (std::sscanf(handle.c_str(), "%lld:%lld:%llu%n", &pid, &pgid, &ticks, &consumed) == 3 &&
      pid > 0 && pgid > 0) {
    bool alive = StartTicks(static_cast<pid_t>(pid)) == ticks;
    std::vector<std::string> replicas =
        absl::StrSplit(handle.substr(consumed), ',', absl::SkipEmpty());
    for (const std::string& replica : replicas) {
      long long rpid = 0;
      unsigned long long rticks = 0;
      if (std::sscanf(replica.c_str(), "%lld:%llu", &rpid, &rticks) == 2 && rpid > 0) {
        alive = alive || StartTicks(static_cast<pid_t>(rpid)) == rticks;
      }
    }
    if (alive) groups.insert(static_cast<pid_t>(pgid));
  } else if (handle.empty()) {
    for (const auto& [found, group] : FindByAttemptEnv(attempt_id)) {
      if (group > 1 && group != ::getpgrp()) groups.insert(group);
    }
  }
  for (pid_t group : groups) ::kill(-group, SIGKILL);
  // Orphaned by the old scheduler: stopped; its outputs are never collected.
  result.message = "the scheduler restarted while attempt " + attempt_id + " ran; " +
                   (groups.empty() ? "its process is gone" : "it was stopped");
  return result;
}

}  // namespace mlops::scheduler
