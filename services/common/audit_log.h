// The audit log (docs/security.md): every call of a mutating RPC (the access table's `mutation`
// column, and any method missing from the table), admitted or refused, with who made it, which
// resource it named, the client's request id, the result code and the time. Appended to its own
// RocksDB (<data_dir>/audit, column family "audit") and never rewritten; listed through
// mlops.audit.v1.AuditService (`mlops audit list`); counted in mlops_audit_entries_total{code}.
// With a retention (--audit_retention_days), entries older than it are deleted, oldest first, at
// start and every hour (mlops_audit_entries_purged_total); without one, entries are kept forever.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "mlops/audit/v1/audit.grpc.pb.h"
#include "services/common/db.h"
#include "services/common/rpc_guard.h"

namespace mlops {

class AuditLog {
 public:
  // Opens (creating) the audit database at `path`. The errors of Db::Open.
  // `retention_ms` > 0 purges older entries at open and then hourly on a thread of its own.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                        const Db::Options& options,
                                                        prometheus::Registry& registry,
                                                        int64_t retention_ms = 0);
  ~AuditLog();
  // Appends `entry` (time_ms set by the caller); the write is as durable as the server's other
  // writes (--sync_writes).
  absl::Status Append(const audit::v1::AuditEntry& entry);
  // Entries oldest first, filtered and paged as the request says. INVALID_ARGUMENT for a negative
  // page size or time or a bad page token.
  absl::StatusOr<audit::v1::ListAuditEntriesResponse> List(
      const audit::v1::ListAuditEntriesRequest& request) const;
  // Deletes every entry older than `before_ms` (one range deletion); returns how many there were.
  absl::StatusOr<uint64_t> Purge(int64_t before_ms);
  Db& db() { return *db_; }

 private:
  AuditLog(std::unique_ptr<Db> db, uint64_t next_sequence, prometheus::Registry& registry);
  std::unique_ptr<Db> db_;
  std::atomic<uint64_t> next_sequence_;
  prometheus::Family<prometheus::Counter>* appended_;
  prometheus::Counter* purged_;
  // The retention thread.
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread purger_;
};

// The gRPC adapter of AuditLog::List.
class AuditServiceImpl final : public audit::v1::AuditService::Service {
 public:
  explicit AuditServiceImpl(const AuditLog* log) : log_(log) {}
  grpc::Status ListAuditEntries(grpc::ServerContext* context,
                                const audit::v1::ListAuditEntriesRequest* request,
                                audit::v1::ListAuditEntriesResponse* response) override;

 private:
  const AuditLog* log_;
};

// Records every mutating call when its status is sent: the guard's CallRecord (subject, project,
// resource), the method, the code, x-request-id. `log` may be null (no data dir): records are
// then only dropped.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuditInterceptorFactory(
    RpcGuard* guard, AuditLog* log);

}  // namespace mlops
