#include "services/scheduler/local_executor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_split.h"
#include "services/common/ids.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"

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
  std::string program;      // argv[0] of the step, for messages
  std::string work_dir;     // where the waiters write .mlops-exit.<rank>
  bool waited = false;      // the replicas run under mlops-step-waiter
  bool adopted = false;     // found by Recover: the waiters are not our children
  pid_t pgid = -1;          // replica 0's pid; every replica is in its group
  std::vector<pid_t> pids;  // by rank
  std::vector<int> pidfds;  // by rank; -1 once reaped (or, adopted, already gone)
  int wake_fd = -1;         // eventfd: Cancel wakes the watcher
  int64_t start_ms = 0;
  int64_t deadline_ms = 0;  // 0: none
  std::atomic<bool> cancel{false};
  std::function<void(const AttemptResult&)> done;
};

namespace {

constexpr char kWaitedPrefix[] = "w:";

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

std::string ExitFile(const std::string& work_dir, size_t rank) {
  return work_dir + "/.mlops-exit." + std::to_string(rank);
}

// What a waiter wrote: how its step ended, as a wait status, and the errno when it could not be
// started. False when there is no file (the waiter was killed, or never ran).
bool ReadExitFile(const std::string& path, int* status, int* spawn_error) {
  std::ifstream in(path);
  std::string word;
  int value = 0;
  if (!(in >> word >> value)) return false;
  *spawn_error = 0;
  if (word == "exit") {
    *status = (value & 0xff) << 8;
  } else if (word == "signal") {
    *status = value & 0x7f;
  } else if (word == "spawn-error") {
    *status = 127 << 8;
    *spawn_error = value;
  } else {
    return false;
  }
  return true;
}

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

// A handle's parts: the process group and each replica's (pid, start ticks), by rank.
struct Handle {
  bool waited = false;
  pid_t pgid = 0;
  std::vector<std::pair<pid_t, uint64_t>> replicas;
};

std::optional<Handle> ParseHandle(std::string_view text) {
  Handle handle;
  if (text.substr(0, 2) == kWaitedPrefix) {
    handle.waited = true;
    text.remove_prefix(2);
  }
  std::string first(text.substr(0, text.find(',')));
  long long pid = 0, pgid = 0;
  unsigned long long ticks = 0;
  if (std::sscanf(first.c_str(), "%lld:%lld:%llu", &pid, &pgid, &ticks) != 3 || pid <= 0 ||
      pgid <= 0) {
    return std::nullopt;
  }
  handle.pgid = static_cast<pid_t>(pgid);
  handle.replicas.emplace_back(static_cast<pid_t>(pid), ticks);
  if (text.find(',') == std::string_view::npos) return handle;
  std::vector<std::string> replicas =
      absl::StrSplit(std::string(text.substr(text.find(',') + 1)), ',', absl::SkipEmpty());
  for (const std::string& replica : replicas) {
    long long rpid = 0;
    unsigned long long rticks = 0;
    if (std::sscanf(replica.c_str(), "%lld:%llu", &rpid, &rticks) != 2 || rpid <= 0) {
      return std::nullopt;
    }
    handle.replicas.emplace_back(static_cast<pid_t>(rpid), rticks);
  }
  return handle;
}

int PidfdOpen(pid_t pid) {
  // Through syscall(): Debian 12's <sys/pidfd.h> lacks C linkage for C++.
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

std::string FindStepWaiter() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto beside = self.parent_path() / "mlops-step-waiter";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  const char* path = std::getenv("PATH");
  if (path == nullptr) return "";
  std::vector<std::string> dirs = absl::StrSplit(path, ':', absl::SkipEmpty());
  for (const std::string& dir : dirs) {
    std::string candidate = dir + "/mlops-step-waiter";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

LocalExecutor::LocalExecutor() : LocalExecutor(Options()) {}
LocalExecutor::LocalExecutor(Options options) : options_(std::move(options)) {}

LocalExecutor::~LocalExecutor() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, attempt] : attempts_) ids.push_back(id);
  }
  for (const auto& id : ids) Cancel(id).IgnoreError();
  while (running_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

absl::Status LocalExecutor::Start(std::shared_ptr<Attempt> attempt) {
  attempt->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::lock_guard lock(mu_);
  if (attempts_.contains(attempt->id)) {
    ::close(attempt->wake_fd);
    return absl::AlreadyExistsError("attempt " + attempt->id + " is running");
  }
  attempts_[attempt->id] = attempt;
  running_.fetch_add(1);
  std::thread([this, attempt] { Watch(attempt); }).detach();
  return absl::OkStatus();
}

absl::StatusOr<std::string> LocalExecutor::Launch(const LaunchSpec& spec,
                                                  std::function<void(const AttemptResult&)> done) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("argv: empty command");
  if (spec.replicas < 1) return absl::InvalidArgumentError("replicas: at least 1");
  {
    std::lock_guard lock(mu_);
    if (attempts_.contains(spec.attempt_id)) {
      return absl::AlreadyExistsError("attempt " + spec.attempt_id + " is running");
    }
  }
  auto attempt = std::make_shared<Attempt>();
  attempt->id = spec.attempt_id;
  attempt->program = spec.argv[0];
  attempt->work_dir = spec.work_dir;
  attempt->waited = !options_.waiter.empty();
  attempt->done = std::move(done);
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
  if (attempt->waited) {
    // The waiter starts the step; what starting it would say is said here, at Launch.
    if (int rc = ProgramError(spec.argv[0], spec.work_dir, env.count("PATH") ? env["PATH"] : "");
        rc != 0) {
      return absl::FailedPreconditionError(
          StrCat("cannot start '", spec.argv[0], "': ", std::strerror(rc)));
    }
  }
  SpawnOptions spawn;
  spawn.inherit_env = false;
  spawn.cwd = spec.work_dir;
  spawn.in = Stdio::Null();
  // Replicas append to the same files.
  spawn.out = Stdio::File(spec.work_dir + "/stdout.log");
  spawn.err = Stdio::File(spec.work_dir + "/stderr.log");
  absl::Status started = absl::OkStatus();
  for (int rank = 0; rank < spec.replicas && started.ok(); ++rank) {
    spawn.argv.clear();
    if (attempt->waited) {
      spawn.argv = {options_.waiter, ExitFile(spec.work_dir, static_cast<size_t>(rank))};
    }
    spawn.argv.insert(spawn.argv.end(), spec.argv.begin(), spec.argv.end());
    env["RANK"] = env["LOCAL_RANK"] = std::to_string(rank);
    spawn.env = env;
    // Replica 0 leads a process group of its own; the others join it, so that one signal to the
    // group reaches the whole gang and everything it started.
    spawn.process_group = rank == 0 ? 0 : attempt->pgid;
    auto child = Subprocess::Spawn(spawn);
    if (!child.ok()) {
      started = child.status();
      break;
    }
    pid_t pid = child->Release();
    if (rank == 0) attempt->pgid = pid;
    attempt->pids.push_back(pid);
    attempt->pidfds.push_back(PidfdOpen(pid));
  }
  if (!started.ok()) {
    // The replicas already started go with the gang.
    if (attempt->pgid > 0) ::kill(-attempt->pgid, SIGKILL);
    for (size_t i = 0; i < attempt->pids.size(); ++i) {
      while (::waitpid(attempt->pids[i], nullptr, 0) < 0 && errno == EINTR) {
      }
      ::close(attempt->pidfds[i]);
    }
    return started;
  }
  attempt->start_ms = NowMs();
  attempt->deadline_ms = spec.timeout_ms > 0 ? attempt->start_ms + spec.timeout_ms : 0;
  // [w:]pid:pgid:start ticks of replica 0, then ,pid:start ticks of each other replica.
  std::string handle =
      StrCat(attempt->waited ? kWaitedPrefix : "", std::to_string(attempt->pids[0]), ":",
             std::to_string(attempt->pgid), ":", std::to_string(StartTicks(attempt->pids[0])));
  for (size_t i = 1; i < attempt->pids.size(); ++i) {
    handle += StrCat(",", std::to_string(attempt->pids[i]), ":",
                     std::to_string(StartTicks(attempt->pids[i])));
  }
  if (absl::Status started = Start(attempt); !started.ok()) {
    // Launched twice at once under one id: this one goes.
    ::kill(-attempt->pgid, SIGKILL);
    for (size_t i = 0; i < attempt->pids.size(); ++i) {
      while (::waitpid(attempt->pids[i], nullptr, 0) < 0 && errno == EINTR) {
      }
      ::close(attempt->pidfds[i]);
    }
    return started;
  }
  return handle;
}

