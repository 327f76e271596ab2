#include "services/common/audit_log.h"

#include "services/common/encoding.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "services/common/page_token.h"
#include "services/common/projects.h"
#include "services/common/status.h"

namespace mlops {

namespace {
constexpr char kCf[] = "audit";

// Keys: big-endian time then sequence, so that a scan is in time order and entries of the same
// millisecond keep the order they were appended in.
std::string EntryKey(int64_t time_ms, uint64_t sequence) {
  std::string key;
  AppendBigEndian64(&key, static_cast<uint64_t>(time_ms));
  AppendBigEndian64(&key, sequence);
  return key;
}
}  // namespace

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                         const Db::Options& options,
                                                         prometheus::Registry& registry,
                                                         int64_t retention_ms) {
  Db::Options db_options = options;
  db_options.block_cache_mb = 8;  // written far more than read
  db_options.format_version = 1;
  db_options.migrations = {RecordFormatMigration()};
  absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path, {kCf}, db_options);
  if (!db.ok()) return db.status();
  uint64_t next = 0;
  std::unique_ptr<rocksdb::Iterator> last = (*db)->NewIterator((*db)->Cf(kCf));
  last->SeekToLast();
  if (last->Valid() && last->key().size() == 16) {
    next = ReadBigEndian64(std::string_view(last->key().data() + 8, 8)) + 1;
  }
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(*db), next, registry));
  if (retention_ms > 0) {
    auto purge = [log = log.get(), retention_ms] {
      auto purged = log->Purge(NowMs() - retention_ms);
      if (!purged.ok()) {
        LogWarning("audit_purge_failed", {{"error", std::string(purged.status().message())}});
      } else if (*purged > 0) {
        LogInfo("audit_purged", {{"entries", std::to_string(*purged)},
                                 {"older_than_ms", std::to_string(retention_ms)}});
      }
    };
    purge();
    log->purger_ = std::thread([log = log.get(), purge] {
      std::unique_lock lock(log->mu_);
      while (!log->wake_.wait_for(lock, std::chrono::hours(1), [&] { return log->stop_; })) {
        lock.unlock();
        purge();
        lock.lock();
      }
    });
  }
  return log;
}

AuditLog::~AuditLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (purger_.joinable()) purger_.join();
}

absl::StatusOr<uint64_t> AuditLog::Purge(int64_t before_ms) {
  if (before_ms <= 0) return 0;
  const std::string end = EntryKey(before_ms, 0);
  uint64_t count = 0;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(db_->Cf(kCf));
  for (it->SeekToFirst(); it->Valid() && it->key().compare(end) < 0; it->Next()) ++count;
  if (!it->status().ok()) return absl::UnavailableError(it->status().ToString());
  if (count == 0) return 0;
  rocksdb::WriteBatch batch;
  batch.DeleteRange(db_->Cf(kCf), std::string(16, '\0'), end);
  RETURN_IF_ERROR(db_->Write(&batch));
  purged_->Increment(static_cast<double>(count));
  return count;
}

AuditLog::AuditLog(std::unique_ptr<Db> db, uint64_t next_sequence, prometheus::Registry& registry)
    : db_(std::move(db)),
      next_sequence_(next_sequence),
      appended_(&prometheus::BuildCounter()
                     .Name("mlops_audit_entries_total")
                     .Help("Entries appended to the audit log (calls of mutating RPCs), by code")
                     .Register(registry)),
      purged_(&prometheus::BuildCounter()
                   .Name("mlops_audit_entries_purged_total")
                   .Help("Audit entries deleted for being older than --audit_retention_days")
                   .Register(registry)
                   .Add({})) {}

absl::Status AuditLog::Append(const audit::v1::AuditEntry& entry) {
  rocksdb::WriteBatch batch;
  std::string value;
  entry.SerializeToString(&value);
  batch.Put(db_->Cf(kCf), EntryKey(entry.time_ms(), next_sequence_++), value);
  absl::Status status = db_->Write(&batch);
  if (status.ok()) appended_->Add({{"code", entry.code()}}).Increment();
  return status;
}

