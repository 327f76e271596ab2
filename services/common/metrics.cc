#include "services/common/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "services/common/db.h"
#include "services/common/logging.h"
#include "services/common/rpc_guard.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops {
namespace {

const std::vector<double>& LatencyBuckets() {
  static const std::vector<double> buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                              1,      2.5,     5,      10,    30};
  return buckets;
}

class RpcMetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  RpcMetricsInterceptor(const char* method, const char* type, RpcMetrics* metrics)
      : method_(method == nullptr ? "" : method),
        type_(type),
        metrics_(metrics),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (metrics_->log_rpcs() &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      auto* metadata = methods->GetRecvInitialMetadata();
      auto it = metadata->find("x-request-id");
      if (it != metadata->end()) request_id_.assign(it->second.data(), it->second.size());
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      grpc::Status status = methods->GetSendStatus();
      metrics_->Record(method_, type_, status.error_code(), seconds);
      std::string subject = TakeCallSubject();
      if (metrics_->log_rpcs()) {
        LogFields fields = {{"method", method_},
                            {"code", StatusCodeName(status.error_code())},
                            {"ms", FormatDouble(std::round(seconds * 1e5) / 100)}};
        if (!request_id_.empty()) fields.emplace_back("request_id", request_id_);
        if (!subject.empty()) fields.emplace_back("subject", subject);
        if (!status.ok()) fields.emplace_back("error", status.error_message());
        LogInfo("rpc", fields);
      }
    }
    methods->Proceed();
  }

 private:
  std::string request_id_;
  std::string method_;
  const char* type_;
  RpcMetrics* metrics_;
  std::chrono::steady_clock::time_point start_;
};

class RpcMetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    using Type = grpc::experimental::ServerRpcInfo::Type;
    const char* type = info->type() == Type::UNARY              ? "unary"
                       : info->type() == Type::CLIENT_STREAMING ? "client_stream"
                       : info->type() == Type::SERVER_STREAMING ? "server_stream"
                                                                : "bidi_stream";
    return new RpcMetricsInterceptor(info->method(), type, metrics_);
  }

 private:
  RpcMetrics* metrics_;
};

class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector() {
    // Start time from /proc/self/stat field 22 (clock ticks after boot) and the boot time.
    start_time_seconds_ =
        static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count()) /
        1000.0;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    long page = sysconf(_SC_PAGESIZE);
    long ticks = sysconf(_SC_CLK_TCK);
    std::ifstream stat("/proc/self/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after the command name (which is in parentheses and may contain spaces).
    size_t close = content.rfind(')');
    double utime = 0, stime = 0, threads = 0, vsize = 0, rss = 0;
    if (close != std::string::npos) {
      std::istringstream fields(content.substr(close + 2));
      std::vector<std::string> f;
      std::string token;
      while (fields >> token) f.push_back(token);
      // f[0] is field 3 (state); field N is f[N - 3].
      if (f.size() > 21) {
        utime = std::stod(f[11]);
        stime = std::stod(f[12]);
        threads = std::stod(f[17]);
        vsize = std::stod(f[20]);
        rss = std::stod(f[21]);
      }
    }
    auto cpu = GaugeFamily("process_cpu_seconds_total", "Total user and system CPU time spent.",
                           prometheus::MetricType::Counter);
    AddSample(&cpu, (utime + stime) / static_cast<double>(ticks));
    out.push_back(std::move(cpu));
    auto resident = GaugeFamily("process_resident_memory_bytes", "Resident memory size in bytes.");
    AddSample(&resident, rss * static_cast<double>(page));
    out.push_back(std::move(resident));
    auto virt = GaugeFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.");
    AddSample(&virt, vsize);
    out.push_back(std::move(virt));
    auto thread_family = GaugeFamily("process_threads", "Number of OS threads in the process.");
    AddSample(&thread_family, threads);
    out.push_back(std::move(thread_family));
    auto fds = GaugeFamily("process_open_fds", "Number of open file descriptors.");
    AddSample(&fds, static_cast<double>(CountOpenFds()));
    out.push_back(std::move(fds));
    auto start = GaugeFamily("process_start_time_seconds",
                             "Start time of the process since unix epoch in seconds.");
    AddSample(&start, start_time_seconds_);
    out.push_back(std::move(start));
    return out;
  }

 private:
  static int CountOpenFds() {
    int count = 0;
    if (DIR* dir = opendir("/proc/self/fd")) {
      while (struct dirent* entry = readdir(dir)) {
        if (entry->d_name[0] != '.') ++count;
      }
      closedir(dir);
    }
    return count;
  }

  double start_time_seconds_ = 0;
};

}  // namespace

