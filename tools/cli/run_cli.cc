#include "tools/cli/run_cli.h"

#include <filesystem>
#include <iostream>

#include "tools/cli/run_recorder.h"
#include "tools/cli/run_recording.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;

// The recorder's value, or the error printed (FailStatus) and exit 1.
template <typename T>
T OrExit(absl::StatusOr<T> result) {
  if (!result.ok()) FailStatus(result.status());
  return *std::move(result);
}

}  // namespace

int RunCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                   std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints, bool json) {
  RunPlan plan;
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
  RunRecorder recorder(std::move(metadata), std::move(artifact), endpoints, std::cerr);
  RunOutcome outcome = OrExit(recorder.Execute(plan));
  if (json) PrintJson(outcome.run);
  return outcome.exit_code;
}

int ReproduceCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                         std::shared_ptr<grpc::Channel> artifact, const Endpoints& endpoints,
                         bool json) {
  std::string id = args.Positional("RUN");
  double tolerance = ParseDouble(args.Take("--tolerance").value_or("1e-6"), "--tolerance");
  bool keep = args.TakeFlag("--keep");
  args.ExpectEmpty();
  RunRecorder recorder(std::move(metadata), std::move(artifact), endpoints, std::cerr);
  mv1::Run original = OrExit(recorder.GetRun(id));
  auto top = ReproductionClone(original);
  if (!top.ok()) throw UsageError{std::string(top.status().message())};
  Reproduction reproduction = OrExit(recorder.Reproduce(original, *top, tolerance, keep));
  const std::string& verdict = reproduction.verdict.verdict;
  const std::string& again = reproduction.again.run.id();
  if (json) {
    std::cout << "{\"run\": \"" << id << "\", \"reproduction\": \"" << again
              << "\", \"verdict\": \"" << verdict << "\"}\n";
  } else {
    PrintTable({"WHAT", "ORIGINAL", "REPRODUCTION", "VERDICT"}, reproduction.verdict.rows);
    std::cout << "\nrun " << id << " reproduced as " << again << ": " << verdict
              << (verdict == "identical" ? " (bit for bit)" : "") << "\n";
  }
  return verdict == "different" ? 1 : 0;
}

int CompareRunsCommandLine(Args& args, std::shared_ptr<grpc::Channel> metadata,
                           std::shared_ptr<grpc::Channel> artifact, bool json) {
  std::vector<std::string> ids;
  while (auto id = args.OptionalPositional()) ids.push_back(*id);
  args.ExpectEmpty();
  if (ids.size() < 2) throw UsageError{"runs compare RUN RUN..."};
  RunRecorder recorder(std::move(metadata), std::move(artifact), {}, std::cerr);
  std::vector<mv1::Run> runs;
  for (const auto& id : ids) runs.push_back(OrExit(recorder.GetRun(id)));
  if (json) {
    for (const auto& run : runs) PrintJson(run);
    return 0;
  }
  Comparison table = CompareRuns(runs);
  PrintTable(table.header, table.rows);
  std::cout << "\n(params, inputs and code are shown where they differ; metrics always)\n";
  return 0;
}

}  // namespace mlops::cli
