// The run recorder: what `mlops run` and `mlops reproduce` do with the services. It records a
// command as a run (code, uncommitted changes, command, environment, lockfiles, params, input data
// by digest), runs it, stores its logs, outputs and metrics, links it in the lineage graph, and
// reruns a recorded run from its recorded code and data to say whether it came out the same.
// Every failure is a status returned to the caller; run_cli.cc parses arguments and prints.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/run_recording.h"

namespace mlops::cli {

// What a run executes.
struct RunPlan {
  std::string experiment = "default";  // by name; created when missing
  std::string name;
  std::map<std::string, std::string> params;
  std::map<std::string, std::string> inputs;  // local name -> DATASET@REF
  std::vector<std::string> outputs;           // paths relative to work_dir
  std::vector<std::string> command;           // argv, no shell
  std::string work_dir;                       // absolute
  std::map<std::string, std::string> tags;
  // A reproduction: the original run's source, whose code is recorded instead of this tree's.
  const metadata::v1::RunSource* recorded = nullptr;
};

// How it went.
struct RunOutcome {
  metadata::v1::Run run;                       // as stored at the end
  int exit_code = 0;                           // the command's (128 + signal), 1 when outputs fail
  std::map<std::string, std::string> outputs;  // path -> digest (hex)
  std::map<std::string, double> metrics;       // latest value of each
  std::string message;                         // why it failed ("" when it did not)
};

struct Reproduction {
  RunOutcome again;
  Verdict verdict;
};

class RunRecorder {
 public:
  // `metadata` hosts MetadataService and LineageService, `artifact` ArtifactService; the command
  // reaches every service at `endpoints` (MLOPS_METADATA_SERVER, ...). Progress lines ("mlops: run
  // ID ...", warnings) go to `log`.
  RunRecorder(std::shared_ptr<grpc::Channel> metadata, std::shared_ptr<grpc::Channel> artifact,
              Endpoints endpoints, std::ostream& log);

  // Records `plan` as a run and runs its command in plan.work_dir with MLOPS_RUN_ID,
  // MLOPS_PARAM_<KEY>, MLOPS_INPUT_<NAME> (inputs materialised under .mlops-run/inputs) and the
  // service addresses in its environment; its stdout and stderr pass through to this process's
  // and are kept as pinned blobs; declared outputs are uploaded, metrics.json is logged, the run
  // becomes FINISHED or FAILED and a lineage execution links inputs to outputs.
  // A failing command is not an error: see RunOutcome. Errors: an input that does not resolve
  // (its code: NOT_FOUND, ...; nothing is recorded), the services' codes otherwise (UNAVAILABLE
  // when one is unreachable); an error after the run was created also marks it FAILED with the
  // error as its mlops.message where the metadata service still answers.
  // Inside a pipeline step (MLOPS_STEP_KEY), a retried attempt finds the run of the first.
  absl::StatusOr<RunOutcome> Execute(const RunPlan& plan);

  // The stored run. NOT_FOUND, or the service's code.
  absl::StatusOr<metadata::v1::Run> GetRun(const std::string& id);

  // Reruns `original` in a scratch worktree of the clone `top` (see ReproductionClone) at its
  // recorded commit with its recorded uncommitted changes, params, inputs and outputs; judges the
  // outcome (JudgeReproduction with `tolerance`) and tags both runs (mlops.reproduced and
  // mlops.reproduced_by on the original, mlops.verdict on the reproduction). The worktree is
  // removed unless `keep`. Errors: FAILED_PRECONDITION when the worktree cannot be made or the
  // changes do not apply; Execute's; the services' codes.
  absl::StatusOr<Reproduction> Reproduce(const metadata::v1::Run& original, const std::string& top,
                                         double tolerance, bool keep);

 private:
  absl::StatusOr<std::string> ExperimentId(const std::string& name);
  absl::StatusOr<std::string> ExperimentName(const std::string& id);
  // The run's code: commit, branch, remote; uncommitted changes as a pinned patch blob.
  absl::Status RecordCode(const RunPlan& plan, metadata::v1::CodeVersion* code, std::string* top);
  // The run as a lineage execution: the datasets it read and the outputs it wrote.
  absl::Status RecordLineage(const metadata::v1::Run& run, const metadata::v1::RunSource& source,
                             const std::map<std::string, std::string>& outputs);
  // What happens once the run exists (Execute's second half).
  absl::Status RunAndRecord(const RunPlan& plan, const metadata::v1::RunSource& source,
                            const std::map<std::string, std::string>& input_paths,
                            RunOutcome* outcome);
  absl::Status Tag(const std::string& run_id, const std::map<std::string, std::string>& tags);

  std::unique_ptr<metadata::v1::MetadataService::Stub> metadata_;
  std::unique_ptr<metadata::v1::LineageService::Stub> lineage_;
  artifact::ArtifactClient artifacts_;
  Endpoints endpoints_;
  std::ostream& log_;
};

}  // namespace mlops::cli
