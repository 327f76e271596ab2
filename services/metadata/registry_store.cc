#include "services/metadata/registry_store.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/names.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::metadata {
namespace {

constexpr char kRequestIdsCf[] = "request_ids";
constexpr size_t kMaxDescriptionBytes = 64 << 10;
constexpr int kMaxTags = 1000;

// A model's name carries its project (docs/api.md, "Projects"); the key is the name as written,
// so only the canonical spelling is accepted.
absl::Status ValidateModelName(std::string_view name) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped("name", name));
  if (scoped.project == kDefaultProject && scoped.name != name) {
    return absl::InvalidArgumentError(StrCat("name: \"", name.substr(0, 200),
                                             "\": a name in project default has no prefix (\"",
                                             scoped.name.substr(0, 200), "\")"));
  }
  return ValidateName(NameKind::kIdentifier, "name", scoped.name);
}

absl::Status ValidateAlias(std::string_view alias) {
  return ValidateName(NameKind::kAlias, "alias", alias);
}

template <typename TagMap>
absl::Status ValidateTags(const TagMap& tags) {
  if (tags.size() > static_cast<size_t>(kMaxTags)) {
    return absl::InvalidArgumentError("tags: more than 1000");
  }
  for (const auto& [k, v] : tags) {
    if (k.empty() || k.size() > 250)
      return absl::InvalidArgumentError("tags: keys are 1 to 250 bytes");
    if (v.size() > 8000) return absl::InvalidArgumentError(StrCat("tags.", k, ": over 8000 bytes"));
  }
  return absl::OkStatus();
}

std::string NamePrefix(std::string_view name) {
  std::string out;
  AppendOrderedString(&out, name);
  return out;
}

std::string VersionKey(std::string_view name, int64_t version) {
  std::string out = NamePrefix(name);
  AppendBigEndian64(&out, static_cast<uint64_t>(version));
  return out;
}

std::string HistoryPrefix(std::string_view name, std::string_view alias) {
  std::string out = NamePrefix(name);
  AppendOrderedString(&out, alias);
  return out;
}

std::string HistoryKey(std::string_view name, std::string_view alias, int64_t sequence) {
  std::string out = HistoryPrefix(name, alias);
  AppendBigEndian64(&out, ~static_cast<uint64_t>(sequence));
  return out;
}

int64_t NextTime(int64_t previous) { return std::max(NowMs(), previous + 1); }

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

RegistryStore::RegistryStore(Db* db)
    : db_(db),
      models_(db->Cf(kModelsCf)),
      versions_(db->Cf(kModelVersionsCf)),
      history_(db->Cf(kAliasHistoryCf)),
      request_ids_(db->Cf(kRequestIdsCf)) {}

std::mutex& RegistryStore::ModelLock(std::string_view name) {
  return locks_[std::hash<std::string_view>()(name) % locks_.size()];
}

absl::StatusOr<v1::RegisteredModel> RegistryStore::LoadModel(std::string_view name) const {
  RETURN_IF_ERROR(ValidateModelName(name));
  ASSIGN_OR_RETURN(auto model, db_->GetProto<v1::RegisteredModel>(models_, name));
  if (!model) return absl::NotFoundError(StrCat("registered model ", name, " not found"));
  return *std::move(model);
}

absl::StatusOr<v1::ModelVersion> RegistryStore::LoadVersion(const v1::RegisteredModel& model,
                                                            int64_t version) const {
  ASSIGN_OR_RETURN(auto value,
                   db_->GetProto<v1::ModelVersion>(versions_, VersionKey(model.name(), version)));
  if (!value) {
    return absl::NotFoundError(
        StrCat("model ", model.name(), " has no version ", std::to_string(version)));
  }
  v1::ModelVersion out = *std::move(value);
  for (const auto& [alias, v] : model.aliases()) {
    if (v == version) out.add_aliases(alias);
  }
  std::sort(out.mutable_aliases()->begin(), out.mutable_aliases()->end());
  return out;
}

