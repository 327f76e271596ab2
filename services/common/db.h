// The one storage wrapper every service core writes through: a RocksDB database with named column
// families, opened once per process. Every logical change is one WriteBatch (atomic across column
// families).
//
// Durability: writes go to the write-ahead log before they are acknowledged. With sync_writes=false
// (the default) the WAL is written but not fsynced, which survives a crash of the process (kill -9)
// but not of the machine; sync_writes=true fsyncs every batch and survives power loss too.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace google::protobuf {
class MessageLite;
}

namespace mlops {

// One step of a database's on-disk format: brings a database of format `version - 1` to `version`.
struct Migration {
  int version = 0;
  std::string what;  // said in the log line
  // Rewrites what the new format stores differently; empty when only new column families or
  // fields came (RocksDB creates missing column families, proto3 readers skip unknown fields).
  std::function<absl::Status(class Db&)> apply;
};

// Format 1 of every service's database: the layout of the databases written before formats were
// recorded (format 0), with the format now recorded. A service's later formats add their steps.
inline Migration RecordFormatMigration() {
  return {1, "on-disk format recorded (layout unchanged)", nullptr};
}

class Db {
 public:
  struct Options {
    bool sync_writes = false;
    size_t block_cache_mb = 256;
    bool create_if_missing = true;
    // Column family name -> prefix extractor: inserts into the memtable remember, per prefix, where
    // the last key went, so keys arriving in order under one prefix (one metric of one run) insert
    // next to the previous one instead of after a full skiplist search. Memtable writes are then
    // applied by the write-group leader alone (RocksDB ignores hints with concurrent memtable
    // writes); see docs/performance.md for what it buys.
    std::vector<std::pair<std::string, std::shared_ptr<const rocksdb::SliceTransform>>>
        insert_hint_prefixes;
    // The on-disk format this code writes (0: not versioned, nothing checked) and one migration
    // to each format from 1 up to it. Open records the format of a new database; an older one is
    // migrated step by step (each step recorded as it completes, so an interrupted migration
    // resumes); a newer one is refused with FAILED_PRECONDITION. A database written before
    // formats were recorded counts as format 0.
    int format_version = 0;
    std::vector<Migration> migrations;
    // While another process holds the database's lock, retry for this long before UNAVAILABLE:
    // a replaced pod's new process starts while the old one may still be exiting.
    absl::Duration lock_wait = absl::ZeroDuration();
  };

  // Opens (creating when missing) the database at `path` with every listed column family, plus
  // "default", and brings it to options.format_version. Returns UNAVAILABLE when another process
  // holds the lock (after options.lock_wait), DATA_LOSS on corruption, FAILED_PRECONDITION for a
  // database of a newer format (or a missing migration step), and what a failed migration step
  // returned.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path,
                                                  const std::vector<std::string>& column_families,
                                                  const Options& options);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // The handle of a column family given to Open; aborts on an unknown name (a programming error).
  rocksdb::ColumnFamilyHandle* Cf(std::string_view name) const;

  // The value at `key`, or nullopt when absent.
  absl::StatusOr<std::optional<std::string>> Get(rocksdb::ColumnFamilyHandle* cf,
                                                 std::string_view key) const;
  // Applies the batch atomically.
  absl::Status Write(rocksdb::WriteBatch* batch);
  // The same, fsyncing the write-ahead log before returning whatever sync_writes says (for commits
  // that must survive power loss once acknowledged).
  absl::Status WriteSync(rocksdb::WriteBatch* batch);
  // Tests only: every later Write and WriteSync fails with `status` and writes nothing (OK: they
  // work again). It stands in for a failing disk, which a test cannot make.
  void FailWritesForTesting(absl::Status status);

  std::unique_ptr<rocksdb::Iterator> NewIterator(rocksdb::ColumnFamilyHandle* cf) const;

  // Calls fn(key, value) for each key that starts with `prefix`, in key order, beginning strictly
  // after `after` when it is non-empty (it must start with `prefix`). fn returns false to stop.
  absl::Status ScanPrefix(rocksdb::ColumnFamilyHandle* cf, std::string_view prefix,
                          std::string_view after,
                          absl::FunctionRef<bool(std::string_view, std::string_view)> fn) const;
  // The same in reverse key order, beginning strictly before `before` when it is non-empty.
  absl::Status ScanPrefixReverse(
      rocksdb::ColumnFamilyHandle* cf, std::string_view prefix, std::string_view before,
      absl::FunctionRef<bool(std::string_view, std::string_view)> fn) const;

