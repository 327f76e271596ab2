#include "services/common/db.h"

#include <google/protobuf/message_lite.h>
#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/status.h>
#include <rocksdb/table.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops {

absl::Status FromRocksStatus(const rocksdb::Status& status, std::string_view context) {
  if (status.ok()) return absl::OkStatus();
  std::string message =
      context.empty() ? status.ToString() : std::string(context) + ": " + status.ToString();
  switch (status.code()) {
    case rocksdb::Status::kOk:
      return absl::OkStatus();
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(message);
    case rocksdb::Status::kInvalidArgument:
      return absl::InvalidArgumentError(message);
    case rocksdb::Status::kNotSupported:
      return absl::UnimplementedError(message);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
      return absl::UnavailableError(message);
    case rocksdb::Status::kAborted:
      return absl::AbortedError(message);
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kShutdownInProgress:
      return absl::UnavailableError(message);
    case rocksdb::Status::kIOError:
      if (status.subcode() == rocksdb::Status::kNoSpace)
        return absl::ResourceExhaustedError(message);
      return absl::UnavailableError(
          message);  // I/O errors may pass (disk, NFS): let clients retry.
    case rocksdb::Status::kMergeInProgress:
    case rocksdb::Status::kExpired:
    case rocksdb::Status::kCompactionTooLarge:
    case rocksdb::Status::kColumnFamilyDropped:
    case rocksdb::Status::kMaxCode:
      return absl::InternalError(message);
  }
  return absl::UnknownError(message);
}

std::string PrefixSuccessor(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty()) {
    unsigned char last = static_cast<unsigned char>(out.back());
    if (last != 0xff) {
      out.back() = static_cast<char>(last + 1);
      return out;
    }
    out.pop_back();
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path,
                                             const std::vector<std::string>& column_families,
                                             const Options& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1 << 20;
  db_options.max_total_wal_size = 256 << 20;
  db_options.keep_log_file_num = 3;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_mb << 20);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.format_version = 5;
  rocksdb::ColumnFamilyOptions cf_options(db_options);
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf_options.compression = rocksdb::kLZ4Compression;
  cf_options.bottommost_compression = rocksdb::kLZ4Compression;  // reads decompress fast
  cf_options.write_buffer_size = 64 << 20;
  cf_options.level_compaction_dynamic_level_bytes = true;

  if (!options.insert_hint_prefixes.empty()) db_options.allow_concurrent_memtable_write = false;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (const auto& name : column_families) {
    rocksdb::ColumnFamilyOptions options_for_cf = cf_options;
    for (const auto& [hinted, extractor] : options.insert_hint_prefixes) {
      if (hinted == name) options_for_cf.memtable_insert_with_hint_prefix_extractor = extractor;
    }
    descriptors.emplace_back(name, options_for_cf);
  }

  if (options.create_if_missing) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return absl::InternalError("create " + path + ": " + ec.message());
  }
  const bool existed = std::filesystem::exists(path + "/CURRENT");
  std::unique_ptr<Db> db(new Db());
  db->path_ = path;
  db->write_options_.sync = options.sync_writes;
  rocksdb::DB* raw = nullptr;
  const absl::Time give_up = absl::Now() + options.lock_wait;
  rocksdb::Status s;
  for (bool logged = false;; logged = true) {
    db->handles_.clear();
    s = rocksdb::DB::Open(rocksdb::DBOptions(db_options), path, descriptors, &db->handles_, &raw);
    const bool locked = !s.ok() && s.IsIOError() && s.ToString().find("lock") != std::string::npos;
    if (!locked || absl::Now() >= give_up) break;
    if (!logged) {
      LogWarning(
          "database_locked_waiting",
          {{"path", path}, {"wait_s", absl::StrCat(absl::ToInt64Seconds(options.lock_wait))}});
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return absl::UnavailableError("database " + path +
                                    " is in use by another process: " + s.ToString());
    }
    return FromRocksStatus(s, "open " + path);
  }
  db->db_.reset(raw);
  db->names_.push_back(rocksdb::kDefaultColumnFamilyName);
  for (const auto& name : column_families) db->names_.push_back(name);
  if (options.create_if_missing) RETURN_IF_ERROR(db->LoadPageTokenKey());
  if (options.format_version > 0) RETURN_IF_ERROR(db->Migrate(existed, options));
  return db;
}

