#include "services/common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <utility>

#include "absl/strings/str_split.h"
#include "services/common/strings.h"

extern char** environ;

namespace mlops {
namespace {

absl::Status SpawnError(const std::string& program, int error) {
  if (error == ENOENT || error == EACCES || error == ENOEXEC || error == ENOTDIR) {
    return absl::FailedPreconditionError(
        StrCat("cannot start '", program, "': ", std::strerror(error)));
  }
  return absl::UnavailableError(StrCat("cannot start '", program, "': ", std::strerror(error)));
}

// The child's environment as NAME=VALUE strings.
std::vector<std::string> Environment(const SpawnOptions& options) {
  std::vector<std::string> out;
  if (options.inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      if (options.env.contains(std::string(entry.substr(0, entry.find('='))))) continue;
      out.emplace_back(entry);
    }
  }
  for (const auto& [name, value] : options.env) out.push_back(name + "=" + value);
  return out;
}

}  // namespace

absl::StatusOr<Subprocess> Subprocess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty() || options.argv[0].empty()) {
    return absl::InvalidArgumentError("argv: nothing to run");
  }
  // Pipes are made close-on-exec: the child gets its ends through dup2 only.
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  auto close_pipes = [&] {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
  };
  if ((options.out.kind == Stdio::Kind::kPipe && ::pipe2(out_pipe, O_CLOEXEC) != 0) ||
      (options.err.kind == Stdio::Kind::kPipe && ::pipe2(err_pipe, O_CLOEXEC) != 0)) {
    int error = errno;
    close_pipes();
    return absl::UnavailableError(StrCat("pipe: ", std::strerror(error)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  auto setup = [&](int fd, const Stdio& stdio, int pipe_write_end) {
    switch (stdio.kind) {
      case Stdio::Kind::kInherit:
        break;
      case Stdio::Kind::kNull:
        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY,
                                         0);
        break;
      case Stdio::Kind::kFile:
        posix_spawn_file_actions_addopen(
            &actions, fd, stdio.path.c_str(),
            fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT | (stdio.append ? O_APPEND : O_TRUNC), 0644);
        break;
      case Stdio::Kind::kPipe:
        if (fd != 0) posix_spawn_file_actions_adddup2(&actions, pipe_write_end, fd);
        break;
    }
  };
  setup(0, options.in.kind == Stdio::Kind::kPipe ? Stdio::Null() : options.in, -1);
  setup(1, options.out, out_pipe[1]);
  setup(2, options.err, err_pipe[1]);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = 0;
  if (options.process_group >= 0) {
    posix_spawnattr_setpgroup(&attr, options.process_group);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  if (options.reset_signals) {
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int signal : {SIGINT, SIGTERM, SIGPIPE}) sigaddset(&defaults, signal);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    flags |= POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<std::string> args = options.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = Environment(options);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  // posix_spawnp looks argv[0] up on the PATH of this process; the child's PATH is what a user
  // means, so a bare name is resolved against it first.
  std::string program = args[0];
  auto path = options.env.find("PATH");
  if (program.find('/') == std::string::npos && path != options.env.end()) {
    std::vector<std::string> dirs = absl::StrSplit(path->second, ':');
    for (const std::string& dir : dirs) {
      std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
      if (::access(candidate.c_str(), X_OK) == 0) {
        program = candidate;
        break;
      }
    }
  }
  Subprocess child;
  int rc = posix_spawnp(&child.pid_, program.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (out_pipe[1] >= 0) ::close(out_pipe[1]);
  if (err_pipe[1] >= 0) ::close(err_pipe[1]);
  out_pipe[1] = err_pipe[1] = -1;
  if (rc != 0) {
    close_pipes();
    child.pid_ = -1;
    return SpawnError(args[0], rc);
  }
  child.leads_group_ = options.process_group == 0;
  child.out_fd_ = out_pipe[0];
  child.err_fd_ = err_pipe[0];
  return child;
}

Subprocess::Subprocess(Subprocess&& other) noexcept { *this = std::move(other); }

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    Close();
    pid_ = std::exchange(other.pid_, -1);
    leads_group_ = other.leads_group_;
    out_fd_ = std::exchange(other.out_fd_, -1);
    err_fd_ = std::exchange(other.err_fd_, -1);
  }
  return *this;
}

Subprocess::~Subprocess() { Close(); }

void Subprocess::Close() {
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
  out_fd_ = err_fd_ = -1;
}

void Subprocess::Drain(const std::function<void(std::string_view)>& on_out,
                       const std::function<void(std::string_view)>& on_err) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  const std::function<void(std::string_view)>* sinks[2] = {&on_out, &on_err};
  int open = (out_fd_ >= 0) + (err_fd_ >= 0);
  char buf[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        if (*sinks[i]) (*sinks[i])(std::string_view(buf, static_cast<size_t>(n)));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open;
      }
    }
  }
  Close();
}

int Subprocess::Wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  pid_ = -1;
  return ExitCodeOf(status);
}

void Subprocess::Signal(int signal) const {
  if (pid_ <= 0) return;
  ::kill(leads_group_ ? -pid_ : pid_, signal);
}

pid_t Subprocess::Release() {
  Close();
  return std::exchange(pid_, -1);
}

void SpawnOptions::SetEnv(const std::vector<std::string>& entries) {
  for (const std::string& entry : entries) {
    size_t eq = entry.find('=');
    env[entry.substr(0, eq)] = eq == std::string::npos ? "" : entry.substr(eq + 1);
  }
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

int ProgramError(const std::string& program, const std::string& cwd, const std::string& path) {
  auto check = [](const std::string& file) {
    struct stat st;
    if (::stat(file.c_str(), &st) != 0) return errno;
    if (!S_ISREG(st.st_mode)) return EACCES;
    return ::access(file.c_str(), X_OK) == 0 ? 0 : errno;
  };
  if (program.find('/') != std::string::npos) {
    return check(program[0] == '/' ? program : cwd + "/" + program);
  }
  int error = ENOENT;
  std::vector<std::string> dirs = absl::StrSplit(path, ':');
  for (const std::string& dir : dirs) {
    const std::string& base = dir.empty() ? cwd : dir;
    int rc = check(base + "/" + program);
    if (rc == 0) return 0;
    if (rc == EACCES) error = EACCES;
  }
  return error;
}

absl::StatusOr<CommandOutput> RunAndCapture(SpawnOptions options) {
  options.out = Stdio::Pipe();
  options.err = Stdio::Pipe();
  auto child = Subprocess::Spawn(options);
  if (!child.ok()) return child.status();
  CommandOutput output;
  child->Drain([&](std::string_view piece) { output.out.append(piece); },
               [&](std::string_view piece) { output.err.append(piece); });
  output.exit_code = child->Wait();
  return output;
}

}  // namespace mlops
