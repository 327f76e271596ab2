// MonitoringStore: data validation (schemas, validations and their lineage).
#include <chrono>

#include "services/common/digest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/monitoring/monitoring_store.h"
#include "services/monitoring/monitoring_store_internal.h"
#include "services/monitoring/validation.h"

namespace mlops::monitoring {
namespace {

// The dataset name of `ref` (NAME@REF), stored as names are.
absl::StatusOr<std::string> DatasetName(std::string_view field, std::string_view ref) {
  if (ref.empty()) return absl::InvalidArgumentError(StrCat(field, ": a dataset, NAME@REF"));
  return StoredName(field, ref.substr(0, ref.find('@')));
}

std::vector<const Table*> Views(const std::vector<std::unique_ptr<Table>>& tables) {
  std::vector<const Table*> views;
  for (const auto& table : tables) views.push_back(table.get());
  return views;
}

}  // namespace

absl::StatusOr<v1::Schema> MonitoringStore::InferSchema(const v1::InferSchemaRequest& request) {
  ASSIGN_OR_RETURN(const std::string name, DatasetName("dataset", request.dataset()));
  if (datasets_ == nullptr) return absl::FailedPreconditionError("no artifact service configured");
  ASSIGN_OR_RETURN(DatasetSource::Dataset dataset,
                   datasets_->Read(CanonicalName(request.dataset())));
  InferOptions options;
  options.categorical.assign(request.categorical().begin(), request.categorical().end());
  options.max_categories = request.max_categories();
  ASSIGN_OR_RETURN(v1::Schema schema, monitoring::InferSchema(Views(dataset.tables), options));
  schema.set_name(name);
  schema.set_source("inferred from " + dataset.resolved);
  if (request.save()) return PutSchema(std::move(schema));
  return schema;
}

absl::StatusOr<v1::Schema> MonitoringStore::PutSchema(v1::Schema schema) {
  ASSIGN_OR_RETURN(const std::string name, StoredName("name", schema.name()));
  RETURN_IF_ERROR(CheckSchema(schema));
  schema.set_name(name);
  std::lock_guard lock(mu_);
  auto latest = GetSchema(name, 0);
  if (!latest.ok() && !absl::IsNotFound(latest.status())) return latest.status();
  schema.set_version(latest.ok() ? latest->version() + 1 : 1);
  schema.set_create_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(schemas_cf_, VersionKey(name, schema.version()), schema.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return schema;
}

absl::StatusOr<v1::Schema> MonitoringStore::GetSchema(const std::string& requested,
                                                      int64_t version) const {
  const std::string name = CanonicalName(requested);
  std::optional<v1::Schema> schema;
  if (version > 0) {
    ASSIGN_OR_RETURN(schema, db_->GetProto<v1::Schema>(schemas_cf_, VersionKey(name, version)));
  } else {
    RETURN_IF_ERROR(db_->ScanProtoReverse<v1::Schema>(schemas_cf_, name + '\0', {},
                                                      [&](std::string_view, v1::Schema& stored) {
                                                        schema = std::move(stored);
                                                        return false;
                                                      }));
  }
  if (!schema.has_value()) {
    return absl::NotFoundError(
        version > 0 ? StrCat("schema of ", name, " version ", std::to_string(version), " not found")
                    : StrCat("dataset ", name, " has no schema: infer one (mlops schema infer ",
                             name, "@REF --save) or put one"));
  }
  return *std::move(schema);
}

absl::StatusOr<v1::ValidationReport> MonitoringStore::Validate(const v1::ValidateRequest& request) {
  const bool blob = !request.blob().empty();
  std::string dataset_name;  // the name the report is kept under
  std::string project;
  if (blob) {
    if (!request.dataset().empty()) {
      return absl::InvalidArgumentError("a dataset or a blob, not both");
    }
    if (request.schema().empty()) {
      return absl::InvalidArgumentError(
          "schema: a blob is validated against a named schema (its reports are kept under it)");
    }
    if (!request.project().empty()) RETURN_IF_ERROR(ValidateProject(request.project()));
    project = request.project().empty() ? std::string(kDefaultProject) : request.project();
    if (RawDigest raw; !ParseDigestHex(request.blob(), &raw)) {
      return absl::InvalidArgumentError("blob: a digest (64 hex characters)");
    }
  } else {
    ASSIGN_OR_RETURN(dataset_name, DatasetName("dataset", request.dataset()));
    project = std::string(ProjectOf(dataset_name));
  }
  v1::Schema schema;
  if (request.has_inline_schema()) {
    schema = request.inline_schema();
    RETURN_IF_ERROR(CheckSchema(schema));
    schema.set_version(0);
  } else {
    std::string schema_name = dataset_name;
    if (!request.schema().empty()) {
      ASSIGN_OR_RETURN(schema_name, StoredName("schema", request.schema()));
    }
    if (blob) dataset_name = schema_name;
    RETURN_IF_ERROR(InProject("schema", schema_name, "the dataset", project));
    if (request.schema_version() < 0) {
      return absl::InvalidArgumentError("schema_version: 0 (the latest) or a version");
    }
    ASSIGN_OR_RETURN(schema, GetSchema(schema_name, request.schema_version()));
  }
  if (datasets_ == nullptr) return absl::FailedPreconditionError("no artifact service configured");
  if (blob && dataset_name.empty()) {
    // An inline schema and a blob: kept under the schema's own name.
    ASSIGN_OR_RETURN(dataset_name, StoredName("schema", request.schema()));
  }
  absl::StatusOr<DatasetSource::Dataset> read =
      blob ? datasets_->ReadBlob(project, request.blob(), request.blob_name())
           : datasets_->Read(CanonicalName(request.dataset()));
  if (!read.ok()) return read.status();
  DatasetSource::Dataset dataset = *std::move(read);

  v1::ValidationReport report;
  const auto start = std::chrono::steady_clock::now();
  uint64_t rows = 0;
  std::vector<v1::Anomaly> anomalies =
      ValidateTables(schema, Views(dataset.tables), dataset.files, &rows);
  report.set_duration_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count());
  const std::string id = NewId();
  report.set_id(Qualify(project, id));
  if (blob) {
    report.set_blob(request.blob());
  } else {
    report.set_dataset(dataset.resolved);
  }
  report.set_schema(request.has_inline_schema() ? "" : schema.name());
  report.set_schema_version(schema.version());
  report.set_rows(rows);
  report.set_valid(anomalies.empty());
  for (v1::Anomaly& a : anomalies) *report.add_anomalies() = std::move(a);
  report.set_time_ms(NowMs());

  bool lineage_failed = false;
  if (lineage_ != nullptr) {
    auto artifact = lineage_->RecordValidation(report);
    if (artifact.ok()) {
      report.set_lineage_artifact_id(*artifact);
    } else {
      lineage_failed = true;
      LogWarning("validation_lineage_failed",
                 {{"report", report.id()}, {"error", artifact.status().ToString()}});
    }
  }
  std::string key = dataset_name + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(report.time_ms()));
  key += id;
  rocksdb::WriteBatch batch;
  batch.Put(validations_cf_, key, report.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  metrics_.CountValidation(report, lineage_failed);
  return report;
}

absl::StatusOr<std::vector<v1::ValidationReport>> MonitoringStore::ListValidations(
    const std::string& dataset, int limit) const {
  ASSIGN_OR_RETURN(const std::string name, DatasetName("dataset", dataset));
  if (limit <= 0) limit = 20;
  std::vector<v1::ValidationReport> reports;
  RETURN_IF_ERROR(db_->ScanProtoReverse<v1::ValidationReport>(
      validations_cf_, name + '\0', {}, [&](std::string_view, v1::ValidationReport& report) {
        reports.push_back(std::move(report));
        return static_cast<int>(reports.size()) < limit;
      }));
  return reports;
}

}  // namespace mlops::monitoring
