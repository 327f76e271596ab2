// The pod sandbox's pause process for the CI cluster: holds the pod's
// namespaces, reaps children and exits on SIGTERM/SIGINT. Written by hand
// because no Debian package ships a pause image and no image can be pulled
// here; built static (no libc needed in the FROM-scratch image).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void Stop(int signo) {
  (void)signo;
  _exit(0);
}

static void Reap(int signo) {
  (void)signo;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction stop = {0}, reap = {0};
  stop.sa_handler = Stop;
  reap.sa_handler = Reap;
  reap.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  sigaction(SIGTERM, &stop, NULL);
  sigaction(SIGINT, &stop, NULL);
  sigaction(SIGCHLD, &reap, NULL);
  for (;;) pause();
}