absl::StatusOr<v1::RegisteredModel> RegistryStore::CreateRegisteredModel(
    const v1::CreateRegisteredModelRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.name()));
  if (request.description().size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError("description: longer than 65536 bytes");
  }
  RETURN_IF_ERROR(ValidateTags(request.tags()));
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(auto existing, db_->Get(models_, request.name()));
  if (existing) {
    return absl::AlreadyExistsError(StrCat("registered model ", request.name(), " exists"));
  }
  v1::RegisteredModel model;
  model.set_name(request.name());
  model.set_description(request.description());
  *model.mutable_tags() = request.tags();
  model.set_create_time_ms(NowMs());
  model.set_update_time_ms(model.create_time_ms());
  rocksdb::WriteBatch batch;
  batch.Put(models_, model.name(), model.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return model;
}

absl::StatusOr<v1::RegisteredModel> RegistryStore::GetRegisteredModel(std::string_view name) const {
  return LoadModel(name);
}

absl::StatusOr<v1::ListRegisteredModelsResponse> RegistryStore::ListRegisteredModels(
    const v1::ListRegisteredModelsRequest& request) const {
  ASSIGN_OR_RETURN(Pager pager,
                   Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000,
                                request.page_token(), Fingerprint({"models", request.project()})));
  // Empty: project default; "*": every project.
  const std::string_view project =
      request.project().empty() ? kDefaultProject : std::string_view(request.project());
  if (project != kEveryProject) RETURN_IF_ERROR(ValidateProject(project));
  v1::ListRegisteredModelsResponse response;
  RETURN_IF_ERROR(db_->ScanProto<v1::RegisteredModel>(
      models_, "", pager.after(), [&](std::string_view key, v1::RegisteredModel& model) {
        if (project != kEveryProject && ProjectOf(model.name()) != project) {
          pager.Pass(key);
          return true;
        }
        if (!pager.Take(key)) return false;
        *response.add_models() = std::move(model);
        return true;
      }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::RegisteredModel> RegistryStore::UpdateRegisteredModel(
    const v1::UpdateRegisteredModelRequest& request) {
  if (request.description().size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError("description: longer than 65536 bytes");
  }
  RETURN_IF_ERROR(ValidateTags(request.tags()));
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  if (request.expected_update_time_ms() != 0 &&
      request.expected_update_time_ms() != model.update_time_ms()) {
    return absl::AbortedError(StrCat("registered model ", request.name(), " was updated at ",
                                     FormatRfc3339(model.update_time_ms()), " (update_time_ms ",
                                     std::to_string(model.update_time_ms()),
                                     "); read it again and retry"));
  }
  model.set_description(request.description());
  *model.mutable_tags() = request.tags();
  model.set_update_time_ms(NextTime(model.update_time_ms()));
  rocksdb::WriteBatch batch;
  batch.Put(models_, model.name(), model.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return model;
}

absl::StatusOr<v1::ModelVersion> RegistryStore::CreateModelVersion(
    const v1::CreateModelVersionRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.name()));
  if (!request.artifact_digest().empty() && !IsSha256Hex(request.artifact_digest())) {
    return absl::InvalidArgumentError(
        StrCat("artifact_digest \"", std::string_view(request.artifact_digest()).substr(0, 100),
               "\": 64 lower-case hex characters (SHA-256)"));
  }
  if (request.artifact_digest().empty() && request.artifact_id() == 0) {
    return absl::InvalidArgumentError("artifact_digest or artifact_id: required");
  }
  if (request.artifact_id() < 0) return absl::InvalidArgumentError("artifact_id: negative");
  if (request.description().size() > kMaxDescriptionBytes) {
    return absl::InvalidArgumentError("description: longer than 65536 bytes");
  }
  if (request.source_run_id().size() > 300 || request.request_id().size() > 128) {
    return absl::InvalidArgumentError("source_run_id or request_id: too long");
  }
  if (!v1::ModelVersion::Status_IsValid(request.status())) {
    return absl::InvalidArgumentError("status: unknown");
  }
  RETURN_IF_ERROR(ValidateTags(request.tags()));
  RETURN_IF_ERROR(ValidateTags(request.metadata()));
  std::lock_guard lock(ModelLock(request.name()));
  std::string request_key;
  if (!request.request_id().empty()) {
    request_key =
        StrCat("model_version:", request.name(), std::string(1, '\0'), request.request_id());
    ASSIGN_OR_RETURN(auto previous, db_->Get(request_ids_, request_key));
    if (previous) {
      ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
      return LoadVersion(model, static_cast<int64_t>(ReadBigEndian64(*previous)));
    }
  }
  int64_t now = NowMs();
  v1::RegisteredModel model;
  auto loaded = LoadModel(request.name());
  if (loaded.ok()) {
    model = std::move(*loaded);
  } else if (absl::IsNotFound(loaded.status()) && request.create_model()) {
    model.set_name(request.name());
    model.set_create_time_ms(now);
  } else {
    return loaded.status();
  }
  v1::ModelVersion version;
  version.set_name(request.name());
  version.set_version(model.latest_version() + 1);
  version.set_source_run_id(request.source_run_id());
  version.set_artifact_digest(request.artifact_digest());
  version.set_artifact_id(request.artifact_id());
  *version.mutable_signature() = request.signature();
  *version.mutable_metadata() = request.metadata();
  *version.mutable_tags() = request.tags();
  version.set_description(request.description());
  version.set_status(request.status() == v1::ModelVersion::STATUS_UNSPECIFIED
                         ? v1::ModelVersion::READY
                         : request.status());
  version.set_create_time_ms(now);
  version.set_update_time_ms(now);
  model.set_latest_version(version.version());
  model.set_update_time_ms(NextTime(model.update_time_ms()));
  rocksdb::WriteBatch batch;
  batch.Put(versions_, VersionKey(request.name(), version.version()), version.SerializeAsString());
  batch.Put(models_, model.name(), model.SerializeAsString());
  if (!request_key.empty()) {
    std::string encoded;
    AppendBigEndian64(&encoded, static_cast<uint64_t>(version.version()));
    batch.Put(request_ids_, request_key, encoded);
  }
  RETURN_IF_ERROR(db_->Write(&batch));
  return version;
}

absl::StatusOr<v1::ModelVersion> RegistryStore::GetModelVersion(
    const v1::GetModelVersionRequest& request) const {
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  int64_t version = request.version();
  if (version == 0) {
    if (request.alias().empty()) return absl::InvalidArgumentError("version or alias: required");
    auto it = model.aliases().find(request.alias());
    if (it == model.aliases().end()) {
      return absl::NotFoundError(
          StrCat("model ", request.name(), " has no alias ", request.alias()));
    }
    version = it->second;
  }
  return LoadVersion(model, version);
}

absl::StatusOr<v1::ListModelVersionsResponse> RegistryStore::ListModelVersions(
    const v1::ListModelVersionsRequest& request) const {
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  const std::string prefix = NamePrefix(request.name());
  // Newest first: a page resumes strictly before the last version of the previous one.
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000, request.page_token(),
                   Fingerprint({"model_versions", request.name()}), prefix));
  v1::ListModelVersionsResponse response;
  RETURN_IF_ERROR(db_->ScanProtoReverse<v1::ModelVersion>(
      versions_, prefix, pager.after(), [&](std::string_view key, v1::ModelVersion& stored) {
        if (!pager.Take(key)) return false;
        v1::ModelVersion* version = response.add_versions();
        *version = std::move(stored);
        for (const auto& [alias, n] : model.aliases()) {
          if (n == version->version()) version->add_aliases(alias);
        }
        std::sort(version->mutable_aliases()->begin(), version->mutable_aliases()->end());
        return true;
      }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::ModelVersion> RegistryStore::UpdateModelVersion(
    const v1::UpdateModelVersionRequest& request) {
  if (!v1::ModelVersion::Status_IsValid(request.status())) {
    return absl::InvalidArgumentError("status: unknown");
  }
  RETURN_IF_ERROR(ValidateTags(request.tags()));
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  ASSIGN_OR_RETURN(v1::ModelVersion version, LoadVersion(model, request.version()));
  if (request.expected_update_time_ms() != 0 &&
      request.expected_update_time_ms() != version.update_time_ms()) {
    return absl::AbortedError(
        StrCat("model ", request.name(), " version ", std::to_string(request.version()),
               " was updated at ", FormatRfc3339(version.update_time_ms()), " (update_time_ms ",
               std::to_string(version.update_time_ms()), "); read it again and retry"));
  }
  if (request.status() != v1::ModelVersion::STATUS_UNSPECIFIED) {
    version.set_status(request.status());
  }
  if (!request.description().empty()) version.set_description(request.description());
  for (const auto& [k, v] : request.tags()) {
    if (v.empty()) {
      version.mutable_tags()->erase(k);
    } else {
      (*version.mutable_tags())[k] = v;
    }
  }
  version.set_update_time_ms(NextTime(version.update_time_ms()));
  v1::ModelVersion stored = version;
  stored.clear_aliases();
  rocksdb::WriteBatch batch;
  batch.Put(versions_, VersionKey(request.name(), request.version()), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return version;
}

absl::Status RegistryStore::DeleteModelVersion(std::string_view name, int64_t version) {
  std::lock_guard lock(ModelLock(name));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(name));
  RETURN_IF_ERROR(LoadVersion(model, version).status());
  for (const auto& [alias, v] : model.aliases()) {
    if (v == version) {
      return absl::FailedPreconditionError(StrCat("alias ", alias, " points at version ",
                                                  std::to_string(version), " of ", name,
                                                  "; move or delete the alias first"));
    }
  }
  rocksdb::WriteBatch batch;
  batch.Delete(versions_, VersionKey(name, version));
  return db_->Write(&batch);
}

absl::StatusOr<v1::AliasMove> RegistryStore::RecordMove(
    v1::RegisteredModel& model, const std::string& alias, int64_t to_version,
    const std::string& actor, const std::string& reason, rocksdb::WriteBatch* batch,
    bool overridden) {
  v1::AliasMove move;
  move.set_overridden(overridden);
  move.set_name(model.name());
  move.set_alias(alias);
  auto it = model.aliases().find(alias);
  move.set_from_version(it == model.aliases().end() ? 0 : it->second);
  move.set_to_version(to_version);
  move.set_actor(actor.empty() ? "unknown" : actor);
  move.set_reason(reason);
  int64_t last_sequence = 0;
  int64_t last_time = 0;
  RETURN_IF_ERROR(db_->ScanProto<v1::AliasMove>(history_, HistoryPrefix(model.name(), alias), {},
                                                [&](std::string_view, v1::AliasMove& previous) {
                                                  last_sequence = previous.sequence();
                                                  last_time = previous.time_ms();
                                                  return false;
                                                }));
  move.set_sequence(last_sequence + 1);
  // Strictly increasing times per alias, so "where did it point at time T" has one answer.
  move.set_time_ms(NextTime(last_time));
  if (to_version == 0) {
    model.mutable_aliases()->erase(alias);
  } else {
    (*model.mutable_aliases())[alias] = to_version;
  }
  model.set_update_time_ms(NextTime(model.update_time_ms()));
  batch->Put(history_, HistoryKey(model.name(), alias, move.sequence()), move.SerializeAsString());
  batch->Put(models_, model.name(), model.SerializeAsString());
  return move;
}

absl::StatusOr<v1::AliasMove> RegistryStore::SetAlias(const v1::SetAliasRequest& request) {
  RETURN_IF_ERROR(ValidateAlias(request.alias()));
  if (request.actor().size() > 256 || request.reason().size() > 4096) {
    return absl::InvalidArgumentError("actor or reason: too long");
  }
  if (request.override() && request.reason().empty()) {
    return absl::InvalidArgumentError("override: say why (reason), for the alias history");
  }
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  ASSIGN_OR_RETURN(v1::ModelVersion version, LoadVersion(model, request.version()));
  // The promotion gate: an alias that requires a blessing moves only to a blessed version.
  bool overridden = false;
  if (auto policy = model.alias_policies().find(request.alias());
      policy != model.alias_policies().end() && policy->second.require_blessing() &&
      !version.blessing().blessed()) {
    if (!request.override()) {
      std::string why;
      if (!version.has_blessing()) {
        why = "it has no blessing (evaluate it with a policy: mlops models evaluate ... --policy)";
      } else {
        why = "its evaluation " + version.blessing().evaluation_id() + " failed";
        for (const std::string& rule : version.blessing().failed()) why += "; " + rule;
      }
      return absl::FailedPreconditionError(
          StrCat("alias ", request.alias(), " of ", request.name(),
                 " requires a blessed version, and version ", std::to_string(request.version()),
                 " is not blessed: ", why, " (override it with a reason to move it anyway)"));
    }
    overridden = true;
  }
  auto it = model.aliases().find(request.alias());
  int64_t current = it == model.aliases().end() ? -1 : it->second;
  if (request.expected_version() != 0 && request.expected_version() != current) {
    return absl::AbortedError(
        StrCat("alias ", request.alias(), " of ", request.name(), " points at ",
               current == -1 ? std::string("nothing") : "version " + std::to_string(current),
               ", not at expected_version ", std::to_string(request.expected_version())));
  }
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(v1::AliasMove move,
                   RecordMove(model, request.alias(), request.version(), request.actor(),
                              request.reason(), &batch, overridden));
  RETURN_IF_ERROR(db_->Write(&batch));
  NoteMove();
  return move;
}

void RegistryStore::NoteMove() {
  {
    std::lock_guard lock(moves_mu_);
    ++moves_;
  }
  moved_.notify_all();
}

uint64_t RegistryStore::moves() const {
  std::lock_guard lock(moves_mu_);
  return moves_;
}

uint64_t RegistryStore::WaitForMove(uint64_t seen, int64_t timeout_ms) const {
  std::unique_lock lock(moves_mu_);
  moved_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                  [&] { return moves_ != seen || stopping_; });
  return moves_;
}

void RegistryStore::StopWatches() {
  {
    std::lock_guard lock(moves_mu_);
    stopping_ = true;
  }
  moved_.notify_all();
}

bool RegistryStore::stopping() const {
  std::lock_guard lock(moves_mu_);
  return stopping_;
}

absl::StatusOr<std::vector<v1::AliasUpdate>> RegistryStore::MovesAfter(
    std::string_view name, std::string_view alias, int64_t after_sequence) const {
  RETURN_IF_ERROR(ValidateAlias(alias));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(name));
  std::vector<v1::AliasUpdate> updates;
  int64_t latest = 0;
  // History keys run newest first: scan until the move after `after_sequence`.
  RETURN_IF_ERROR(db_->ScanProto<v1::AliasMove>(history_, HistoryPrefix(model.name(), alias), {},
                                                [&](std::string_view, v1::AliasMove& move) {
                                                  latest = std::max(latest, move.sequence());
                                                  if (move.sequence() <= after_sequence)
                                                    return false;
                                                  v1::AliasUpdate update;
                                                  *update.mutable_move() = std::move(move);
                                                  updates.push_back(std::move(update));
                                                  return true;
                                                }));
  if (after_sequence > latest) {
    return absl::OutOfRangeError(StrCat("alias ", alias, " of ", model.name(), " has had ",
                                        std::to_string(latest), " moves, not ",
                                        std::to_string(after_sequence)));
  }
  std::reverse(updates.begin(), updates.end());
  for (v1::AliasUpdate& update : updates) {
    if (update.move().to_version() == 0) continue;
    auto version = LoadVersion(model, update.move().to_version());
    if (version.ok()) {
      *update.mutable_version() = *std::move(version);
    } else if (!absl::IsNotFound(version.status())) {
      return version.status();
    }
  }
  return updates;
}

