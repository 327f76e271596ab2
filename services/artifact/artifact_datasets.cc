// ArtifactStore: datasets, versions (create, resolve, list, entries, diff) and tags.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "services/artifact/artifact_store.h"
#include "services/artifact/artifact_store_internal.h"
#include "services/artifact/manifest.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {

// Datasets and versions

namespace {
// A dataset's name carries its project (docs/api.md, "Projects"); it is stored as written, so only
// the canonical spelling is accepted (no projects/default/).
absl::Status ValidateDatasetName(std::string_view field, std::string_view name) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped(field, name));
  if (scoped.project == kDefaultProject && scoped.name != name) {
    return absl::InvalidArgumentError(StrCat(field, " \"", name.substr(0, 200),
                                             "\": a dataset of project default has no prefix"));
  }
  return ValidateName(NameKind::kIdentifier, field, scoped.name);
}

v1::Dataset DatasetFromStored(std::string_view name, const internal::StoredDataset& stored) {
  v1::Dataset dataset;
  dataset.set_name(std::string(name));
  dataset.set_description(stored.description());
  dataset.set_create_time_ms(stored.create_time_ms());
  dataset.set_version_count(stored.version_count());
  return dataset;
}
}  // namespace

absl::StatusOr<v1::Dataset> ArtifactStore::CreateDataset(const v1::CreateDatasetRequest& request) {
  RETURN_IF_ERROR(ValidateDatasetName("name", request.name()));
  if (request.description().size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError("description: longer than 65536 bytes");
  }
  std::lock_guard lock(dataset_mu_);
  ASSIGN_OR_RETURN(auto existing, db_->Get(datasets_, request.name()));
  if (existing) {
    return absl::AlreadyExistsError(StrCat("dataset ", request.name(), " already exists"));
  }
  internal::StoredDataset stored;
  stored.set_description(request.description());
  stored.set_create_time_ms(NowMs());
  rocksdb::WriteBatch batch;
  batch.Put(datasets_, request.name(), stored.SerializeAsString());
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return DatasetFromStored(request.name(), stored);
}

absl::StatusOr<v1::Dataset> ArtifactStore::GetDataset(std::string_view name) {
  RETURN_IF_ERROR(ValidateDatasetName("name", name));
  ASSIGN_OR_RETURN(auto stored, db_->GetProto<internal::StoredDataset>(datasets_, name));
  if (!stored) return absl::NotFoundError(StrCat("dataset ", name, " not found"));
  v1::Dataset dataset = DatasetFromStored(name, *stored);
  ASSIGN_OR_RETURN(auto latest, db_->Get(tags_, TagKey(name, kLatestTag)));
  if (latest) dataset.set_latest_digest(DigestHex(DigestFromBytes(*latest)));
  return dataset;
}

