#include "tools/cli/run_recording.h"

#include <gnu/libc-version.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "services/common/strings.h"
#include "services/common/subprocess.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;

// Files that pin a project's dependencies.
const char* const kLockfiles[] = {"requirements.txt",  "requirements-dev.txt",
                                  "poetry.lock",       "Pipfile.lock",
                                  "environment.yml",   "environment.yaml",
                                  "conda-lock.yml",    "uv.lock",
                                  "package-lock.json", "yarn.lock",
                                  "Cargo.lock",        "go.sum"};
// Environment variables that change results.
const char* const kRecordedEnv[] = {
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "TZ", "LANG"};

struct Output {
  int exit_code = -1;
  std::string out;
};

// argv in `dir` (stdin closed, stderr dropped); exit code -1 when it cannot start.
Output Capture(const std::vector<std::string>& argv, const std::string& dir,
               const std::map<std::string, std::string>& env = {}) {
  SpawnOptions options;
  options.argv = argv;
  options.cwd = dir;
  options.in = Stdio::Null();
  options.env = env;
  Output result;
  auto output = RunAndCapture(std::move(options));
  if (output.ok()) {
    result.exit_code = output->exit_code;
    result.out = std::move(output->out);
  }
  return result;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) {
    text.pop_back();
  }
  return text;
}

std::string FirstLine(const std::string& text) { return Trim(text.substr(0, text.find('\n'))); }

}  // namespace

std::string DigestHexOf(const std::string& digest) {
  return digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
}

std::map<std::string, std::string> CaptureEnvironment() {
  std::map<std::string, std::string> env;
  std::ifstream release("/etc/os-release");
  std::string line;
  while (std::getline(release, line)) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      std::string value = line.substr(12);
      if (value.size() >= 2 && value.front() == '"') value = value.substr(1, value.size() - 2);
      env["os"] = value;
    }
  }
  struct utsname name;
  if (::uname(&name) == 0) {
    env["kernel"] = name.release;
    env["arch"] = name.machine;
  }
  env["glibc"] = gnu_get_libc_version();
  for (const auto& [key, argv] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"cc", {"cc", "--version"}},
           {"c++", {"c++", "--version"}},
           {"python3", {"python3", "--version"}}}) {
    Output version = Capture(argv, "");
    if (version.exit_code == 0) env[key] = FirstLine(version.out);
  }
  for (const char* var : kRecordedEnv) {
    if (const char* value = std::getenv(var)) env[std::string("env.") + var] = value;
  }
  std::ifstream cgroup("/proc/1/cgroup");
  std::stringstream groups;
  groups << cgroup.rdbuf();
  bool container = fs::exists("/.dockerenv") || fs::exists("/run/.containerenv") ||
                   groups.str().find("docker") != std::string::npos ||
                   groups.str().find("kubepods") != std::string::npos ||
                   std::getenv("KUBERNETES_SERVICE_HOST") != nullptr;
  env["container"] = container ? "yes" : "no";
  return env;
}

CodeSnapshot SnapshotCode(const std::string& work_dir, const std::vector<std::string>& excluded) {
  CodeSnapshot code;
  code.top = RepositoryTop(work_dir);
  if (code.top.empty()) {
    code.warning = work_dir +
                   " is not in a git repository: the code is not recorded and the run cannot be "
                   "reproduced";
    return code;
  }
  code.commit = Trim(Capture({"git", "rev-parse", "HEAD"}, code.top).out);
  if (code.commit.empty()) {
    code.warning = "the repository has no commit yet";
    return code;
  }
  code.branch = Trim(Capture({"git", "rev-parse", "--abbrev-ref", "HEAD"}, code.top).out);
  code.repository = Trim(Capture({"git", "config", "--get", "remote.origin.url"}, code.top).out);
  // A scratch index holds HEAD plus every change, so that the user's index stays as it was.
  std::string index =
      (fs::temp_directory_path() / ("mlops-index-" + std::to_string(::getpid()))).string();
  std::map<std::string, std::string> env = {{"GIT_INDEX_FILE", index}};
  Capture({"git", "read-tree", "HEAD"}, code.top, env);
  std::vector<std::string> add = {"git", "add", "-A", "--", "."};
  std::string relative = fs::relative(work_dir, code.top).string();
  std::string prefix = relative == "." ? "" : relative + "/";
  for (const std::string& path : {std::string(".mlops"), std::string(kRunScratchDir)}) {
    add.push_back(":(exclude)" + prefix + path);
  }
  for (const auto& path : excluded) add.push_back(":(exclude)" + prefix + path);
  Capture(add, code.top, env);
  Output diff = Capture({"git", "diff", "--cached", "--binary", "HEAD"}, code.top, env);
  fs::remove(index);
  if (diff.exit_code == 0) code.patch = std::move(diff.out);
  return code;
}

