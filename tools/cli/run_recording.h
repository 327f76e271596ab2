// What `mlops run`, `mlops reproduce` and `mlops runs compare` know about a run, with no service
// in the process: the environment a command runs in, the code it runs (commit and uncommitted
// changes as a patch), the lockfiles that pin its dependencies, the verdict on a reproduction and
// the table that compares runs. run_cli.cc records these through the services.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mlops/metadata/v1/metadata.pb.h"

namespace mlops::cli {

// Where `mlops run` materialises inputs and keeps logs, relative to the working dir (left out of
// the recorded patch).
inline constexpr char kRunScratchDir[] = ".mlops-run";

// OS ("os"), kernel, arch, glibc, compilers and interpreters found on PATH ("cc", "c++",
// "python3": their first --version line), the variables that change results ("env.TZ", ...) and
// whether this is a container ("yes"/"no").
std::map<std::string, std::string> CaptureEnvironment();

struct CodeSnapshot {
  std::string top;  // the repository's top directory; "" outside a git repository
  std::string commit, branch, repository;
  // Uncommitted changes, untracked files included and ignored ones not, as a binary patch against
  // the commit ("" when the tree is clean). Built in a scratch index: the user's is untouched.
  std::string patch;
  std::string warning;  // why the code is not (fully) recorded, for the user
};
// The code `work_dir` runs: `excluded` paths (relative to work_dir) are left out of the patch,
// as are .mlops and kRunScratchDir.
CodeSnapshot SnapshotCode(const std::string& work_dir, const std::vector<std::string>& excluded);

// The top directory of the git repository holding `dir` ("" = the current directory); "" when it
// is in none.
std::string RepositoryTop(const std::string& dir);

// The clone of the current directory in which `run` can be reproduced: its top directory.
// FAILED_PRECONDITION when the run recorded no command or no commit, when the current directory
// is in no git repository, or when that clone does not hold the commit (git fetch).
absl::StatusOr<std::string> ReproductionClone(const metadata::v1::Run& run);

// A detached worktree of the clone `top` at `commit`, in `tree` (which must not exist), and its
// removal. FAILED_PRECONDITION with git's message when git refuses.
absl::Status AddWorktree(const std::string& top, const std::string& commit,
                         const std::string& tree);
void RemoveWorktree(const std::string& top, const std::string& tree);
// Applies the binary patch in the file `patch` to the worktree `tree`. FAILED_PRECONDITION with
// git's message when it does not apply.
absl::Status ApplyPatch(const std::string& tree, const std::string& patch);

// The lockfiles (requirements.txt, poetry.lock, uv.lock, go.sum, ...) in `work_dir` and at the
// top of the repository, as (key, path): the key is the path relative to `top` (the bare name
// outside a repository).
std::vector<std::pair<std::string, std::string>> FindLockfiles(const std::string& work_dir,
                                                               const std::string& top);

// The hex of a recorded digest: "sha256:<hex>" or already bare.
std::string DigestHexOf(const std::string& digest);

// "MLOPS_PARAM_" + EnvName("learning-rate") = MLOPS_PARAM_LEARNING_RATE.
std::string EnvName(const std::string& key);

// How a reproduction compares with its original: each output by digest, each of the original's
// metrics by value ("equal", "within tolerance": |a - b| <= tolerance * max(1, |original|),
// "DIFFERENT", "MISSING"); verdict "identical" (every output and metric equal, exit 0),
// "within-tolerance" or "different".
struct Verdict {
  std::vector<std::vector<std::string>> rows;  // WHAT, ORIGINAL, REPRODUCTION, VERDICT
  std::string verdict;
};
Verdict JudgeReproduction(const metadata::v1::Run& original,
                          const std::vector<std::string>& outputs, int exit_code,
                          const std::map<std::string, std::string>& reproduced_outputs,
                          const std::map<std::string, double>& reproduced_metrics,
                          double tolerance);

// The table of `mlops runs compare`: code, params and inputs where the runs differ, every metric,
// the status. header[2..] names the runs.
struct Comparison {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};
Comparison CompareRuns(const std::vector<metadata::v1::Run>& runs);

}  // namespace mlops::cli
