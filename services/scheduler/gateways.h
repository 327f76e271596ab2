// The scheduler core's gateways to other services, as interfaces: where step inputs come from and
// outputs go (the artifact service), and how steps are recorded (the metadata service). Their gRPC
// clients (artifact_gateway.h, metadata_gateway.h) belong to the adapter library; tests and other
// executors may bring their own.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/scheduler/metrics_file.h"

namespace mlops::scheduler {

// Where step inputs come from and outputs go (the artifact service). Every call acts in
// `project`, the run's (docs/api.md, "Projects"): its datasets, the content it sees.
class ArtifactGateway {
 public:
  virtual ~ArtifactGateway() = default;
  // The version digest a dataset ref names now (pins the input for the fingerprint).
  virtual absl::StatusOr<std::string> ResolveDataset(const std::string& project,
                                                     const std::string& dataset,
                                                     const std::string& ref) = 0;
  // Writes the files of dataset@version under `dir`.
  virtual absl::Status MaterializeDataset(const std::string& project, const std::string& dataset,
                                          const std::string& version, const std::string& dir) = 0;
  // Writes blob `digest` to `path`.
  virtual absl::Status MaterializeBlob(const std::string& project, const std::string& digest,
                                       const std::string& path) = 0;
  // Stores a file; returns its digest.
  virtual absl::StatusOr<std::string> UploadFile(const std::string& project,
                                                 const std::string& path) = 0;
};

struct StepRecord {
  std::string project;  // the run's: the tracking run and the lineage are recorded there
  std::string pipeline;
  std::string pipeline_run;
  std::string step;
  int attempt = 1;
  std::vector<std::string> command;
  std::map<std::string, std::string> params;
  // Input name -> "dataset:NAME@VERSION" or a blob digest; output name -> blob digest.
  std::map<std::string, std::string> inputs;
  std::map<std::string, std::string> outputs;
  std::map<std::string, std::string> logs;  // "stdout" / "stderr" -> blob digest
  std::string image;     // the step's image as written ("" = the executor's default or none)
  std::string image_id;  // the image that ran, as the node resolved it (Kubernetes)
};

class MetadataGateway {
 public:
  virtual ~MetadataGateway() = default;
  // Creates the attempt's tracking run (RUNNING); returns its id.
  virtual absl::StatusOr<std::string> StartRun(const StepRecord& step) = 0;
  // Logs the points of the attempt's metrics.json to its tracking run (whose id says its project).
  virtual absl::Status LogMetrics(const std::string& run_id,
                                  const std::vector<MetricPoint>& points) = 0;
  // Ends the tracking run (FINISHED or FAILED) and, when it succeeded, records the lineage
  // execution with its inputs and outputs.
  virtual absl::Status FinishRun(const std::string& run_id, const StepRecord& step,
                                 bool succeeded) = 0;
};

// Where a built-in `validate:` step is carried out (the monitoring service's Validate): the
// scheduler runs no process for it.
class ValidationGateway {
 public:
  virtual ~ValidationGateway() = default;
  struct Request {
    std::string project;  // the run's
    // A dataset version, or a step's output (a blob and the name of its file).
    std::string dataset;
    std::string version;  // the version digest pinned for the run
    std::string blob;
    std::string file_name;
    std::string schema;  // the schema's dataset name ("" = the dataset's own)
    int64_t schema_version = 0;
  };
  struct Result {
    bool valid = false;
    std::string report_id;
    // The report for a person: what was validated against what, then one line per anomaly.
    std::string text;
    std::string summary;  // "3 anomalies: age: 2 values outside [0, 120] ..."
  };
  // The validation's verdict. A code when it could not be made: NOT_FOUND (no schema, no such
  // dataset), INVALID_ARGUMENT (a table that does not parse), UNAVAILABLE (the monitoring service
  // cannot be reached), FAILED_PRECONDITION (no monitoring service configured).
  virtual absl::StatusOr<Result> Validate(const Request& request) = 0;
};

}  // namespace mlops::scheduler