absl::StatusOr<audit::v1::ListAuditEntriesResponse> AuditLog::List(
    const audit::v1::ListAuditEntriesRequest& request) const {
  if (request.since_ms() < 0 || request.until_ms() < 0) {
    return absl::InvalidArgumentError("since_ms and until_ms must not be negative");
  }
  absl::StatusOr<Pager> pager = Pager::Start(
      db_->page_token_key(), request.page_size(), 100, 1000, request.page_token(),
      Fingerprint({request.project(), request.subject(), std::to_string(request.since_ms()),
                   std::to_string(request.until_ms())}));
  if (!pager.ok()) return pager.status();
  std::string after = pager->after();
  if (pager->first_page() && request.since_ms() > 0) {
    // Strictly after the 8-byte time prefix: every entry of that millisecond onwards.
    after.clear();
    AppendBigEndian64(&after, static_cast<uint64_t>(request.since_ms()));
  }
  // Empty: project default, as for every request naming no project; "*": every project.
  const std::string_view project =
      request.project().empty() ? kDefaultProject : std::string_view(request.project());
  audit::v1::ListAuditEntriesResponse response;
  absl::Status scanned = db_->ScanProto<audit::v1::AuditEntry>(
      db_->Cf(kCf), "", after, [&](std::string_view key, audit::v1::AuditEntry& entry) {
        if (request.until_ms() > 0 && entry.time_ms() >= request.until_ms()) return false;
        if ((project != kEveryProject &&
             (entry.project().empty() ? kDefaultProject : entry.project()) != project) ||
            (!request.subject().empty() && entry.subject() != request.subject())) {
          pager->Pass(key);
          return true;
        }
        if (!pager->Take(key)) return false;
        *response.add_entries() = std::move(entry);
        return true;
      });
  if (!scanned.ok()) return scanned;
  response.set_next_page_token(pager->NextToken());
  return response;
}

grpc::Status AuditServiceImpl::ListAuditEntries(grpc::ServerContext*,
                                                const audit::v1::ListAuditEntriesRequest* request,
                                                audit::v1::ListAuditEntriesResponse* response) {
  if (log_ == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this server keeps no audit log (it has no data dir)");
  }
  absl::StatusOr<audit::v1::ListAuditEntriesResponse> listed = log_->List(*request);
  if (!listed.ok()) return ToGrpcStatus(listed.status());
  *response = std::move(*listed);
  return grpc::Status::OK;
}

namespace {

class AuditInterceptor : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(grpc::experimental::ServerRpcInfo* info, RpcGuard* guard, AuditLog* log)
      : method_(info->method()), context_(info->server_context()), guard_(guard), log_(log) {}
  ~AuditInterceptor() override {
    if (!done_) (void)guard_->TakeCallRecord(context_);  // a call that never sent a status
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* metadata = methods->GetRecvInitialMetadata();
      auto it = metadata->find("x-request-id");
      if (it != metadata->end()) request_id_.assign(it->second.data(), it->second.size());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      done_ = true;
      std::optional<CallRecord> record = guard_->TakeCallRecord(context_);
      if (log_ != nullptr) {
        audit::v1::AuditEntry entry;
        entry.set_time_ms(NowMs());
        entry.set_method(method_);
        entry.set_code(StatusCodeName(methods->GetSendStatus().error_code()));
        entry.set_request_id(request_id_);
        if (record) {
          entry.set_subject(record->subject);
          entry.set_project(record->project);
          entry.set_resource(record->resource);
        }
        if (absl::Status status = log_->Append(entry); !status.ok()) {
          LogError("audit_append_failed",
                   {{"method", method_}, {"error", std::string(status.message())}});
        }
      }
    }
    methods->Proceed();
  }

 private:
  std::string method_;
  const grpc::ServerContextBase* context_;
  RpcGuard* guard_;
  AuditLog* log_;
  std::string request_id_;
  bool done_ = false;
};

class AuditInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  AuditInterceptorFactory(RpcGuard* guard, AuditLog* log) : guard_(guard), log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    if (method == nullptr) return nullptr;
    const MethodAccess* access = FindMethodAccess(method);
    // Reads are not audited; health checks and reflection are not in the table and not guarded.
    if (access != nullptr && !access->mutation) return nullptr;
    if (access == nullptr && std::string_view(method).rfind("/mlops.", 0) != 0) return nullptr;
    return new AuditInterceptor(info, guard_, log_);
  }

 private:
  RpcGuard* guard_;
  AuditLog* log_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuditInterceptorFactory(
    RpcGuard* guard, AuditLog* log) {
  return std::make_unique<AuditInterceptorFactory>(guard, log);
}

}  // namespace mlops