namespace {
// In the default column family, which no core uses for its own records.
constexpr char kFormatKey[] = "mlops.format_version";
}  // namespace

absl::StatusOr<int> Db::StoredFormatVersion() const {
  ASSIGN_OR_RETURN(auto stored, Get(handles_[0], kFormatKey));
  if (!stored) return 0;
  int version = 0;
  if (!absl::SimpleAtoi(*stored, &version) || version < 1) {
    return absl::DataLossError(
        StrCat(path_, ": recorded format version \"", *stored, "\" is not a positive number"));
  }
  return version;
}

absl::Status Db::Migrate(bool existed, const Options& options) {
  const int current = options.format_version;
  auto record = [&](int version) {
    rocksdb::WriteBatch batch;
    batch.Put(handles_[0], kFormatKey, std::to_string(version));
    return WriteSync(&batch);
  };
  ASSIGN_OR_RETURN(int stored, StoredFormatVersion());
  if (stored == 0 && !existed) return record(current);  // a new database
  if (stored > current) {
    return absl::FailedPreconditionError(
        StrCat(path_, ": written by a newer mlops (on-disk format ", std::to_string(stored),
               "; this binary reads formats up to ", std::to_string(current),
               "): run that version or a newer one"));
  }
  for (int next = stored + 1; next <= current; ++next) {
    auto step = std::find_if(options.migrations.begin(), options.migrations.end(),
                             [&](const Migration& m) { return m.version == next; });
    if (step == options.migrations.end()) {
      return absl::FailedPreconditionError(
          StrCat(path_, ": no migration to on-disk format ", std::to_string(next)));
    }
    if (step->apply) RETURN_IF_ERROR(step->apply(*this));
    RETURN_IF_ERROR(record(next));
    LogInfo("storage_migrated", {{"db", path_},
                                 {"from", std::to_string(next - 1)},
                                 {"to", std::to_string(next)},
                                 {"what", step->what}});
  }
  return absl::OkStatus();
}

absl::Status Db::LoadPageTokenKey() {
  // Kept in the default column family, which no core uses for anything else.
  static constexpr char kKey[] = "mlops.page_token_key";
  rocksdb::ColumnFamilyHandle* cf = handles_[0];
  ASSIGN_OR_RETURN(auto stored, Get(cf, kKey));
  if (stored && stored->size() == 32) {
    page_token_key_ = std::move(*stored);
    return absl::OkStatus();
  }
  std::string key(32, '\0');
  size_t done = 0;
  while (done < key.size()) {
    ssize_t n = ::getrandom(key.data() + done, key.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(std::string("getrandom: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  rocksdb::WriteBatch batch;
  batch.Put(cf, kKey, key);
  RETURN_IF_ERROR(WriteSync(&batch));
  page_token_key_ = std::move(key);
  return absl::OkStatus();
}

Db::~Db() {
  if (db_ == nullptr) return;
  for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
  handles_.clear();
  db_->Close();
}

rocksdb::ColumnFamilyHandle* Db::Cf(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return handles_[i];
  }
  Fatal("unknown column family " + std::string(name));
}

absl::StatusOr<std::optional<std::string>> Db::Get(rocksdb::ColumnFamilyHandle* cf,
                                                   std::string_view key) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), cf, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocksStatus(s, "get");
  return value;
}

void Db::FailWritesForTesting(absl::Status status) {
  std::lock_guard lock(fault_mu_);
  write_fault_ = std::move(status);
  fail_writes_ = !write_fault_.ok();
}

absl::Status Db::InjectedWriteError() const {
  if (!fail_writes_) return absl::OkStatus();
  std::lock_guard lock(fault_mu_);
  return write_fault_;
}

absl::Status Db::Write(rocksdb::WriteBatch* batch) {
  RETURN_IF_ERROR(InjectedWriteError());
  return FromRocksStatus(db_->Write(write_options_, batch), "write");
}

absl::Status Db::WriteSync(rocksdb::WriteBatch* batch) {
  RETURN_IF_ERROR(InjectedWriteError());
  rocksdb::WriteOptions options = write_options_;
  options.sync = true;
  return FromRocksStatus(db_->Write(options, batch), "write");
}

std::unique_ptr<rocksdb::Iterator> Db::NewIterator(rocksdb::ColumnFamilyHandle* cf) const {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(rocksdb::ReadOptions(), cf));
}

