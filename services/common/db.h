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

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace google::protobuf {
class MessageLite;
}

namespace mlops {

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
  };

  // Opens (creating when missing) the database at `path` with every listed column family, plus
  // "default". Returns UNAVAILABLE when another process holds the lock, DATA_LOSS on corruption.
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

  rocksdb::DB* raw() const { return db_.get(); }
  const std::string& path() const { return path_; }

 private:
  Db() = default;
  absl::Status LoadPageTokenKey();

  std::string path_;
  rocksdb::WriteOptions write_options_;
  std::vector<std::string> names_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string page_token_key_;
};

// The smallest string greater than every string that starts with `prefix` (empty when none is).
std::string PrefixSuccessor(std::string_view prefix);

}  // namespace mlops