absl::StatusOr<v1::ListDatasetsResponse> ArtifactStore::ListDatasets(
    const v1::ListDatasetsRequest& request) {
  ASSIGN_OR_RETURN(Pager pager, Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000,
                                             request.page_token(),
                                             Fingerprint({"datasets", request.project()})));
  // Empty: project default; "*": every project.
  const std::string_view project =
      request.project().empty() ? kDefaultProject : std::string_view(request.project());
  if (project != kEveryProject) RETURN_IF_ERROR(ValidateProject(project));
  v1::ListDatasetsResponse response;
  std::vector<std::string> names;
  RETURN_IF_ERROR(
      db_->ScanPrefix(datasets_, "", pager.after(), [&](std::string_view key, std::string_view) {
        if (project != kEveryProject && ProjectOf(key) != project) {
          pager.Pass(key);
          return true;
        }
        if (!pager.Take(key)) return false;
        names.emplace_back(key);
        return true;
      }));
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(*response.add_datasets(), GetDataset(name));
  }
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<std::vector<std::string>> ArtifactStore::TagsOf(std::string_view dataset,
                                                               const RawDigest& digest) const {
  std::string prefix = DatasetPrefix(dataset);
  std::vector<std::string> tags;
  RETURN_IF_ERROR(
      db_->ScanPrefix(tags_, prefix, {}, [&](std::string_view key, std::string_view value) {
        if (value == DigestBytes(digest)) tags.emplace_back(key.substr(prefix.size()));
        return true;
      }));
  return tags;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::LoadVersion(std::string_view dataset,
                                                              const RawDigest& digest) const {
  ASSIGN_OR_RETURN(auto value,
                   db_->GetProto<internal::StoredVersion>(versions_, VersionKey(dataset, digest)));
  if (!value) {
    return absl::NotFoundError(
        StrCat("version ", DigestHex(digest), " of dataset ", dataset, " not found"));
  }
  const internal::StoredVersion& stored = *value;
  v1::DatasetVersion version;
  version.set_dataset(std::string(dataset));
  version.set_digest(DigestHex(digest));
  version.set_message(stored.message());
  if (!stored.parent_digest().empty()) {
    version.set_parent_digest(DigestHex(DigestFromBytes(stored.parent_digest())));
  }
  version.set_create_time_ms(stored.create_time_ms());
  version.set_file_count(stored.file_count());
  version.set_total_bytes(stored.total_bytes());
  ASSIGN_OR_RETURN(auto tags, TagsOf(dataset, digest));
  for (auto& tag : tags) version.add_tags(std::move(tag));
  return version;
}

absl::StatusOr<RawDigest> ArtifactStore::ResolveRef(std::string_view dataset,
                                                    std::string_view ref) const {
  RETURN_IF_ERROR(ValidateDatasetName("dataset", dataset));
  if (ref.empty()) ref = kLatestTag;
  if (ValidateName(NameKind::kIdentifier, "ref", ref).ok()) {
    ASSIGN_OR_RETURN(auto tagged, db_->Get(tags_, TagKey(dataset, ref)));
    if (tagged) return DigestFromBytes(*tagged);
  }
  ASSIGN_OR_RETURN(auto exists, db_->Get(datasets_, dataset));
  if (!exists) return absl::NotFoundError(StrCat("dataset ", dataset, " not found"));
  if (ref.size() < 8 || ref.size() > 64 || !IsHex(ref)) {
    return absl::NotFoundError(StrCat("dataset ", dataset, " has no tag \"", ref.substr(0, 128),
                                      "\" (a digest prefix needs at least 8 hex characters)"));
  }
  std::string lower = ToLower(ref);
  std::string prefix = DatasetPrefix(dataset);
  std::string scan = prefix;
  RawDigest partial{};
  size_t whole_bytes = lower.size() / 2;
  if (whole_bytes > 0) {
    std::string padded = lower.substr(0, whole_bytes * 2) + std::string(64 - whole_bytes * 2, '0');
    ParseDigestHex(padded, &partial);
    scan.append(reinterpret_cast<const char*>(partial.data()), whole_bytes);
  }
  std::vector<RawDigest> matches;
  RETURN_IF_ERROR(db_->ScanPrefix(versions_, scan, {}, [&](std::string_view key, std::string_view) {
    RawDigest digest = DigestFromBytes(key.substr(prefix.size()));
    if (DigestHex(digest).starts_with(lower)) matches.push_back(digest);
    return matches.size() < 2;
  }));
  if (matches.empty()) {
    return absl::NotFoundError(StrCat("dataset ", dataset, " has no version or tag \"", ref, "\""));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(
        StrCat("ref \"", ref, "\": matches several versions of ", dataset, "; give more digits"));
  }
  return matches[0];
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::CreateVersion(
    const v1::CreateVersionRequest::Header& header, std::vector<v1::VersionEntry> entries) {
  RETURN_IF_ERROR(ValidateDatasetName("dataset", header.dataset()));
  if (header.message().size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError("message: longer than 65536 bytes");
  }
  if (static_cast<size_t>(header.tags_size()) > kMaxTagsPerVersion) {
    return absl::InvalidArgumentError(
        StrCat("tags: ", std::to_string(header.tags_size()), " given, at most 32"));
  }
  for (const std::string& tag : header.tags()) RETURN_IF_ERROR(ValidateTag(tag));
  if (entries.size() > kMaxVersionEntries) {
    return absl::InvalidArgumentError(
        StrCat("entries: ", std::to_string(entries.size()), " given, at most 2000000 per version"));
  }
  std::vector<ManifestEntry> manifest;
  manifest.reserve(entries.size());
  int64_t total_bytes = 0;
  for (v1::VersionEntry& entry : entries) {
    RETURN_IF_ERROR(ValidatePath(entry.path()));
    ManifestEntry m;
    ASSIGN_OR_RETURN(m.digest,
                     ParseDigestField(StrCat("entry ", entry.path(), ": digest"), entry.digest()));
    if (entry.size() < 0) {
      return absl::InvalidArgumentError(StrCat("entry ", entry.path(), ": negative size"));
    }
    if (entry.mode() > 0777) {
      // Only permission bits are kept: a version must never make a setuid, setgid or sticky
      // file on the machine that pulls it.
      char mode[16];
      std::snprintf(mode, sizeof(mode), "%04o", entry.mode());
      return absl::InvalidArgumentError(StrCat("entry ", entry.path(), ": mode ", mode,
                                               " has bits beyond the permission bits 0777 "
                                               "(setuid, setgid and sticky are not stored)"));
    }
    m.path = std::move(*entry.mutable_path());
    m.size = entry.size();
    m.mode = entry.mode();
    total_bytes += m.size;
    manifest.push_back(std::move(m));
  }
  entries.clear();
  ASSIGN_OR_RETURN(RawDigest digest, SortAndHashManifest(&manifest));
  if (!header.expected_digest().empty() && header.expected_digest() != DigestHex(digest)) {
    return absl::InvalidArgumentError(StrCat("expected_digest ", header.expected_digest(),
                                             ": the entries hash to ", DigestHex(digest)));
  }

  if (header.request_id().size() > 128) {
    return absl::InvalidArgumentError("request_id: longer than 128 bytes");
  }

  std::shared_lock gc_lock(gc_mu_);
  std::lock_guard lock(dataset_mu_);
  const std::string& name = header.dataset();
  const std::string request_key =
      header.request_id().empty() ? "" : StrCat(name, std::string(1, '\0'), header.request_id());
  if (!request_key.empty()) {
    ASSIGN_OR_RETURN(auto earlier, db_->Get(version_requests_, request_key));
    if (earlier) {
      ASSIGN_OR_RETURN(v1::DatasetVersion out, LoadVersion(name, DigestFromBytes(*earlier)));
      out.set_already_existed(true);
      return out;
    }
  }
  ASSIGN_OR_RETURN(auto dataset_value, db_->GetProto<internal::StoredDataset>(datasets_, name));
  internal::StoredDataset dataset;
  int64_t now = NowMs();
  if (dataset_value) {
    dataset = *dataset_value;
  } else if (header.create_dataset()) {
    dataset.set_create_time_ms(now);
  } else {
    return absl::NotFoundError(StrCat("dataset ", name, " not found"));
  }
  rocksdb::WriteBatch batch;
  ASSIGN_OR_RETURN(auto existing, db_->Get(versions_, VersionKey(name, digest)));
  bool already = existing.has_value();
  if (!already) {
    std::optional<RawDigest> parent;
    if (!header.parent().empty()) {
      ASSIGN_OR_RETURN(parent, ResolveRef(name, header.parent()));
    } else if (dataset_value) {
      ASSIGN_OR_RETURN(auto latest, db_->Get(tags_, TagKey(name, kLatestTag)));
      if (latest) parent = DigestFromBytes(*latest);
    }
    // Every blob must be stored with the stated size; each is touched so that a collection running
    // now keeps it.
    absl::flat_hash_map<std::string, int64_t> checked;
    for (const ManifestEntry& entry : manifest) {
      std::string key(DigestBytes(entry.digest));
      auto it = checked.find(key);
      if (it == checked.end()) {
        // Only blobs the dataset's project sees (docs/api.md, "Projects").
        ASSIGN_OR_RETURN(auto blob, GetBlobIn(entry.digest, ProjectOf(header.dataset())));
        if (!blob) {
          return absl::FailedPreconditionError(StrCat("entry ", entry.path, ": blob ",
                                                      DigestHex(entry.digest),
                                                      " is not stored; upload it first"));
        }
        blob->set_touch_time_ms(now);
        batch.Put(blobs_, key, blob->SerializeAsString());
        it = checked.emplace(key, blob->size()).first;
      }
      if (it->second != entry.size) {
        return absl::InvalidArgumentError(
            StrCat("entry ", entry.path, ": size ", std::to_string(entry.size), " but blob ",
                   DigestHex(entry.digest), " has ", std::to_string(it->second), " bytes"));
      }
    }
    ASSIGN_OR_RETURN(auto manifest_written, db_->Get(manifests_, DigestBytes(digest)));
    if (!manifest_written) {
      for (const ManifestEntry& entry : manifest) {
        internal::StoredEntry stored;
        stored.set_digest(std::string(DigestBytes(entry.digest)));
        stored.set_size(entry.size);
        stored.set_mode(entry.mode);
        batch.Put(entries_, EntryKey(digest, entry.path), stored.SerializeAsString());
      }
      batch.Put(manifests_, DigestBytes(digest), std::to_string(manifest.size()));
    }
    internal::StoredVersion version;
    version.set_message(header.message());
    if (parent) version.set_parent_digest(std::string(DigestBytes(*parent)));
    version.set_create_time_ms(now);
    version.set_file_count(static_cast<int64_t>(manifest.size()));
    version.set_total_bytes(total_bytes);
    batch.Put(versions_, VersionKey(name, digest), version.SerializeAsString());
    dataset.set_version_count(dataset.version_count() + 1);
    batch.Put(version_log_, VersionLogKey(name, dataset.version_count(), digest), "");
  }
  batch.Put(datasets_, name, dataset.SerializeAsString());
  if (!request_key.empty()) batch.Put(version_requests_, request_key, DigestBytes(digest));
  batch.Put(tags_, TagKey(name, kLatestTag), DigestBytes(digest));
  for (const std::string& tag : header.tags()) {
    batch.Put(tags_, TagKey(name, tag), DigestBytes(digest));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  ASSIGN_OR_RETURN(v1::DatasetVersion out, LoadVersion(name, digest));
  out.set_already_existed(already);
  return out;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::GetVersion(std::string_view dataset,
                                                             std::string_view ref) {
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(dataset, ref));
  return LoadVersion(dataset, digest);
}

absl::StatusOr<v1::ListVersionsResponse> ArtifactStore::ListVersions(
    const v1::ListVersionsRequest& request) {
  ASSIGN_OR_RETURN(v1::Dataset dataset, GetDataset(request.dataset()));
  const std::string prefix = DatasetPrefix(request.dataset());
  ASSIGN_OR_RETURN(Pager pager, Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000,
                                             request.page_token(),
                                             Fingerprint({"versions", request.dataset()}), prefix));
  std::vector<RawDigest> digests;
  RETURN_IF_ERROR(db_->ScanPrefix(version_log_, prefix, pager.after(),
                                  [&](std::string_view key, std::string_view) {
                                    if (!pager.Take(key)) return false;
                                    digests.push_back(DigestFromBytes(key.substr(key.size() - 32)));
                                    return true;
                                  }));
  v1::ListVersionsResponse response;
  for (const RawDigest& digest : digests) {
    ASSIGN_OR_RETURN(*response.add_versions(), LoadVersion(request.dataset(), digest));
  }
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::Status ArtifactStore::ScanEntries(
    const RawDigest& version, std::string_view prefix, std::string_view after,
    absl::FunctionRef<bool(std::string_view, const v1::VersionEntry&)> fn) const {
  std::string key_prefix = EntryKey(version, prefix);
  std::string after_key = after.empty() ? std::string() : EntryKey(version, after);
  absl::Status bad;
  absl::Status scanned = db_->ScanPrefix(entries_, key_prefix, after_key,
                                         [&](std::string_view key, std::string_view value) {
                                           auto entry = EntryFromStored(*db_, entries_, key, value);
                                           if (!entry.ok()) {
                                             bad = entry.status();
                                             return false;
                                           }
                                           return fn(key.substr(32), *entry);
                                         });
  return bad.ok() ? scanned : bad;
}

absl::StatusOr<v1::ListVersionEntriesResponse> ArtifactStore::ListVersionEntries(
    const v1::ListVersionEntriesRequest& request) {
  // A bad page size is refused before the ref is resolved.
  RETURN_IF_ERROR(NormalizePageSize(request.page_size(), 1000, 10000).status());
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(request.dataset(), request.ref()));
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(
          db_->page_token_key(), request.page_size(), 1000, 10000, request.page_token(),
          Fingerprint({"entries", request.dataset(), DigestBytes(digest), request.path_prefix()})));
  v1::ListVersionEntriesResponse response;
  ASSIGN_OR_RETURN(*response.mutable_version(), LoadVersion(request.dataset(), digest));
  RETURN_IF_ERROR(ScanEntries(digest, request.path_prefix(), pager.after(),
                              [&](std::string_view path, const v1::VersionEntry& entry) {
                                if (!pager.Take(path)) return false;
                                *response.add_entries() = entry;
                                return true;
                              }));
  response.set_next_page_token(pager.NextToken());
  return response;
}

absl::StatusOr<v1::DiffVersionsResponse> ArtifactStore::DiffVersions(
    const v1::DiffVersionsRequest& request) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 1000, 10000));
  const std::string& to_dataset =
      request.to_dataset().empty() ? request.from_dataset() : request.to_dataset();
  ASSIGN_OR_RETURN(RawDigest from, ResolveRef(request.from_dataset(), request.from_ref()));
  ASSIGN_OR_RETURN(RawDigest to, ResolveRef(to_dataset, request.to_ref()));
  uint64_t fingerprint = Fingerprint({"diff", DigestBytes(from), DigestBytes(to)});
  std::string after;
  bool first_page = request.page_token().empty();
  if (!first_page) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  v1::DiffVersionsResponse response;
  ASSIGN_OR_RETURN(*response.mutable_from(), LoadVersion(request.from_dataset(), from));
  ASSIGN_OR_RETURN(*response.mutable_to(), LoadVersion(to_dataset, to));
  v1::DiffSummary summary;
  if (from == to) {
    summary.set_unchanged(response.from().file_count());
    if (first_page) *response.mutable_summary() = summary;
    return response;
  }
  // Merge walk of the two sorted entry ranges.
  std::string from_prefix(DigestBytes(from)), to_prefix(DigestBytes(to));
  auto a = db_->NewIterator(entries_);
  auto b = db_->NewIterator(entries_);
  auto seek = [&](rocksdb::Iterator* it, const std::string& prefix) {
    if (after.empty()) {
      it->Seek(prefix);
    } else {
      std::string key = prefix + after;
      it->Seek(key);
      if (it->Valid() && it->key().ToStringView() == key) it->Next();
    }
  };
  seek(a.get(), from_prefix);
  seek(b.get(), to_prefix);
  auto valid = [](rocksdb::Iterator* it, const std::string& prefix) {
    return it->Valid() && it->key().starts_with(prefix);
  };
  bool more = false;
  std::string last;
  auto emit = [&](v1::FileChange::Kind kind, const v1::VersionEntry* old_entry,
                  const v1::VersionEntry* new_entry) -> bool {
    const std::string& path = old_entry ? old_entry->path() : new_entry->path();
    switch (kind) {
      case v1::FileChange::ADDED:
        summary.set_added(summary.added() + 1);
        summary.set_bytes_added(summary.bytes_added() + new_entry->size());
        break;
      case v1::FileChange::REMOVED:
        summary.set_removed(summary.removed() + 1);
        summary.set_bytes_removed(summary.bytes_removed() + old_entry->size());
        break;
      default:
        summary.set_modified(summary.modified() + 1);
        summary.set_bytes_changed(summary.bytes_changed() + new_entry->size());
    }
    if (response.changes_size() == page_size) {
      more = true;
      return first_page;  // keep counting for the summary on the first page only
    }
    if (more) return true;
    v1::FileChange* change = response.add_changes();
    change->set_path(path);
    change->set_kind(kind);
    if (old_entry) *change->mutable_from() = *old_entry;
    if (new_entry) *change->mutable_to() = *new_entry;
    last = path;
    return true;
  };
  bool go = true;
  while (go && (valid(a.get(), from_prefix) || valid(b.get(), to_prefix))) {
    bool has_a = valid(a.get(), from_prefix), has_b = valid(b.get(), to_prefix);
    std::string_view path_a = has_a ? a->key().ToStringView().substr(32) : std::string_view();
    std::string_view path_b = has_b ? b->key().ToStringView().substr(32) : std::string_view();
    if (has_a && (!has_b || path_a < path_b)) {
      ASSIGN_OR_RETURN(
          v1::VersionEntry old_entry,
          EntryFromStored(*db_, entries_, a->key().ToStringView(), a->value().ToStringView()));
      go = emit(v1::FileChange::REMOVED, &old_entry, nullptr);
      a->Next();
    } else if (has_b && (!has_a || path_b < path_a)) {
      ASSIGN_OR_RETURN(
          v1::VersionEntry new_entry,
          EntryFromStored(*db_, entries_, b->key().ToStringView(), b->value().ToStringView()));
      go = emit(v1::FileChange::ADDED, nullptr, &new_entry);
      b->Next();
    } else {
      if (a->value() != b->value()) {
        ASSIGN_OR_RETURN(
            v1::VersionEntry old_entry,
            EntryFromStored(*db_, entries_, a->key().ToStringView(), a->value().ToStringView()));
        ASSIGN_OR_RETURN(
            v1::VersionEntry new_entry,
            EntryFromStored(*db_, entries_, b->key().ToStringView(), b->value().ToStringView()));
        go = emit(v1::FileChange::MODIFIED, &old_entry, &new_entry);
      } else {
        summary.set_unchanged(summary.unchanged() + 1);
      }
      a->Next();
      b->Next();
    }
  }
  RETURN_IF_ERROR(FromRocksStatus(a->status(), "diff"));
  RETURN_IF_ERROR(FromRocksStatus(b->status(), "diff"));
  if (first_page) *response.mutable_summary() = summary;
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

absl::StatusOr<v1::DatasetVersion> ArtifactStore::TagVersion(const v1::TagVersionRequest& request) {
  RETURN_IF_ERROR(ValidateTag(request.tag()));
  if (request.remove() && request.tag() == kLatestTag) {
    return absl::InvalidArgumentError("tag latest: always names the newest version");
  }
  std::lock_guard lock(dataset_mu_);
  ASSIGN_OR_RETURN(RawDigest digest, ResolveRef(request.dataset(), request.ref()));
  rocksdb::WriteBatch batch;
  std::string key = TagKey(request.dataset(), request.tag());
  if (request.remove()) {
    ASSIGN_OR_RETURN(auto current, db_->Get(tags_, key));
    if (!current || *current != DigestBytes(digest)) {
      return absl::NotFoundError(StrCat("version ", DigestHex(digest), " of ", request.dataset(),
                                        " has no tag ", request.tag()));
    }
    batch.Delete(tags_, key);
  } else {
    batch.Put(tags_, key, DigestBytes(digest));
  }
  RETURN_IF_ERROR(db_->WriteSync(&batch));
  return LoadVersion(request.dataset(), digest);
}

}  // namespace mlops::artifact