absl::Status Db::ParseRecord(rocksdb::ColumnFamilyHandle* cf, std::string_view key,
                             std::string_view value, google::protobuf::MessageLite* out) const {
  if (out->ParseFromArray(value.data(), static_cast<int>(value.size()))) return absl::OkStatus();
  // Keys are often binary: shown escaped, and only their start when long.
  std::string shown =
      absl::CHexEscape(absl::string_view(key.data(), std::min<size_t>(key.size(), 96)));
  if (key.size() > 96) shown += "...";
  return absl::DataLossError(StrCat(path_, ": column family ", cf->GetName(), ", key \"", shown,
                                    "\": stored ", out->GetTypeName(), " does not parse (",
                                    std::to_string(value.size()), " bytes)"));
}

absl::Status Db::ScanPrefix(rocksdb::ColumnFamilyHandle* cf, std::string_view prefix,
                            std::string_view after,
                            absl::FunctionRef<bool(std::string_view, std::string_view)> fn) const {
  std::string upper = PrefixSuccessor(prefix);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions read_options;
  if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf));
  if (after.empty()) {
    it->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
  } else {
    it->Seek(rocksdb::Slice(after.data(), after.size()));
    if (it->Valid() && it->key() == rocksdb::Slice(after.data(), after.size())) it->Next();
  }
  for (; it->Valid(); it->Next()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) break;
    rocksdb::Slice v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  return FromRocksStatus(it->status(), "scan");
}

absl::Status Db::ScanPrefixReverse(
    rocksdb::ColumnFamilyHandle* cf, std::string_view prefix, std::string_view before,
    absl::FunctionRef<bool(std::string_view, std::string_view)> fn) const {
  std::string lower(prefix);
  rocksdb::Slice lower_slice(lower);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options, cf));
  if (before.empty()) {
    std::string upper = PrefixSuccessor(prefix);
    if (upper.empty()) {
      it->SeekToLast();
    } else {
      it->SeekForPrev(upper);
      if (it->Valid() && it->key() == rocksdb::Slice(upper)) it->Prev();
    }
  } else {
    it->SeekForPrev(rocksdb::Slice(before.data(), before.size()));
    if (it->Valid() && it->key() == rocksdb::Slice(before.data(), before.size())) it->Prev();
  }
  for (; it->Valid(); it->Prev()) {
    rocksdb::Slice k = it->key();
    if (!k.starts_with(rocksdb::Slice(prefix.data(), prefix.size()))) break;
    rocksdb::Slice v = it->value();
    if (!fn(std::string_view(k.data(), k.size()), std::string_view(v.data(), v.size()))) break;
  }
  return FromRocksStatus(it->status(), "scan");
}

absl::Status Db::CompactAll() {
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (auto* handle : handles_) {
    RETURN_IF_ERROR(
        FromRocksStatus(db_->CompactRange(options, handle, nullptr, nullptr), "compact"));
  }
  return absl::OkStatus();
}

uint64_t Db::IntProperty(const std::string& name) const {
  uint64_t total = 0;
  for (auto* handle : handles_) {
    uint64_t value = 0;
    if (db_->GetIntProperty(handle, name, &value)) total += value;
  }
  return total;
}

}  // namespace mlops