void LocalExecutor::Watch(std::shared_ptr<Attempt> attempt) {
  AttemptResult result;
  result.start_ms = attempt->start_ms;
  bool timed_out = false;
  bool lost = false;    // adopted: a waiter ended without saying how its step did
  int64_t kill_at = 0;  // SIGKILL time once SIGTERM was sent
  auto terminate = [&](int64_t now) {
    if (kill_at == 0) {
      ::kill(-attempt->pgid, SIGTERM);
      kill_at = now + options_.kill_grace_ms;
    }
  };
  const size_t replicas = attempt->pids.size();
  std::vector<int> statuses(replicas, 0);
  std::vector<int> spawn_errors(replicas, 0);
  size_t left = replicas;
  int failed_rank = -1;  // the first replica that did not succeed: the gang fails with it
  // A replica ended: how, from waitpid (our child) or from its waiter's file (adopted).
  auto ended = [&](size_t r) {
    if (attempt->adopted) {
      if (!ReadExitFile(ExitFile(attempt->work_dir, r), &statuses[r], &spawn_errors[r])) {
        lost = true;
        statuses[r] = SIGKILL;
      }
    } else {
      while (::waitpid(attempt->pids[r], &statuses[r], 0) < 0 && errno == EINTR) {
      }
      if (attempt->waited && WIFEXITED(statuses[r]) && WEXITSTATUS(statuses[r]) == 127) {
        int status = 0;
        ReadExitFile(ExitFile(attempt->work_dir, r), &status, &spawn_errors[r]);
      }
    }
    if (attempt->pidfds[r] >= 0) ::close(attempt->pidfds[r]);
    attempt->pidfds[r] = -1;
    --left;
    if ((lost || !Succeeded(statuses[r])) && failed_rank < 0) {
      failed_rank = static_cast<int>(r);
      if (left > 0) terminate(NowMs());
    }
  };
  // Adopted replicas that were gone before the watch began.
  for (size_t r = 0; r < replicas; ++r) {
    if (attempt->pidfds[r] < 0) ended(r);
  }
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
      if (fds[i].revents & POLLIN) ended(ranks[i]);
    }
  }
  ::kill(-attempt->pgid, SIGKILL);  // whatever the step left behind in its group
  result.end_ms = NowMs();
  size_t shown = static_cast<size_t>(failed_rank >= 0 ? failed_rank : 0);
  int status = statuses[shown];
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  std::string how = spawn_errors[shown] != 0 ? StrCat("cannot start '", attempt->program,
                                                      "': ", std::strerror(spawn_errors[shown]))
                                             : Describe(status);
  if (attempt->cancel.load()) {
    result.outcome = AttemptResult::Outcome::kCanceled;
    result.message = "canceled";
  } else if (timed_out) {
    result.outcome = AttemptResult::Outcome::kTimedOut;
    result.message = "timed out after " + std::to_string(result.end_ms - result.start_ms) + " ms";
  } else if (lost) {
    result.outcome = AttemptResult::Outcome::kLost;
    result.message = "the scheduler restarted while attempt " + attempt->id +
                     " ran; its waiter ended without recording how the step ended";
  } else if (failed_rank < 0) {
    result.outcome = AttemptResult::Outcome::kSucceeded;
  } else {
    result.outcome = AttemptResult::Outcome::kFailed;
    result.message = replicas > 1 ? StrCat("replica ", std::to_string(failed_rank), " of ",
                                           std::to_string(replicas), ": ", how)
                                  : how;
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

void LocalExecutor::Recover(const RecoverSpec& spec,
                            std::function<void(const AttemptResult&)> done) {
  std::optional<Handle> handle = ParseHandle(spec.handle);
  if (handle && handle->waited) {
    // Re-attach: each waiter still running is watched through a pidfd (a reused pid has another
    // start time and counts as gone); a gone one left its step's end in its file.
    auto attempt = std::make_shared<Attempt>();
    attempt->id = spec.attempt_id;
    attempt->work_dir = spec.work_dir;
    attempt->waited = attempt->adopted = true;
    attempt->pgid = handle->pgid;
    attempt->start_ms = spec.start_ms;
    attempt->deadline_ms = spec.timeout_ms > 0 ? spec.start_ms + spec.timeout_ms : 0;
    attempt->done = std::move(done);
    for (const auto& [pid, ticks] : handle->replicas) {
      attempt->pids.push_back(pid);
      attempt->pidfds.push_back(StartTicks(pid) == ticks ? PidfdOpen(pid) : -1);
    }
    absl::Status started = Start(attempt);
    if (started.ok()) return;
    done = std::move(attempt->done);
  }
  AttemptResult result;
  result.outcome = AttemptResult::Outcome::kLost;
  result.start_ms = spec.start_ms;
  result.end_ms = NowMs();
  // Process groups still running from the attempt: by the handle's pids and start times (a reused
  // pid does not match), or, with no handle recorded yet, by the attempt id in the environment.
  std::set<pid_t> groups;
  if (handle) {
    bool alive = false;
    for (const auto& [pid, ticks] : handle->replicas) alive = alive || StartTicks(pid) == ticks;
    if (alive) groups.insert(handle->pgid);
  } else if (spec.handle.empty()) {
    for (const auto& [found, group] : FindByAttemptEnv(spec.attempt_id)) {
      if (group > 1 && group != ::getpgrp()) groups.insert(group);
    }
    // Nothing of it runs, and its waiters said how it ended: the attempt finished while the
    // scheduler could not record its start. Reported as it ended, so that it is not run again.
    int status = 0, spawn_error = 0;
    if (groups.empty() && ReadExitFile(ExitFile(spec.work_dir, 0), &status, &spawn_error)) {
      result.outcome = AttemptResult::Outcome::kSucceeded;
      for (size_t rank = 0; ReadExitFile(ExitFile(spec.work_dir, rank), &status, &spawn_error);
           ++rank) {
        if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
        if (Succeeded(status)) continue;
        result.outcome = AttemptResult::Outcome::kFailed;
        if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
        result.message = spawn_error != 0 ? StrCat("cannot start: ", std::strerror(spawn_error))
                                          : Describe(status);
        break;
      }
      done(result);
      return;
    }
  }
  for (pid_t group : groups) ::kill(-group, SIGKILL);
  // Orphaned by the old scheduler with no way to learn how it ends: stopped; its outputs are
  // never collected.
  result.message = "the scheduler restarted while attempt " + spec.attempt_id + " ran; " +
                   (groups.empty() ? "its process is gone" : "it was stopped");
  done(result);
}

}  // namespace mlops::scheduler