absl::StatusOr<v1::ModelVersion> RegistryStore::SetBlessing(const v1::SetBlessingRequest& request) {
  const v1::Blessing& blessing = request.blessing();
  if (blessing.blessed() && blessing.failed_size() > 0) {
    return absl::InvalidArgumentError("blessing: blessed, yet with failed rules");
  }
  if (blessing.ByteSizeLong() > 64 * 1024) {
    return absl::InvalidArgumentError("blessing: at most 64 KiB");
  }
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  ASSIGN_OR_RETURN(v1::ModelVersion version, LoadVersion(model, request.version()));
  *version.mutable_blessing() = blessing;
  version.mutable_blessing()->set_time_ms(NowMs());
  version.set_update_time_ms(NextTime(version.update_time_ms()));
  v1::ModelVersion stored = version;
  stored.clear_aliases();  // derived from the model's aliases when read
  rocksdb::WriteBatch batch;
  batch.Put(versions_, VersionKey(request.name(), request.version()), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return version;
}

absl::StatusOr<v1::RegisteredModel> RegistryStore::SetAliasPolicy(
    const v1::SetAliasPolicyRequest& request) {
  RETURN_IF_ERROR(ValidateAlias(request.alias()));
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  if (request.policy().require_blessing()) {
    (*model.mutable_alias_policies())[request.alias()] = request.policy();
  } else {
    model.mutable_alias_policies()->erase(request.alias());
  }
  model.set_update_time_ms(NextTime(model.update_time_ms()));
  rocksdb::WriteBatch batch;
  batch.Put(models_, model.name(), model.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  return model;
}

absl::StatusOr<v1::AliasMove> RegistryStore::DeleteAlias(const v1::DeleteAliasRequest& request) {
  RETURN_IF_ERROR(ValidateAlias(request.alias()));
  std::lock_guard lock(ModelLock(request.name()));
  ASSIGN_OR_RETURN(v1::RegisteredModel model, LoadModel(request.name()));
  if (!model.aliases().contains(request.alias())) {
    return absl::NotFoundError(StrCat("model ", request.name(), " has no alias ", request.alias()));
  }
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(v1::AliasMove move, RecordMove(model, request.alias(), 0, request.actor(),
                                                  request.reason(), &batch));
  RETURN_IF_ERROR(db_->Write(&batch));
  NoteMove();
  return move;
}

absl::StatusOr<v1::GetAliasHistoryResponse> RegistryStore::GetAliasHistory(
    const v1::GetAliasHistoryRequest& request) const {
  RETURN_IF_ERROR(ValidateAlias(request.alias()));
  RETURN_IF_ERROR(LoadModel(request.name()).status());
  const std::string prefix = HistoryPrefix(request.name(), request.alias());
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000, request.page_token(),
                   Fingerprint({"alias_history", request.name(), request.alias()}), prefix));
  v1::GetAliasHistoryResponse response;
  if (request.at_time_ms() != 0) {
    // The newest move at or before the time; the alias did not exist if it was a deletion.
    RETURN_IF_ERROR(db_->ScanProto<v1::AliasMove>(history_, prefix, {},
                                                  [&](std::string_view, v1::AliasMove& move) {
                                                    if (move.time_ms() > request.at_time_ms())
                                                      return true;
                                                    if (move.to_version() != 0)
                                                      *response.add_moves() = std::move(move);
                                                    return false;
                                                  }));
    if (response.moves_size() == 0) {
      return absl::NotFoundError(StrCat("alias ", request.alias(), " of ", request.name(),
                                        " pointed at nothing at ",
                                        FormatRfc3339(request.at_time_ms())));
    }
    return response;
  }
  RETURN_IF_ERROR(db_->ScanProto<v1::AliasMove>(history_, prefix, pager.after(),
                                                [&](std::string_view key, v1::AliasMove& move) {
                                                  if (!pager.Take(key)) return false;
                                                  *response.add_moves() = std::move(move);
                                                  return true;
                                                }));
  if (response.moves_size() == 0 && pager.first_page()) {
    return absl::NotFoundError(
        StrCat("model ", request.name(), " has no history for alias ", request.alias()));
  }
  response.set_next_page_token(pager.NextToken());
  return response;
}

}  // namespace mlops::metadata
