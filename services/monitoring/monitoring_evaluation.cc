// MonitoringStore: model analysis (evaluations of model versions on datasets, and their lineage).
#include <algorithm>
#include <optional>

#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/monitoring/evaluation.h"
#include "services/monitoring/monitoring_store.h"
#include "services/monitoring/monitoring_store_internal.h"
#include "services/monitoring/policy.h"

namespace mlops::monitoring {
namespace {

// model + \0 + version (8 bytes BE): the prefix of a version's evaluations.
std::string VersionPrefix(const std::string& model, int64_t version) {
  std::string key = model + '\0';
  AppendBigEndian64(&key, static_cast<uint64_t>(version));
  return key;
}

}  // namespace

absl::StatusOr<v1::Evaluation> MonitoringStore::EvaluateModel(
    const v1::EvaluateModelRequest& request) {
  ASSIGN_OR_RETURN(const std::string model, StoredName("model", request.model()));
  const std::string project(ProjectOf(model));
  if (request.dataset().empty()) {
    return absl::InvalidArgumentError("dataset: the dataset version to evaluate on, NAME@REF");
  }
  RETURN_IF_ERROR(InProject("dataset", request.dataset(), "the model", project));
  std::vector<Rule> rules;
  for (const std::string& text : request.policy()) {
    ASSIGN_OR_RETURN(Rule rule, ParseRule(text));
    rules.push_back(std::move(rule));
  }
  if (!request.champion().empty()) {
    RETURN_IF_ERROR(ValidateName(NameKind::kAlias, "champion", request.champion()));
  }
  if (models_ == nullptr) return absl::FailedPreconditionError("no model registry configured");
  if (datasets_ == nullptr) return absl::FailedPreconditionError("no artifact service configured");
  auto version = models_->Describe(model, request.version());
  if (absl::IsNotFound(version.status())) {
    return absl::NotFoundError("model: " + std::string(version.status().message()));
  }
  if (!version.ok()) return version.status();
  ASSIGN_OR_RETURN(DatasetSource::Dataset dataset,
                   datasets_->Read(CanonicalName(request.dataset())));
  std::vector<const Table*> tables;
  for (const auto& table : dataset.tables) tables.push_back(table.get());
  auto evaluate = [&](const v1::EvaluateModelRequest& asked,
                      int64_t model_version) -> absl::StatusOr<v1::Evaluation> {
    auto evaluated = EvaluatePredictions(tables, asked);
    if (!evaluated.ok()) {
      return absl::Status(evaluated.status().code(),
                          StrCat("dataset ", dataset.resolved, ": ", evaluated.status().message()));
    }
    evaluated->set_id(Qualify(project, NewId()));
    evaluated->set_model(model);
    evaluated->set_model_version(model_version);
    evaluated->set_dataset(dataset.resolved);
    evaluated->set_time_ms(NowMs());
    return evaluated;
  };
  // Stored, and recorded in lineage (a failure to record is logged and counted).
  auto keep = [&](v1::Evaluation& evaluation, int64_t model_artifact_id) -> absl::Status {
    bool lineage_failed = false;
    if (lineage_ != nullptr) {
      auto artifact = lineage_->RecordEvaluation(evaluation, model_artifact_id);
      if (artifact.ok()) {
        evaluation.set_lineage_artifact_id(*artifact);
      } else {
        lineage_failed = true;
        LogWarning("evaluation_lineage_failed",
                   {{"evaluation", evaluation.id()}, {"error", artifact.status().ToString()}});
      }
    }
    std::string key = VersionPrefix(model, evaluation.model_version());
    AppendBigEndian64(&key, static_cast<uint64_t>(evaluation.time_ms()));
    key += InProjectId(evaluation.id());
    rocksdb::WriteBatch batch;
    batch.Put(evaluations_cf_, key, evaluation.SerializeAsString());
    batch.Put(evaluation_ids_cf_, evaluation.id(), key);
    RETURN_IF_ERROR(db_->WriteSync(&batch));
    metrics_.CountEvaluation(lineage_failed);
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(v1::Evaluation evaluation, evaluate(request, version->version));

  if (!rules.empty()) {
    // The champion: the version its alias names now, evaluated on the same dataset version.
    const std::string alias = request.champion().empty() ? "production" : request.champion();
    auto champion_ref = models_->Describe(model, alias);
    if (!champion_ref.ok() && !absl::IsNotFound(champion_ref.status())) {
      return champion_ref.status();
    }
    const int64_t champion_version = champion_ref.ok() ? champion_ref->version : 0;
    std::optional<v1::Evaluation> champion;
    if (champion_version > 0 && !request.champion_prediction_column().empty()) {
      v1::EvaluateModelRequest theirs = request;
      theirs.set_prediction_column(request.champion_prediction_column());
      theirs.set_score_column(request.champion_score_column());
      theirs.clear_policy();
      theirs.clear_champion_prediction_column();
      theirs.clear_champion_score_column();
      theirs.set_version(std::to_string(champion_version));
      ASSIGN_OR_RETURN(champion, evaluate(theirs, champion_version));
      RETURN_IF_ERROR(keep(*champion, champion_ref->artifact_id));
    } else if (champion_version > 0) {
      RETURN_IF_ERROR(db_->ScanProto<v1::Evaluation>(evaluations_cf_,
                                                     VersionPrefix(model, champion_version), {},
                                                     [&](std::string_view, v1::Evaluation& stored) {
                                                       if (stored.dataset() == dataset.resolved)
                                                         champion = std::move(stored);
                                                       return true;  // the last one is the newest
                                                     }));
    }
    *evaluation.mutable_verdict() =
        Judge(rules, evaluation, champion.has_value() ? &*champion : nullptr, champion_version);
    if (champion.has_value()) *evaluation.mutable_champion() = champion->overall();
  }
  RETURN_IF_ERROR(keep(evaluation, version->artifact_id));
  if (!rules.empty()) {
    // The verdict becomes the version's blessing, which the registry's alias policies consult.
    absl::Status blessed = models_->RecordBlessing(model, version->version, evaluation);
    if (!blessed.ok()) {
      return absl::Status(blessed.code(),
                          StrCat("evaluation ", evaluation.id(),
                                 " is stored, but its blessing could not be recorded in the "
                                 "registry (evaluate again): ",
                                 blessed.message()));
    }
  }
  return evaluation;
}

absl::StatusOr<v1::Evaluation> MonitoringStore::GetEvaluation(const std::string& requested) const {
  const std::string id = CanonicalName(requested);
  ASSIGN_OR_RETURN(auto key, db_->Get(evaluation_ids_cf_, id));
  if (!key.has_value()) return absl::NotFoundError("evaluation " + id + " not found");
  ASSIGN_OR_RETURN(auto evaluation, db_->GetProto<v1::Evaluation>(evaluations_cf_, *key));
  if (!evaluation.has_value()) {
    return absl::DataLossError("evaluation " + id + " is indexed but not stored");
  }
  return *std::move(evaluation);
}

absl::StatusOr<std::vector<v1::Evaluation>> MonitoringStore::ListEvaluations(
    const std::string& requested, int64_t version, int limit) const {
  ASSIGN_OR_RETURN(const std::string model, StoredName("model", requested));
  if (version < 0) return absl::InvalidArgumentError("version: 0 (every one) or a version");
  if (limit <= 0) limit = 20;
  const std::string prefix = version > 0 ? VersionPrefix(model, version) : model + '\0';
  std::vector<v1::Evaluation> evaluations;
  RETURN_IF_ERROR(db_->ScanProto<v1::Evaluation>(evaluations_cf_, prefix, {},
                                                 [&](std::string_view, v1::Evaluation& evaluation) {
                                                   evaluation.clear_slices();
                                                   evaluations.push_back(std::move(evaluation));
                                                   return true;
                                                 }));
  // Newest first: keys run by version, then time, then id (ids grow with time), so the reversed
  // scan is newest first within a version, and a stable sort by time keeps that on ties.
  std::reverse(evaluations.begin(), evaluations.end());
  std::stable_sort(evaluations.begin(), evaluations.end(),
                   [](const auto& a, const auto& b) { return a.time_ms() > b.time_ms(); });
  if (evaluations.size() > static_cast<size_t>(limit)) evaluations.resize(limit);
  return evaluations;
}

}  // namespace mlops::monitoring
