// Prometheus metrics shared by every service: per-RPC counters and latency histograms recorded by a
// gRPC server interceptor, process gauges and RocksDB gauges computed at scrape time.
//
// Exposed families:
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}   counter
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}          histogram
// grpc_type is unary, client_stream, server_stream or bidi_stream (as go-grpc-prometheus labels
// them): a streaming call's "handling time" is its whole life, so latency alerts look at unary.
//   process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
//   process_open_fds, process_threads, process_start_time_seconds   gauges / counter
//   mlops_rocksdb_estimate_num_keys{db}, mlops_rocksdb_live_sst_bytes{db},
//   mlops_rocksdb_memtable_bytes{db}, mlops_rocksdb_compaction_pending{db},
//   mlops_rocksdb_running_compactions{db}, mlops_rocksdb_block_cache_usage_bytes{db}  gauges
#pragma once

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace mlops {

class Db;

// Records one finished RPC. Thread-safe.
class RpcMetrics {
 public:
  explicit RpcMetrics(prometheus::Registry& registry);
  // `full_method` is gRPC's "/package.Service/Method"; `type` one of the grpc_type values.
  void Record(std::string_view full_method, std::string_view type, int code, double seconds);
  // When on, every finished RPC is also logged: method, code, milliseconds, the client's
  // x-request-id metadata when it sent one, and the error message.
  void set_log_rpcs(bool on) { log_rpcs_ = on; }
  bool log_rpcs() const { return log_rpcs_; }

 private:
  bool log_rpcs_ = false;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& latency_;
};

// A server interceptor factory that feeds `metrics` (which must outlive the server).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(RpcMetrics* metrics);

// process_* gauges read from /proc at each scrape.
std::shared_ptr<prometheus::Collectable> MakeProcessCollector();

// mlops_rocksdb_* gauges of the given databases, labelled db=<name>, read at each scrape. The
// databases must outlive every scrape (unregister the collector before closing them).
class RocksDbCollector : public prometheus::Collectable {
 public:
  void Add(std::string name, const Db* db);
  std::vector<prometheus::MetricFamily> Collect() const override;
  // The databases whose storage is not usable now (RocksDB reports a background error, as after a
  // failed write to a full disk), by name; empty when all are.
  std::vector<std::string> Unusable() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, const Db*>> dbs_;
};

// Helpers for collectors that build families at scrape time.
prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     prometheus::MetricType type = prometheus::MetricType::Gauge);
// Adds one sample (a counter value for counter families, a gauge value otherwise).
void AddSample(prometheus::MetricFamily* family, double value,
               std::vector<prometheus::ClientMetric::Label> labels = {});

// Reads this process's peak resident set size (VmHWM) in bytes from /proc/self/status; 0 on error.
uint64_t PeakRssBytes(int pid = 0);

}  // namespace mlops
