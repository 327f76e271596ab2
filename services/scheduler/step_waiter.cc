// mlops-step-waiter EXIT_FILE PROGRAM [ARG...]
//
// The local executor starts every step process through this small program, so that how a step
// ended is never lost with the scheduler: the waiter starts PROGRAM in its own process group (which
// the executor made) and with the same descriptors, waits for it, writes how it ended to EXIT_FILE
// ("exit N", "signal N", or "spawn-error ERRNO" when PROGRAM could not be started) by a rename, and
// ends the same way (the same exit code, or killed by the same signal). A scheduler restarted while
// the step runs finds the waiter by the handle it recorded, waits for it and reads the file.
//
// Written by hand (no package does this) against libc only: it is exec'd once per attempt and must
// start fast. It ignores the SIGTERM/SIGINT/SIGHUP a cancel sends to the group (the step gets them
// with their default action) so that it outlives the step to record its end; SIGKILL ends it too.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace {

// Writes `text` to `path` through a temporary file and a rename: a reader sees all of it or none.
void WriteAtomically(const char* path, const char* text) {
  char tmp[4096];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= static_cast<int>(sizeof(tmp))) return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  size_t len = strlen(text);
  bool ok = write(fd, text, len) == static_cast<ssize_t>(len);
  ok = close(fd) == 0 && ok;
  if (ok) rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: mlops-step-waiter EXIT_FILE PROGRAM [ARG...]\n");
    return 125;
  }
  const char* exit_file = argv[1];
  const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE};
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : forwarded) {
    signal(sig, SIG_IGN);
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigdefault(&attr, &defaults);  // ignored signals stay ignored across exec
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[2], nullptr, &attr, argv + 2, environ);
  posix_spawnattr_destroy(&attr);
  char text[64];
  if (rc != 0) {
    snprintf(text, sizeof(text), "spawn-error %d\n", rc);
    WriteAtomically(exit_file, text);
    fprintf(stderr, "mlops-step-waiter: cannot start '%s': %s\n", argv[2], strerror(rc));
    return 127;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 126;
  }
  if (WIFEXITED(status)) {
    snprintf(text, sizeof(text), "exit %d\n", WEXITSTATUS(status));
    WriteAtomically(exit_file, text);
    return WEXITSTATUS(status);
  }
  int sig = WTERMSIG(status);
  snprintf(text, sizeof(text), "signal %d\n", sig);
  WriteAtomically(exit_file, text);
  // End by the same signal, without a core dump of the waiter.
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  signal(sig, SIG_DFL);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, sig);
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  raise(sig);
  return 128 + sig;
}