  // Typed records. Every stored protobuf record is read through these: a value that does not
  // parse is DATA_LOSS naming the column family and the key, never an empty message.
  //
  // Parses `value`, read from `key` of `cf`, into `out`.
  absl::Status ParseRecord(rocksdb::ColumnFamilyHandle* cf, std::string_view key,
                           std::string_view value, google::protobuf::MessageLite* out) const;
  // The record at `key` (nullopt when absent); DATA_LOSS when it does not parse.
  template <typename T>
  absl::StatusOr<std::optional<T>> GetProto(rocksdb::ColumnFamilyHandle* cf,
                                            std::string_view key) const {
    auto value = Get(cf, key);
    if (!value.ok()) return value.status();
    if (!value->has_value()) return std::optional<T>();
    T out;
    absl::Status parsed = ParseRecord(cf, key, **value, &out);
    if (!parsed.ok()) return parsed;
    return std::optional<T>(std::move(out));
  }
  // ScanPrefix over records: fn(key, record) for each, in key order; the scan stops at the first
  // record that does not parse and returns DATA_LOSS.
  template <typename T>
  absl::Status ScanProto(rocksdb::ColumnFamilyHandle* cf, std::string_view prefix,
                         std::string_view after,
                         absl::FunctionRef<bool(std::string_view, T&)> fn) const {
    absl::Status bad;
    T record;
    absl::Status scanned =
        ScanPrefix(cf, prefix, after, [&](std::string_view k, std::string_view v) {
          record.Clear();
          bad = ParseRecord(cf, k, v, &record);
          return bad.ok() && fn(k, record);
        });
    return bad.ok() ? scanned : bad;
  }
  // The same in reverse key order (ScanPrefixReverse).
  template <typename T>
  absl::Status ScanProtoReverse(rocksdb::ColumnFamilyHandle* cf, std::string_view prefix,
                                std::string_view before,
                                absl::FunctionRef<bool(std::string_view, T&)> fn) const {
    absl::Status bad;
    T record;
    absl::Status scanned =
        ScanPrefixReverse(cf, prefix, before, [&](std::string_view k, std::string_view v) {
          record.Clear();
          bad = ParseRecord(cf, k, v, &record);
          return bad.ok() && fn(k, record);
        });
    return bad.ok() ? scanned : bad;
  }

  // Sum of an integer property (e.g. "rocksdb.estimate-num-keys") over every column family.
  uint64_t IntProperty(const std::string& name) const;

  // Compacts every column family to the bottom level (after a bulk load).
  absl::Status CompactAll();

  // The secret that authenticates this database's page tokens (see page_token.h): 32 random
  // bytes made at the first open and kept in the database, so tokens survive restarts.
  const std::string& page_token_key() const { return page_token_key_; }

  // The on-disk format recorded in the database (0: none recorded).
  absl::StatusOr<int> StoredFormatVersion() const;

  rocksdb::DB* raw() const { return db_.get(); }
  const std::string& path() const { return path_; }

 private:
  Db() = default;
  absl::Status LoadPageTokenKey();
  absl::Status Migrate(bool existed, const Options& options);

  absl::Status InjectedWriteError() const;

  std::string path_;
  rocksdb::WriteOptions write_options_;
  std::atomic<bool> fail_writes_{false};
  mutable std::mutex fault_mu_;
  absl::Status write_fault_;  // guarded by fault_mu_
  std::vector<std::string> names_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string page_token_key_;
};

// Explicit switch over RocksDB codes: NotFound -> NOT_FOUND, Busy/TimedOut/TryAgain -> UNAVAILABLE
// (retryable), Corruption -> DATA_LOSS, InvalidArgument -> INVALID_ARGUMENT, IOError -> UNAVAILABLE
// (RESOURCE_EXHAUSTED when the disk is full), anything else INTERNAL. `context` prefixes the
// message, e.g. "put run".
absl::Status FromRocksStatus(const rocksdb::Status& status, std::string_view context = {});

// `options` with the database's on-disk format and the migrations to it (Options::format_version).
inline Db::Options Versioned(Db::Options options, int format_version,
                             std::vector<Migration> migrations) {
  options.format_version = format_version;
  options.migrations = std::move(migrations);
  return options;
}

// The smallest string greater than every string that starts with `prefix` (empty when none is).
std::string PrefixSuccessor(std::string_view prefix);

}  // namespace mlops