RpcMetrics::RpcMetrics(prometheus::Registry& registry)
    : handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by service, method and status code.")
                   .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("grpc_server_handling_seconds")
                   .Help("Time from the start of an RPC to its status, in seconds.")
                   .Register(registry)) {}

void RpcMetrics::Record(std::string_view full_method, std::string_view type, int code,
                        double seconds) {
  std::string_view service, method;
  if (!full_method.empty() && full_method[0] == '/') full_method.remove_prefix(1);
  size_t slash = full_method.find('/');
  if (slash == std::string_view::npos) {
    method = full_method;
  } else {
    service = full_method.substr(0, slash);
    method = full_method.substr(slash + 1);
  }
  std::map<std::string, std::string> labels = {{"grpc_type", std::string(type)},
                                               {"grpc_service", std::string(service)},
                                               {"grpc_method", std::string(method)}};
  latency_.Add(labels, LatencyBuckets()).Observe(seconds);
  labels["grpc_code"] = StatusCodeName(code);
  handled_.Add(labels).Increment();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeRpcMetricsInterceptorFactory(RpcMetrics* metrics) {
  return std::make_unique<RpcMetricsInterceptorFactory>(metrics);
}

std::shared_ptr<prometheus::Collectable> MakeProcessCollector() {
  return std::make_shared<ProcessCollector>();
}

void RocksDbCollector::Add(std::string name, const Db* db) {
  std::lock_guard<std::mutex> lock(mu_);
  dbs_.emplace_back(std::move(name), db);
}

std::vector<std::string> RocksDbCollector::Unusable() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, db] : dbs_) {
    uint64_t errors = 0;
    if (!db->raw()->GetIntProperty("rocksdb.background-errors", &errors) || errors > 0) {
      out.push_back(name);
    }
  }
  return out;
}

std::vector<prometheus::MetricFamily> RocksDbCollector::Collect() const {
  struct Spec {
    const char* name;
    const char* help;
    const char* property;
    bool per_db = false;  // the block cache is shared by every column family: read it once.
  };
  static const Spec kSpecs[] = {
      {"mlops_rocksdb_estimate_num_keys", "Estimated number of keys.", "rocksdb.estimate-num-keys"},
      {"mlops_rocksdb_live_sst_bytes", "Bytes of live SST files.", "rocksdb.live-sst-files-size"},
      {"mlops_rocksdb_memtable_bytes", "Bytes in all memtables.", "rocksdb.size-all-mem-tables"},
      {"mlops_rocksdb_compaction_pending", "1 when a compaction is pending.",
       "rocksdb.compaction-pending"},
      {"mlops_rocksdb_running_compactions", "Compactions running now.",
       "rocksdb.num-running-compactions"},
      {"mlops_rocksdb_block_cache_usage_bytes", "Bytes held in the block cache.",
       "rocksdb.block-cache-usage", true},
  };
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<prometheus::MetricFamily> out;
  for (const Spec& spec : kSpecs) {
    auto family = GaugeFamily(spec.name, spec.help);
    for (const auto& [name, db] : dbs_) {
      uint64_t value = 0;
      if (spec.per_db) {
        db->raw()->GetIntProperty(spec.property, &value);
      } else {
        value = db->IntProperty(spec.property);
      }
      AddSample(&family, static_cast<double>(value), {{"db", name}});
    }
    out.push_back(std::move(family));
  }
  return out;
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help,
                                     prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

void AddSample(prometheus::MetricFamily* family, double value,
               std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family->type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family->metric.push_back(std::move(metric));
}

uint64_t PeakRssBytes(int pid) {
  std::string path = pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return std::stoull(line.substr(6)) * 1024;  // reported in kB.
    }
  }
  return 0;
}

}  // namespace mlops
