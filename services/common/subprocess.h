// Child processes, started one way everywhere (the local executor, `mlops run` and `reproduce`,
// the test fixtures, the bench): posix_spawnp with an argv (no shell), an environment, a working
// directory, each standard stream inherited, closed to /dev/null, written to a file or piped back,
// an optional process group, and the signal state a server's threads block reset for the child.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops {

// How one standard stream of a child is set up.
struct Stdio {
  enum class Kind { kInherit, kNull, kFile, kPipe };
  Kind kind = Kind::kInherit;
  std::string path;    // kFile
  bool append = true;  // kFile: append (replicas share a log), else truncate

  static Stdio Inherit() { return {}; }
  static Stdio Null() { return {Kind::kNull, "", true}; }
  static Stdio File(std::string path, bool append = true) {
    return {Kind::kFile, std::move(path), append};
  }
  static Stdio Pipe() { return {Kind::kPipe, "", true}; }
};

struct SpawnOptions {
  // argv[0] is looked up on the child's PATH unless it holds a '/'.
  std::vector<std::string> argv;
  // The child's environment: this process's (inherit_env) or none, with `env` set over it.
  bool inherit_env = true;
  std::map<std::string, std::string> env;
  // Sets NAME=VALUE entries ("NAME" alone: empty) into `env`.
  void SetEnv(const std::vector<std::string>& entries);
  std::string cwd;  // "": this process's
  Stdio in = Stdio::Inherit(), out = Stdio::Inherit(), err = Stdio::Inherit();
  // -1: this process's group; 0: a new group the child leads; > 0: join that group.
  pid_t process_group = -1;
  // The child starts with no signal blocked and SIGINT, SIGTERM, SIGPIPE at their defaults (a
  // server blocks or ignores them for its own handling; a child must not inherit that).
  bool reset_signals = true;
};

// A started child. Destroying it closes its pipes; it does not wait for the child (Wait, or
// Release to wait elsewhere).
class Subprocess {
 public:
  // INVALID_ARGUMENT for an empty argv; FAILED_PRECONDITION "cannot start 'X': ..." when the
  // program is missing, not executable or not a program; UNAVAILABLE when the system refuses
  // (no memory, too many processes, a file of `out`/`err` that cannot be opened).
  static absl::StatusOr<Subprocess> Spawn(const SpawnOptions& options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // Reads the stdout and stderr pipes (those that are pipes) to their end, handing each piece to
  // `on_out` / `on_err` as it comes; neither pipe can fill up and block the child.
  void Drain(const std::function<void(std::string_view)>& on_out,
             const std::function<void(std::string_view)>& on_err);
  // Waits for the child to end: its exit code, or 128 + the signal that ended it.
  int Wait();
  // Sends `signal` to the child's process group when it leads one, else to the child.
  void Signal(int signal) const;
  // Hands the pid to the caller, who then waits for it.
  pid_t Release();

 private:
  Subprocess() = default;
  void Close();

  pid_t pid_ = -1;
  bool leads_group_ = false;
  int out_fd_ = -1, err_fd_ = -1;
};

// The exit code of a waitpid status: the code, or 128 + the signal that ended the process.
int ExitCodeOf(int wait_status);

// 0 when posix_spawnp could start `program` from `cwd` with this PATH, else the errno it would
// fail with (ENOENT, EACCES): for callers that must refuse a missing program before they start
// something else that will run it.
int ProgramError(const std::string& program, const std::string& cwd, const std::string& path);

struct CommandOutput {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs a command to its end with its stdout and stderr captured (whatever `options` says of them).
absl::StatusOr<CommandOutput> RunAndCapture(SpawnOptions options);

}  // namespace mlops