std::string RepositoryTop(const std::string& dir) {
  return Trim(Capture({"git", "rev-parse", "--show-toplevel"}, dir).out);
}

absl::StatusOr<std::string> ReproductionClone(const mv1::Run& run) {
  const mv1::CodeVersion& code = run.source().code();
  if (run.source().command().empty()) {
    return absl::FailedPreconditionError(StrCat("run ", run.id(), " recorded no command"));
  }
  if (code.commit().empty()) {
    return absl::FailedPreconditionError(
        StrCat("run ", run.id(), " recorded no git commit: its code cannot be checked out"));
  }
  std::string top = RepositoryTop("");
  if (top.empty()) {
    return absl::FailedPreconditionError(
        "mlops reproduce runs inside a clone of the run's repository");
  }
  if (Capture({"git", "cat-file", "-e", code.commit() + "^{commit}"}, top).exit_code != 0) {
    return absl::FailedPreconditionError(
        StrCat("commit ", code.commit(), " is not in this clone (git fetch?)"));
  }
  return top;
}

namespace {

// git in `dir`: OK, or FAILED_PRECONDITION with what git said.
absl::Status Git(const std::vector<std::string>& args, const std::string& dir,
                 const std::string& what) {
  SpawnOptions options;
  options.argv = {"git"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.cwd = dir;
  options.in = Stdio::Null();
  auto output = RunAndCapture(std::move(options));
  if (!output.ok()) return output.status();
  if (output->exit_code != 0) {
    return absl::FailedPreconditionError(StrCat(what, ": ", Trim(output->err)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AddWorktree(const std::string& top, const std::string& commit,
                         const std::string& tree) {
  return Git({"worktree", "add", "--detach", tree, commit}, top,
             StrCat("git worktree add ", tree, " at ", commit));
}

void RemoveWorktree(const std::string& top, const std::string& tree) {
  (void)Git({"worktree", "remove", "--force", tree}, top, "git worktree remove");
}

absl::Status ApplyPatch(const std::string& tree, const std::string& patch) {
  return Git({"apply", "--binary", "--whitespace=nowarn", patch}, tree,
             "cannot apply the recorded uncommitted changes");
}

std::vector<std::pair<std::string, std::string>> FindLockfiles(const std::string& work_dir,
                                                               const std::string& top) {
  std::vector<std::pair<std::string, std::string>> found;
  std::set<std::string> dirs = {work_dir};
  if (!top.empty()) dirs.insert(top);
  for (const auto& dir : dirs) {
    for (const char* name : kLockfiles) {
      std::string path = dir + "/" + name;
      if (!fs::is_regular_file(path)) continue;
      found.emplace_back(top.empty() ? name : fs::relative(path, top).string(), path);
    }
  }
  return found;
}

std::string EnvName(const std::string& key) {
  std::string name = key;
  for (char& c : name) {
    c = std::isalnum(static_cast<unsigned char>(c))
            ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
            : '_';
  }
  return name;
}

Verdict JudgeReproduction(const mv1::Run& original, const std::vector<std::string>& outputs,
                          int exit_code,
                          const std::map<std::string, std::string>& reproduced_outputs,
                          const std::map<std::string, double>& reproduced_metrics,
                          double tolerance) {
  Verdict verdict;
  auto tag = [&](const std::string& key) {
    auto it = original.tags().find(key);
    return it == original.tags().end() ? std::string() : it->second;
  };
  bool identical = exit_code == 0, within = true;
  for (const auto& path : outputs) {
    std::string before = tag("mlops.output." + path);
    auto it = reproduced_outputs.find(path);
    std::string after = it == reproduced_outputs.end() ? "" : it->second;
    bool same = !after.empty() && before == after;
    identical = identical && same;
    within = within && same;
    verdict.rows.push_back({"output " + path, before.substr(0, 12),
                            after.empty() ? "-" : after.substr(0, 12),
                            same ? "identical" : "DIFFERENT"});
  }
  for (const auto& m : original.latest_metrics()) {
    auto it = reproduced_metrics.find(m.key());
    std::string how;
    if (it == reproduced_metrics.end()) {
      how = "MISSING";
      identical = within = false;
    } else if (it->second == m.value() || (std::isnan(it->second) && std::isnan(m.value()))) {
      how = "equal";
    } else if (std::fabs(it->second - m.value()) <=
               tolerance * std::max(1.0, std::fabs(m.value()))) {
      how = "within tolerance";
      identical = false;
    } else {
      how = "DIFFERENT";
      identical = within = false;
    }
    verdict.rows.push_back({"metric " + m.key(), FormatDouble(m.value()),
                            it == reproduced_metrics.end() ? "-" : FormatDouble(it->second), how});
  }
  if (exit_code != 0) within = false;
  verdict.verdict = identical ? "identical" : within ? "within-tolerance" : "different";
  return verdict;
}

Comparison CompareRuns(const std::vector<mv1::Run>& runs) {
  Comparison table;
  table.header = {"", ""};
  for (const auto& run : runs) table.header.push_back(run.id().substr(0, 12) + " " + run.name());
  auto add = [&](const std::string& kind, const std::string& key,
                 const std::function<std::string(const mv1::Run&)>& value, bool only_different) {
    std::vector<std::string> row = {kind, key};
    bool differ = false;
    for (const auto& run : runs) {
      row.push_back(value(run));
      differ = differ || row.back() != row[2];
    }
    if (!only_different || differ) table.rows.push_back(row);
  };
  std::set<std::string> params, metrics, inputs;
  for (const auto& run : runs) {
    for (const auto& [k, v] : run.params()) params.insert(k);
    for (const auto& m : run.latest_metrics()) metrics.insert(m.key());
    for (const auto& i : run.source().inputs()) inputs.insert(i.name());
  }
  add(
      "code", "commit",
      [](const mv1::Run& r) {
        return r.source().code().commit().substr(0, 12) +
               (r.source().code().dirty() ? " (dirty)" : "");
      },
      true);
  for (const auto& k : params) {
    add(
        "param", k,
        [&](const mv1::Run& r) {
          auto it = r.params().find(k);
          return it == r.params().end() ? std::string("-") : it->second;
        },
        true);
  }
  for (const auto& k : inputs) {
    add(
        "input", k,
        [&](const mv1::Run& r) {
          for (const auto& i : r.source().inputs()) {
            if (i.name() == k) return DigestHexOf(i.digest()).substr(0, 12);
          }
          return std::string("-");
        },
        true);
  }
  for (const auto& k : metrics) {
    add(
        "metric", k,
        [&](const mv1::Run& r) {
          for (const auto& m : r.latest_metrics()) {
            if (m.key() == k) return FormatDouble(m.value());
          }
          return std::string("-");
        },
        false);
  }
  add(
      "status", "", [](const mv1::Run& r) { return mv1::RunStatus_Name(r.status()); }, false);
  return table;
}

}  // namespace mlops::cli
