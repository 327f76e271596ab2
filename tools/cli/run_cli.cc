#include "tools/cli/run_cli.h"

#include <gnu/libc-version.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/strings.h"
#include "services/common/subprocess.h"
#include "services/scheduler/metrics_file.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;

// Files that pin a project's dependencies: recorded (content digest, stored) when present in the
// working dir or at the top of the repository.
const char* const kLockfiles[] = {"requirements.txt",  "requirements-dev.txt",
                                  "poetry.lock",       "Pipfile.lock",
                                  "environment.yml",   "environment.yaml",
                                  "conda-lock.yml",    "uv.lock",
                                  "package-lock.json", "yarn.lock",
                                  "Cargo.lock",        "go.sum"};
// Environment variables that change results.
const char* const kRecordedEnv[] = {
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED", "TZ", "LANG"};
// Where inputs are materialised, relative to the working dir (left out of the recorded diff).
constexpr char kInputsDir[] = ".mlops-run";

std::string Hex(const std::string& digest) {
  return digest.rfind("sha256:", 0) == 0 ? digest.substr(7) : digest;
}

struct Captured {
  int exit_code = -1;
  std::string out;
};

// Runs argv (no shell) in `dir` with extra environment entries (NAME=VALUE); returns its exit code
// and stdout (stderr is dropped). -1 when it cannot start.
Captured Capture(const std::vector<std::string>& argv, const std::string& dir,
                 const std::vector<std::string>& extra_env = {}) {
  SpawnOptions options;
  options.argv = argv;
  options.cwd = dir;
  options.in = Stdio::Null();
  for (const std::string& entry : extra_env) {
    size_t eq = entry.find('=');
    options.env[entry.substr(0, eq)] = eq == std::string::npos ? "" : entry.substr(eq + 1);
  }
  Captured result;
  auto output = RunAndCapture(std::move(options));
  if (!output.ok()) return result;
  result.exit_code = output->exit_code;
  result.out = std::move(output->out);
  return result;
}

std::string FirstLine(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// What the command will run with: OS, kernel, libc, compilers and interpreters, the variables
// that change results, and whether it is in a container.
std::map<std::string, std::string> Environment() {
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
    Captured version = Capture(argv, "");
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

class RunCli {
 public:
  RunCli(std::shared_ptr<grpc::Channel> metadata, std::shared_ptr<grpc::Channel> artifact,
         Endpoints endpoints, bool json)
      : metadata_(mv1::MetadataService::NewStub(metadata)),
        lineage_(mv1::LineageService::NewStub(metadata)),
        artifacts_(artifact),
        endpoints_(std::move(endpoints)),
        json_(json) {}

  template <typename Stub, typename Request, typename Response>
  Response Call(Stub* stub,
                grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub, method, request, std::chrono::minutes(5));
  }

  // What `mlops run` and `mlops reproduce` execute.
  struct Plan {
    std::string experiment = "default";
    std::string name;
    std::map<std::string, std::string> params;
    std::map<std::string, std::string> inputs;  // local name -> DATASET@REF
    std::vector<std::string> outputs;           // paths relative to the working dir
    std::vector<std::string> command;
    std::string work_dir;  // absolute
    std::map<std::string, std::string> tags;
    const mv1::RunSource* recorded = nullptr;  // reproduce: the original run's code and environment
  };
  struct Result {
    mv1::Run run;
    int exit_code = 0;
    std::map<std::string, std::string> outputs;  // path -> digest (hex)
    std::map<std::string, double> metrics;
    std::string message;
  };

  Result Execute(const Plan& plan) {
    Result result;
    mv1::CreateRunRequest create;
    create.set_experiment_id(ExperimentId(plan.experiment));
    create.set_name(plan.name);
    // In a pipeline step, a retried attempt finds the run its first attempt made for the same
    // command (and a reproduction the one for the same original run) instead of making another.
    create.set_request_id(
        StepRequestId(StrCat(plan.recorded != nullptr ? "reproduce/" : "run/", plan.experiment, "/",
                             plan.name, "/", absl::StrJoin(plan.command, std::string(1, '\0')))));
    for (const auto& [k, v] : plan.params) (*create.mutable_params())[k] = v;
    for (const auto& [k, v] : plan.tags) (*create.mutable_tags())[k] = v;
    mv1::RunSource* source = create.mutable_source();
    for (const auto& arg : plan.command) source->add_command(arg);
    source->set_working_dir(plan.work_dir);
    // Code: the commit and everything not committed, as a patch stored in the artifact service.
    std::string top;
    if (plan.recorded != nullptr) {
      *source->mutable_code() = plan.recorded->code();
      top = Trim(Capture({"git", "rev-parse", "--show-toplevel"}, plan.work_dir).out);
    } else {
      RecordCode(plan, source->mutable_code(), &top);
    }
    if (!top.empty()) {
      std::string relative = fs::relative(plan.work_dir, top).string();
      (*create.mutable_tags())["mlops.repo_path"] = relative;
    }
    auto environment = Environment();
    for (const auto& [k, v] : environment) (*source->mutable_environment())[k] = v;
    if (const char* image = std::getenv("MLOPS_IMAGE_DIGEST")) source->set_image_digest(image);
    RecordLockfiles(plan.work_dir, top, source);
    // Inputs: dataset versions resolved to their digest and materialised under .mlops-run/.
    std::map<std::string, std::string> input_paths;
    for (const auto& [local, ref] : plan.inputs) {
      size_t at = ref.find('@');
      std::string dataset = ref.substr(0, at),
                  version = at == std::string::npos ? "" : ref.substr(at + 1);
      std::string dir = plan.work_dir + "/" + kInputsDir + "/inputs/" + local;
      auto pulled = artifacts_.Pull(dataset, version, dir, nullptr);
      if (!pulled.ok()) {
        std::cerr << "mlops: input " << local << " (" << ref << "): " << pulled.status().message()
                  << "\n";
        std::exit(1);
      }
      mv1::InputDataset* input = source->add_inputs();
      input->set_name(dataset);
      input->set_digest("sha256:" + pulled->version.digest());
      (*create.mutable_tags())["mlops.input." + local] = dataset + "@" + pulled->version.digest();
      input_paths[local] = dir;
    }
    if (!plan.outputs.empty()) {
      std::string list;
      for (const auto& o : plan.outputs) list += (list.empty() ? "" : ",") + o;
      (*create.mutable_tags())["mlops.outputs"] = list;
    }
    result.run = Call(metadata_.get(), &mv1::MetadataService::Stub::CreateRun, create);
    const std::string run_id = result.run.id();
    std::cerr << "mlops: run " << run_id << " (experiment " << plan.experiment << ")\n";

    // The command, with MLOPS_* in its environment, its output shown and kept.
    // The command reaches each service where this CLI did (MLOPS_SERVER: the metadata service).
    std::vector<std::string> env = {"MLOPS_RUN_ID=" + run_id,
                                    "MLOPS_SERVER=" + endpoints_.metadata,
                                    "MLOPS_METADATA_SERVER=" + endpoints_.metadata,
                                    "MLOPS_ARTIFACT_SERVER=" + endpoints_.artifact,
                                    "MLOPS_SCHEDULER_SERVER=" + endpoints_.scheduler,
                                    "MLOPS_MONITORING_SERVER=" + endpoints_.monitoring,
                                    "MLOPS_EXPERIMENT_ID=" + result.run.experiment_id()};
    for (const auto& [k, v] : plan.params) env.push_back("MLOPS_PARAM_" + Upper(k) + "=" + v);
    for (const auto& [k, v] : input_paths) env.push_back("MLOPS_INPUT_" + Upper(k) + "=" + v);
    std::string logs = plan.work_dir + "/" + kInputsDir + "/logs/" + run_id;
    fs::create_directories(logs);
    // Scratch that git should not show: everything under .mlops-run is ignored.
    std::ofstream(plan.work_dir + "/" + kInputsDir + "/.gitignore") << "*\n";
    fs::remove(plan.work_dir + "/metrics.json");  // only what this run writes counts
    int status = Spawn(plan.command, plan.work_dir, env, logs);
    result.exit_code = status;
    mv1::LogBatchRequest batch;
    batch.set_run_id(run_id);
    for (const char* stream : {"stdout", "stderr"}) {
      auto blob = artifacts_.UploadFile(logs + "/" + stream + ".log", /*pin=*/true, nullptr);
      if (blob.ok()) (*batch.mutable_tags())[std::string("mlops.") + stream] = blob->digest();
    }
    (*batch.mutable_tags())["mlops.exit_code"] = std::to_string(status);
    if (status == 0) {
      for (const auto& path : plan.outputs) {
        std::string file = plan.work_dir + "/" + path;
        if (!fs::is_regular_file(file)) {
          result.message = "declared output " + path + " was not written";
          result.exit_code = 1;
          break;
        }
        auto blob = artifacts_.UploadFile(file, /*pin=*/true, nullptr);
        if (!blob.ok()) {
          result.message = "upload of " + path + ": " + std::string(blob.status().message());
          result.exit_code = 1;
          break;
        }
        result.outputs[path] = blob->digest();
        (*batch.mutable_tags())["mlops.output." + path] = blob->digest();
      }
    } else {
      result.message = status > 128 ? "killed by signal " + std::to_string(status - 128)
                                    : "exit code " + std::to_string(status);
    }
    auto points = scheduler::ReadMetricsFile(plan.work_dir + "/metrics.json");
    if (!points.ok()) {
      result.message = std::string(points.status().message());
      if (result.exit_code == 0) result.exit_code = 1;
    } else {
      int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
      for (const auto& point : *points) {
        mv1::Metric* metric = batch.add_metrics();
        metric->set_key(point.key);
        metric->set_value(point.value);
        metric->set_step(point.step);
        metric->set_timestamp_ms(now);
      }
    }
    if (!result.message.empty()) (*batch.mutable_tags())["mlops.message"] = result.message;
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, batch);
    RecordLineage(result.run, *source, result.outputs);
    mv1::UpdateRunRequest update;
    update.mutable_run()->set_id(run_id);
    update.mutable_run()->set_status(result.exit_code == 0 ? mv1::FINISHED : mv1::FAILED);
    update.mutable_update_mask()->add_paths("status");
    Call(metadata_.get(), &mv1::MetadataService::Stub::UpdateRun, update);
    mv1::GetRunRequest get;
    get.set_run_id(run_id);
    result.run = Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get);
    for (const auto& m : result.run.latest_metrics()) result.metrics[m.key()] = m.value();
    std::cerr << "mlops: run " << run_id << " "
              << (result.exit_code == 0 ? "FINISHED" : "FAILED (" + result.message + ")") << "\n";
    return result;
  }

  int Run(Args& args) {
    Plan plan;
    plan.experiment = args.Take("--experiment").value_or("default");
    plan.name = args.Take("--name").value_or("");
    for (const auto& p : args.TakeAll("--param")) {
      auto [k, v] = SplitKeyValue(p, "--param");
      plan.params[k] = v;
    }
    for (const auto& i : args.TakeAll("--input")) {
      auto [k, v] = SplitKeyValue(i, "--input");
      plan.inputs[k] = v;
    }
    plan.outputs = args.TakeAll("--output");
    for (const auto& t : args.TakeAll("--tag")) {
      auto [k, v] = SplitKeyValue(t, "--tag");
      plan.tags[k] = v;
    }
    plan.command = args.Rest();
    if (plan.command.empty()) throw UsageError{"mlops run [flags] -- COMMAND ARGS..."};
    plan.work_dir = fs::current_path().string();
    if (plan.name.empty()) plan.name = fs::path(plan.command[0]).filename().string();
    Result result = Execute(plan);
    if (json_) PrintJson(result.run);
    return result.exit_code;
  }

  int Reproduce(Args& args) {
    std::string id = args.Positional("RUN");
    double tolerance = ParseDouble(args.Take("--tolerance").value_or("1e-6"), "--tolerance");
    bool keep = args.TakeFlag("--keep");
    args.ExpectEmpty();
    mv1::GetRunRequest get;
    get.set_run_id(id);
    mv1::Run original = Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get);
    const mv1::RunSource& source = original.source();
    if (source.command().empty()) throw UsageError{"run " + id + " recorded no command"};
    if (source.code().commit().empty()) {
      throw UsageError{"run " + id + " recorded no git commit: its code cannot be checked out"};
    }
    std::string top = Trim(Capture({"git", "rev-parse", "--show-toplevel"}, "").out);
    if (top.empty())
      throw UsageError{"mlops reproduce runs inside a clone of the run's repository"};
    if (Capture({"git", "cat-file", "-e", source.code().commit() + "^{commit}"}, top).exit_code !=
        0) {
      throw UsageError{"commit " + source.code().commit() + " is not in this clone (git fetch?)"};
    }
    // A worktree at the recorded commit, with the recorded uncommitted changes applied.
    std::string tmp = (fs::temp_directory_path() / ("mlops-reproduce-" + id)).string();
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    std::string tree = tmp + "/tree";
    if (Capture({"git", "worktree", "add", "--detach", tree, source.code().commit()}, top)
            .exit_code != 0) {
      std::cerr << "mlops: git worktree add failed\n";
      return 1;
    }
    auto cleanup = [&] {
      if (keep) {
        std::cerr << "mlops: kept " << tree << "\n";
        return;
      }
      Capture({"git", "worktree", "remove", "--force", tree}, top);
      fs::remove_all(tmp);
    };
    if (source.code().dirty() && !source.code().diff_digest().empty()) {
      std::string patch = tmp + "/changes.patch";
      auto downloaded = artifacts_.DownloadToFile(Hex(source.code().diff_digest()), patch, nullptr);
      if (!downloaded.ok() ||
          Capture({"git", "apply", "--binary", "--whitespace=nowarn", patch}, tree).exit_code !=
              0) {
        std::cerr << "mlops: cannot apply the recorded uncommitted changes\n";
        cleanup();
        return 1;
      }
    }
    Plan plan;
    auto tag = [&](const std::string& key) {
      auto it = original.tags().find(key);
      return it == original.tags().end() ? std::string() : it->second;
    };
    plan.work_dir = tree + "/" + tag("mlops.repo_path");
    fs::create_directories(plan.work_dir);
    plan.experiment = ExperimentName(original.experiment_id());
    plan.name = original.name() + " (reproduction)";
    plan.params = {original.params().begin(), original.params().end()};
    for (const auto& [key, value] : original.tags()) {
      if (key.rfind("mlops.input.", 0) == 0) plan.inputs[key.substr(12)] = value;
    }
    std::stringstream outputs(tag("mlops.outputs"));
    std::string output;
    while (std::getline(outputs, output, ',')) {
      if (!output.empty()) plan.outputs.push_back(output);
    }
    plan.command = {source.command().begin(), source.command().end()};
    plan.tags["mlops.reproduction_of"] = id;
    plan.recorded = &source;
    Result again = Execute(plan);
    cleanup();

    // The verdict: outputs by digest, metrics by value.
    std::vector<std::vector<std::string>> rows;
    bool identical = again.exit_code == 0, within = true;
    for (const auto& path : plan.outputs) {
      std::string before = tag("mlops.output." + path);
      auto it = again.outputs.find(path);
      std::string after = it == again.outputs.end() ? "" : it->second;
      bool same = !after.empty() && before == after;
      identical = identical && same;
      within = within && same;
      rows.push_back({"output " + path, before.substr(0, 12),
                      after.empty() ? "-" : after.substr(0, 12), same ? "identical" : "DIFFERENT"});
    }
    for (const auto& m : original.latest_metrics()) {
      auto it = again.metrics.find(m.key());
      std::string verdict;
      if (it == again.metrics.end()) {
        verdict = "MISSING";
        identical = within = false;
      } else if (it->second == m.value() || (std::isnan(it->second) && std::isnan(m.value()))) {
        verdict = "equal";
      } else if (std::fabs(it->second - m.value()) <=
                 tolerance * std::max(1.0, std::fabs(m.value()))) {
        verdict = "within tolerance";
        identical = false;
      } else {
        verdict = "DIFFERENT";
        identical = within = false;
      }
      rows.push_back({"metric " + m.key(), FormatDouble(m.value()),
                      it == again.metrics.end() ? "-" : FormatDouble(it->second), verdict});
    }
    if (again.exit_code != 0) within = false;
    std::string verdict = identical ? "identical" : within ? "within-tolerance" : "different";
    mv1::LogBatchRequest mark;
    mark.set_run_id(id);
    (*mark.mutable_tags())["mlops.reproduced"] = verdict;
    (*mark.mutable_tags())["mlops.reproduced_by"] = again.run.id();
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, mark);
    mv1::LogBatchRequest own;
    own.set_run_id(again.run.id());
    (*own.mutable_tags())["mlops.verdict"] = verdict;
    Call(metadata_.get(), &mv1::MetadataService::Stub::LogBatch, own);
    if (json_) {
      std::cout << "{\"run\": \"" << id << "\", \"reproduction\": \"" << again.run.id()
                << "\", \"verdict\": \"" << verdict << "\"}\n";
    } else {
      PrintTable({"WHAT", "ORIGINAL", "REPRODUCTION", "VERDICT"}, rows);
      std::cout << "\nrun " << id << " reproduced as " << again.run.id() << ": " << verdict
                << (verdict == "identical" ? " (bit for bit)" : "") << "\n";
    }
    return verdict == "different" ? 1 : 0;
  }

  int Compare(Args& args) {
    std::vector<std::string> ids;
    while (auto id = args.OptionalPositional()) ids.push_back(*id);
    args.ExpectEmpty();
    if (ids.size() < 2) throw UsageError{"runs compare RUN RUN..."};
    std::vector<mv1::Run> runs;
    for (const auto& id : ids) {
      mv1::GetRunRequest get;
      get.set_run_id(id);
      runs.push_back(Call(metadata_.get(), &mv1::MetadataService::Stub::GetRun, get));
    }
    if (json_) {
      for (const auto& run : runs) PrintJson(run);
      return 0;
    }
    std::vector<std::string> header = {"", ""};
    for (const auto& run : runs) header.push_back(run.id().substr(0, 12) + " " + run.name());
    std::vector<std::vector<std::string>> rows;
    auto add = [&](const std::string& kind, const std::string& key,
                   const std::function<std::string(const mv1::Run&)>& value, bool only_different) {
      std::vector<std::string> row = {kind, key};
      bool differ = false;
      for (const auto& run : runs) {
        row.push_back(value(run));
        differ = differ || row.back() != row[2];
      }
      if (!only_different || differ) rows.push_back(row);
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
              if (i.name() == k) return Hex(i.digest()).substr(0, 12);
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
    PrintTable(header, rows);
    std::cout << "\n(params, inputs and code are shown where they differ; metrics always)\n";
    return 0;
  }

 private:
  static std::string Upper(std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (char& c : s) {
      if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
    }
    return s;
  }

  std::string ExperimentId(const std::string& name) {
    mv1::GetExperimentByNameRequest get;
    get.set_name(name);
    mv1::Experiment experiment;
    grpc::ClientContext context;
    grpc::Status status = metadata_->GetExperimentByName(&context, get, &experiment);
    if (status.ok()) return experiment.id();
    if (status.error_code() != grpc::StatusCode::NOT_FOUND) FailRpc(status);
    mv1::CreateExperimentRequest create;
    create.set_name(name);
    return Call(metadata_.get(), &mv1::MetadataService::Stub::CreateExperiment, create).id();
  }

  std::string ExperimentName(const std::string& id) {
    mv1::GetExperimentRequest get;
    get.set_experiment_id(id);
    return Call(metadata_.get(), &mv1::MetadataService::Stub::GetExperiment, get).name();
  }

  // The commit, branch and remote; uncommitted changes (untracked files included, ignored ones
  // not) as a binary patch against the commit, built in a scratch index so that the user's index
  // is untouched, and stored in the artifact service.
  void RecordCode(const Plan& plan, mv1::CodeVersion* code, std::string* top) {
    *top = Trim(Capture({"git", "rev-parse", "--show-toplevel"}, plan.work_dir).out);
    if (top->empty()) {
      std::cerr << "mlops: warning: " << plan.work_dir
                << " is not in a git repository: the code is not recorded and the run cannot be "
                   "reproduced\n";
      return;
    }
    std::string commit = Trim(Capture({"git", "rev-parse", "HEAD"}, *top).out);
    if (commit.empty()) {
      std::cerr << "mlops: warning: the repository has no commit yet\n";
      return;
    }
    code->set_commit(commit);
    code->set_branch(Trim(Capture({"git", "rev-parse", "--abbrev-ref", "HEAD"}, *top).out));
    code->set_repository(Trim(Capture({"git", "config", "--get", "remote.origin.url"}, *top).out));
    std::string index =
        (fs::temp_directory_path() / ("mlops-index-" + std::to_string(::getpid()))).string();
    std::vector<std::string> env = {"GIT_INDEX_FILE=" + index};
    Capture({"git", "read-tree", "HEAD"}, *top, env);
    std::vector<std::string> add = {"git", "add", "-A", "--", "."};
    std::string relative = fs::relative(plan.work_dir, *top).string();
    std::string prefix = relative == "." ? "" : relative + "/";
    for (const std::string& excluded : {std::string(".mlops"), std::string(kInputsDir)}) {
      add.push_back(":(exclude)" + prefix + excluded);
    }
    for (const auto& output : plan.outputs) add.push_back(":(exclude)" + prefix + output);
    Capture(add, *top, env);
    Captured diff = Capture({"git", "diff", "--cached", "--binary", "HEAD"}, *top, env);
    fs::remove(index);
    if (diff.exit_code == 0 && !diff.out.empty()) {
      auto blob = artifacts_.UploadBytes(diff.out, /*pin=*/true, nullptr);
      if (blob.ok()) {
        code->set_dirty(true);
        code->set_diff_digest("sha256:" + blob->digest());
        std::cerr << "mlops: warning: the working tree is dirty; its uncommitted changes ("
                  << diff.out.size() << " bytes of patch) are stored with the run as "
                  << blob->digest().substr(0, 12) << "\n";
      }
    }
  }

  void RecordLockfiles(const std::string& work_dir, const std::string& top,
                       mv1::RunSource* source) {
    std::set<std::string> dirs = {work_dir};
    if (!top.empty()) dirs.insert(top);
    for (const auto& dir : dirs) {
      for (const char* name : kLockfiles) {
        std::string path = dir + "/" + name;
        if (!fs::is_regular_file(path)) continue;
        auto blob = artifacts_.UploadFile(path, /*pin=*/true, nullptr);
        if (!blob.ok()) continue;
        std::string key = top.empty() ? name : fs::relative(path, top).string();
        (*source->mutable_dependency_digests())[key] = "sha256:" + blob->digest();
      }
    }
  }

  // The run as a lineage execution: the datasets it read and the outputs it wrote.
  void RecordLineage(const mv1::Run& run, const mv1::RunSource& source,
                     const std::map<std::string, std::string>& outputs) {
    for (auto [kind, name] :
         {std::pair{mv1::EXECUTION, "Command"}, std::pair{mv1::ARTIFACT, "RunOutput"}}) {
      mv1::PutTypeRequest type;
      type.mutable_type()->set_kind(kind);
      type.mutable_type()->set_name(name);
      Call(lineage_.get(), &mv1::LineageService::Stub::PutType, type);
    }
    mv1::PutExecutionRequest request;
    mv1::Execution* execution = request.mutable_execution();
    execution->set_type("Command");
    execution->set_name(run.name());
    execution->set_run_id(run.id());
    execution->set_external_id("run/" + run.id());
    execution->set_state(mv1::Execution::COMPLETE);
    for (const auto& input : source.inputs()) {
      auto* entry = request.add_artifacts();
      entry->set_event_type(mv1::Event::INPUT);
      entry->set_path(input.name());
      std::string ref = "dataset:" + input.name() + "@" + Hex(input.digest());
      entry->mutable_artifact()->set_type("Dataset");
      entry->mutable_artifact()->set_name(input.name() + "@" + Hex(input.digest()));
      entry->mutable_artifact()->set_external_id(ref);
      entry->mutable_artifact()->set_digest(Hex(input.digest()));
    }
    for (const auto& [path, digest] : outputs) {
      auto* entry = request.add_artifacts();
      entry->set_event_type(mv1::Event::OUTPUT);
      entry->set_path(path);
      entry->mutable_artifact()->set_type("RunOutput");
      entry->mutable_artifact()->set_name(path);
      entry->mutable_artifact()->set_external_id("blob:" + digest);
      entry->mutable_artifact()->set_digest(digest);
    }
    Call(lineage_.get(), &mv1::LineageService::Stub::PutExecution, request);
  }

  // Runs the command in `dir`, its stdout and stderr shown here and written to `logs`; returns its
  // exit code (128 + the signal when one ended it). Ctrl-C reaches the command, not mlops, so the
  // run is still marked.
  int Spawn(const std::vector<std::string>& command, const std::string& dir,
            const std::vector<std::string>& extra_env, const std::string& logs) {
    SpawnOptions options;
    options.argv = command;
    options.cwd = dir;
    options.out = Stdio::Pipe();
    options.err = Stdio::Pipe();
    for (const std::string& entry : extra_env) {
      size_t eq = entry.find('=');
      options.env[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    std::ofstream out_log(logs + "/stdout.log", std::ios::binary),
        err_log(logs + "/stderr.log", std::ios::binary);
    // Ctrl-C and SIGTERM reach the command (it starts with them at their defaults); mlops waits.
    auto previous_int = ::signal(SIGINT, SIG_IGN);
    auto previous_term = ::signal(SIGTERM, SIG_IGN);
    int status = 127;
    auto child = Subprocess::Spawn(options);
    if (!child.ok()) {
      err_log << child.status().message() << "\n";
      std::cerr << "mlops: " << child.status().message() << "\n";
    } else {
      child->Drain(
          [&](std::string_view piece) {
            out_log.write(piece.data(), static_cast<std::streamsize>(piece.size()));
            (void)!::write(1, piece.data(), piece.size());
          },
          [&](std::string_view piece) {
            err_log.write(piece.data(), static_cast<std::streamsize>(piece.size()));
            (void)!::write(2, piece.data(), piece.size());
          });
      status = child->Wait();
    }
    ::signal(SIGINT, previous_int);
    ::signal(SIGTERM, previous_term);
    return status;
  }

  std::unique_ptr<mv1::MetadataService::Stub> metadata_;
  std::unique_ptr<mv1::LineageService::Stub> lineage_;
  artifact::ArtifactClient artifacts_;
  Endpoints endpoints_;
  bool json_;
};

}  // namespace

int RunCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                   std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints, bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), endpoints, json);
  return cli.Run(args);
}

int ReproduceCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                         std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints,
                         bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), endpoints, json);
  return cli.Reproduce(args);
}

int CompareRunsCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                           std::shared_ptr<grpc::Channel> artifact, bool json) {
  RunCli cli(std::move(metadata), std::move(artifact), {}, json);
  return cli.Compare(args);
}

}  // namespace mlops::cli
