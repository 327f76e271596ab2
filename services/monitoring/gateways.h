// The monitoring core's gateways to other services, as interfaces: where datasets are read from
// (the artifact service), what a model name or alias stands for (the model registry), and where
// retraining pipelines are submitted (the scheduler). Their gRPC clients (peer_gateways.h) belong
// to the adapter library; tests bring their own.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "services/common/status.h"
#include "services/monitoring/table.h"

namespace mlops::monitoring {

class DatasetSource {
 public:
  virtual ~DatasetSource() = default;
  struct Dataset {
    std::string resolved;  // NAME@DIGEST (the version the ref named when it was read)
    std::vector<std::unique_ptr<Table>> tables;  // its .csv and .mlcol files, by path
    std::vector<std::string> files;              // their paths in the dataset
  };
  // Reads dataset `ref` (NAME or NAME@REF; the name carries its project, `projects/P/NAME`, and
  // the dataset is read in that project). NOT_FOUND when there is no such dataset or version,
  // INVALID_ARGUMENT when it holds no table or a table does not parse, UNAVAILABLE when the
  // artifact service cannot be reached.
  virtual absl::StatusOr<Dataset> Read(const std::string& ref) = 0;
  // Reads one blob of `project` as the table of a file named `file_name` (.csv or .mlcol);
  // resolved is `blob:<digest>`. NOT_FOUND for no such blob, INVALID_ARGUMENT for another
  // extension or a table that does not parse, UNAVAILABLE as Read. A source that cannot read
  // blobs answers FAILED_PRECONDITION.
  virtual absl::StatusOr<Dataset> ReadBlob(const std::string& project, const std::string& digest,
                                           const std::string& file_name) {
    (void)project, (void)digest, (void)file_name;
    return absl::FailedPreconditionError("this dataset source reads no blobs");
  }
};

struct ModelVersionRef {
  int64_t version = 0;
  int64_t artifact_id = 0;  // the Model artifact in lineage (0: not known)
  std::string artifact_digest;
};

class ModelResolver {
 public:
  virtual ~ModelResolver() = default;
  // The version number `model` + `version` (a number, an alias, or "" for latest) stands for now.
  // NOT_FOUND when the model or the version/alias does not exist; other codes when the registry
  // could not answer.
  virtual absl::StatusOr<int64_t> Resolve(const std::string& model, const std::string& version) = 0;
  // Records the verdict of `evaluation` (which has one) as the blessing of model version
  // `version` in the registry. The default has no registry to record it in.
  virtual absl::Status RecordBlessing(const std::string& model, int64_t version,
                                      const v1::Evaluation& evaluation) {
    (void)model, (void)version, (void)evaluation;
    return absl::FailedPreconditionError("no model registry to record a blessing in");
  }
  // The same version with what lineage knows of it. The default knows only its number.
  virtual absl::StatusOr<ModelVersionRef> Describe(const std::string& model,
                                                   const std::string& version) {
    ASSIGN_OR_RETURN(int64_t number, Resolve(model, version));
    ModelVersionRef ref;
    ref.version = number;
    return ref;
  }
};

struct RetrainRequest {
  std::string project;  // the monitor's: the pipeline runs there
  std::string spec_yaml;
  std::map<std::string, std::string> params;
  std::string queue;
  std::string request_id;  // the alert's id in its project: submitting twice makes one run
};

class RetrainTrigger {
 public:
  virtual ~RetrainTrigger() = default;
  // Submits the retraining pipeline; returns the pipeline run id. UNAVAILABLE, DEADLINE_EXCEEDED,
  // RESOURCE_EXHAUSTED and ABORTED are retried by the caller; any other code is final.
  virtual absl::StatusOr<std::string> Submit(const RetrainRequest& request) = 0;
};

// Where validations are recorded in lineage (the metadata service's LineageService).
class LineageRecorder {
 public:
  virtual ~LineageRecorder() = default;
  // Records `report` as a Validate execution (external id `validation:<report id>`) with the
  // dataset version it read (the Dataset artifact `dataset:NAME@DIGEST`) as its input and a
  // Statistics artifact holding the verdict as its output, in the dataset's project. Returns the
  // Statistics artifact's id. Recording the same report twice records it once.
  virtual absl::StatusOr<int64_t> RecordValidation(const v1::ValidationReport& report) = 0;
  // Records `evaluation` as an Evaluate execution (external id `evaluation:<id>`) whose inputs are
  // the model version's Model artifact (`model_artifact_id`, when known) and the dataset version
  // it read, and whose output is a Metrics artifact with the headline figures, in the model's
  // project. Returns the Metrics artifact's id.
  virtual absl::StatusOr<int64_t> RecordEvaluation(const v1::Evaluation& evaluation,
                                                   int64_t model_artifact_id) = 0;
};

}  // namespace mlops::monitoring
