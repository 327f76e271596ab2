// The metadata suite of mlops-bench.
//
//   mlops-bench metadata [--json] [--runs=1000000] [--clients=4] [--batches=500]
//                        [--batch_points=1000] [--queries=200] [--metadata_bin=PATH]
//                        [--search_dir=DIR] [--skip_ingest] [--skip_search] [--skip_lineage]
//                        [--lineage_runs=100000] [--lineage_dir=DIR] [--lineage_clients=8]
//                        [--put_executions=100000]
//   (the lineage part is described in lineage_bench.cc)
//   --search_dir keeps the search data set in DIR and reuses it on later runs (medians of several
//   runs without writing a million runs each time); --skip_ingest runs the search part only.
//
// metadata suite:
//   ingestion  metric points per second through LogBatch (batches of --batch_points, --clients
//              concurrent clients, each to its own run) against a child mlops-metadata server,
//              and the floor: the same point records written straight into RocksDB (same options)
//              with WriteBatch in this process, by as many threads.
//   search     --runs runs (10 params, 5 metrics, 3 tags each) in one experiment, written through
//              the store in-process, then served by a child mlops-metadata; latency of a selective
//              indexed query (1% of runs by a param, a metric range, first page of 100 ordered by a
//              metric) and of an unselective one (90% of runs), p50 and p99 over --queries. The
//              data set is compacted after the load, so queries meet a settled database.
//   peak RSS   VmHWM of each server process.
//   TLS+auth   ingestion and the selective search again against a server with TLS (a P-256
//              certificate made with openssl) and token authentication (--auth_token_file): the
//              clients present an admin token over TLS. Reported as *_tls_auth figures and their
//              ratios to the plain ones of the same run (--skip_tls_auth leaves them out).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "services/common/auth.h"
#include "services/common/channel.h"
#include "services/common/db.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/metrics.h"
#include "services/common/strings.h"
#include "services/metadata/metadata_store.h"
#include "tools/bench/bench.h"

extern char** environ;

namespace {

namespace v1 = ::mlops::metadata::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  bool json = false;
  int64_t runs = 1000000;
  int clients = 4;
  int batches = 500;  // per client
  int batch_points = 1000;
  int queries = 200;
  std::string metadata_bin;
  std::string work_dir;
  std::string search_dir;  // --search_dir: keep the populated search data here and reuse it
  bool skip_ingest = false;
  bool skip_search = false;
  bool skip_lineage = false;
  bool skip_tls_auth = false;
  mlops::bench::LineageOptions lineage;
  // Set for the TLS+auth rounds: what the server is started with and what clients present.
  std::vector<std::string> server_args;
  mlops::ChannelSecurity security;
};

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// A child mlops-metadata process on a free port.
class Server {
 public:
  Server(const std::string& binary, const std::string& data_dir, const Options& o)
      : security_(o.security) {
    port_ = mlops::bench::SpawnServer(binary, data_dir, &pid_, o.server_args);
  }
  ~Server() { mlops::bench::StopServer(pid_); }
  std::unique_ptr<v1::MetadataService::Stub> NewStub() const {
    // A channel per client so that clients do not share one HTTP/2 connection.
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxSendMessageSize(64 << 20);
    channel_args.SetInt("mlops.bench.client", next_client_++);
    // With TLS the certificate names localhost (the target name is checked against it).
    std::string host = security_.ca_pem.empty() ? "127.0.0.1" : "localhost";
    return v1::MetadataService::NewStub(
        mlops::SecureChannel(host + ":" + std::to_string(port_), security_, channel_args));
  }
  double PeakRssMb() const { return static_cast<double>(mlops::PeakRssBytes(pid_)) / (1 << 20); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  mlops::ChannelSecurity security_;
  mutable int next_client_ = 0;
};

template <typename Fn>
void Check(const grpc::Status& status, Fn what) {
  if (!status.ok()) {
    std::cerr << what() << ": " << status.error_code() << " " << status.error_message() << "\n";
    std::exit(1);
  }
}

std::string MetricKey(int i) { return "m" + std::to_string(i % 5); }

// The floor: the same point records, written by `threads` threads straight into RocksDB.
double IngestFloor(const Options& o) {
  std::string dir = o.work_dir + "/floor";
  // The same options as the metadata store's metrics column family.
  mlops::Db::Options options;
  options.insert_hint_prefixes.emplace_back("metrics",
                                            mlops::metadata::MetricSeriesPrefixExtractor());
  auto db = mlops::Db::Open(dir, {"metrics"}, options);
  if (!db.ok()) {
    std::cerr << db.status() << "\n";
    std::exit(1);
  }
  rocksdb::ColumnFamilyHandle* cf = (*db)->Cf("metrics");
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&] {
      std::string run_id = mlops::NewId();
      std::string key;
      int64_t ts = mlops::NowMs();
      for (int b = 0; b < o.batches; ++b) {
        rocksdb::WriteBatch batch;
        for (int i = 0; i < o.batch_points; ++i) {
          key = run_id;
          mlops::AppendOrderedString(&key, MetricKey(i));
          mlops::AppendOrderedInt64(&key, static_cast<int64_t>(b) * o.batch_points + i);
          mlops::AppendOrderedInt64(&key, ts);
          double value = 0.001 * i;
          batch.Put(cf, key, rocksdb::Slice(reinterpret_cast<const char*>(&value), 8));
        }
        if (!(*db)->Write(&batch).ok()) std::exit(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = Seconds(start);
  return static_cast<double>(o.clients) * o.batches * o.batch_points / seconds;
}

struct IngestResult {
  double points_per_s = 0;
  double peak_rss_mb = 0;
};

IngestResult IngestServer(const Options& o) {
  Server server(o.metadata_bin, o.work_dir + (o.server_args.empty() ? "/ingest" : "/ingest-tls"),
                o);
  auto stub = server.NewStub();
  grpc::ClientContext c1;
  v1::CreateExperimentRequest e;
  e.set_name("bench-ingest");
  v1::Experiment experiment;
  Check(stub->CreateExperiment(&c1, e, &experiment), [] { return "create experiment"; });
  std::vector<std::string> runs;
  for (int c = 0; c < o.clients; ++c) {
    grpc::ClientContext context;
    v1::CreateRunRequest r;
    r.set_experiment_id(experiment.id());
    v1::Run run;
    Check(stub->CreateRun(&context, r, &run), [] { return "create run"; });
    runs.push_back(run.id());
  }
  // Batches are built before the clock starts: the figure is the server's, not the client's.
  std::vector<std::vector<v1::LogBatchRequest>> requests(o.clients);
  int64_t ts = mlops::NowMs();
  for (int c = 0; c < o.clients; ++c) {
    for (int b = 0; b < o.batches; ++b) {
      v1::LogBatchRequest request;
      request.set_run_id(runs[c]);
      for (int i = 0; i < o.batch_points; ++i) {
        v1::Metric* m = request.add_metrics();
        m->set_key(MetricKey(i));
        m->set_value(0.001 * i);
        m->set_step(static_cast<int64_t>(b) * o.batch_points + i);
        m->set_timestamp_ms(ts);
      }
      requests[c].push_back(std::move(request));
    }
  }
  std::vector<std::unique_ptr<v1::MetadataService::Stub>> stubs;
  for (int c = 0; c < o.clients; ++c) stubs.push_back(server.NewStub());
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      for (const auto& request : requests[c]) {
        grpc::ClientContext context;
        v1::LogBatchResponse response;
        Check(stubs[c]->LogBatch(&context, request, &response), [] { return "LogBatch"; });
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = Seconds(start);
  IngestResult result;
  result.points_per_s = static_cast<double>(o.clients) * o.batches * o.batch_points / seconds;
  result.peak_rss_mb = server.PeakRssMb();
  return result;
}

// Writes o.runs runs through the store in-process; returns the experiment id.
std::string Populate(const Options& o, const std::string& data_dir, double* seconds) {
  auto start = Clock::now();
  auto store = mlops::metadata::MetadataStore::Open(data_dir + "/metadata", mlops::Db::Options());
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    std::exit(1);
  }
  v1::CreateExperimentRequest e;
  e.set_name("bench-search");
  std::string experiment = (*store)->CreateExperiment(e)->id();
  const int threads_n = 2;
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1234 + t);
      std::uniform_real_distribution<double> unit(0, 1);
      for (int64_t i = t; i < o.runs; i += threads_n) {
        v1::CreateRunRequest r;
        r.set_experiment_id(experiment);
        auto& params = *r.mutable_params();
        params["p0"] = "v" + std::to_string(rng() % 100);  // 1% per value
        params["p1"] = "v" + std::to_string(rng() % 10);
        params["optimizer"] = (rng() % 2) ? "adam" : "sgd";
        params["lr"] = mlops::FormatDouble(0.0001 * static_cast<double>(1 + rng() % 100));
        params["batch_size"] = std::to_string(16 << (rng() % 5));
        params["epochs"] = std::to_string(1 + rng() % 50);
        params["seed"] = std::to_string(rng() % 100000);
        params["dropout"] = mlops::FormatDouble(static_cast<double>(rng() % 50) / 100);
        params["layers"] = std::to_string(1 + rng() % 12);
        params["dataset"] = "ds" + std::to_string(rng() % 20);
        auto& tags = *r.mutable_tags();
        tags["t0"] = "x" + std::to_string(rng() % 10);
        tags["team"] = (rng() % 3 == 0) ? "vision" : "nlp";
        tags["user"] = "u" + std::to_string(rng() % 1000);
        auto run = (*store)->CreateRun(r);
        if (!run.ok()) {
          std::cerr << run.status() << "\n";
          std::exit(1);
        }
        v1::LogBatchRequest batch;
        batch.set_run_id(run->id());
        for (int m = 0; m < 5; ++m) {
          v1::Metric* metric = batch.add_metrics();
          metric->set_key("m" + std::to_string(m));
          metric->set_value(unit(rng));
          metric->set_step(1);
          metric->set_timestamp_ms(1);
        }
        if (!(*store)->LogBatch(batch).ok()) std::exit(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  *seconds = Seconds(start);
  // Search is measured on a settled database, as a server finds it once background compaction has
  // caught up with a bulk load (otherwise compaction takes one of the two cores during the
  // queries).
  if (!(*store)->mutable_db().CompactAll().ok()) std::exit(1);
  return experiment;
}

struct Latency {
  double p50 = 0, p99 = 0;
  int64_t returned = 0;
};

Latency TimeQueries(v1::MetadataService::Stub* stub, const std::string& experiment,
                    const std::function<std::string(int)>& filter, const std::string& order,
                    int n) {
  std::vector<double> ms;
  int64_t returned = 0;
  for (int i = -10; i < n; ++i) {  // 10 warm-up queries
    v1::SearchRunsRequest request;
    request.add_experiment_ids(experiment);
    request.set_filter(filter(i + 10));
    request.add_order_by(order);
    request.set_page_size(100);
    grpc::ClientContext context;
    v1::SearchRunsResponse response;
    auto start = Clock::now();
    Check(stub->SearchRuns(&context, request, &response),
          [&] { return "search " + request.filter(); });
    if (i >= 0) {
      ms.push_back(Seconds(start) * 1000);
      returned += response.runs_size();
    }
  }
  return {Percentile(ms, 0.5), Percentile(ms, 0.99), n > 0 ? returned / n : 0};
}

// `o` for the TLS+auth rounds: a CA and a server certificate for localhost made with openssl in
// the work dir (once), a token file with one admin token, and clients presenting it over TLS.
Options SecuredOptions(const Options& o) {
  std::string dir = o.work_dir + "/tls";
  if (!std::filesystem::exists(dir + "/server.pem")) {
    std::filesystem::create_directories(dir);
    std::string script =
        "set -e; cd '" + dir +
        "'; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca 2>/dev/null; "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key "
        "-out server.csr -subj /CN=localhost 2>/dev/null; "
        "echo subjectAltName=DNS:localhost > ext; "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
        "server.pem -days 2 -extfile ext 2>/dev/null";
    if (std::system(script.c_str()) != 0) {
      std::cerr << "openssl could not make the benchmark's certificates\n";
      std::exit(1);
    }
  }
  static const std::string token = mlops::NewToken();
  if (!std::filesystem::exists(dir + "/tokens.yaml")) {
    mlops::TokenEntry entry;
    entry.principal.subject = "bench";
    entry.principal.grants["*"] = mlops::Role::kAdmin;
    entry.sha256 = mlops::TokenHash(token);
    if (!mlops::AppendTokenEntry(dir + "/tokens.yaml", entry).ok()) std::exit(1);
  }
  Options out = o;
  out.server_args = {"--tls_cert=" + dir + "/server.pem", "--tls_key=" + dir + "/server.key",
                     "--auth_token_file=" + dir + "/tokens.yaml"};
  std::ifstream in(dir + "/ca.pem");
  std::stringstream pem;
  pem << in.rdbuf();
  out.security.ca_pem = pem.str();
  out.security.token = [] { return token; };
  return out;
}

// The selective query: 1% of runs by a param, half of those by a metric.
std::string SelectiveFilter(int i) {
  return "params.p0 = \"v" + std::to_string(i % 100) + "\" and metrics.m1 > 0.5";
}

int Usage() {
  std::cerr
      << "usage: mlops-bench metadata [--json] [--runs=N] [--clients=N] [--batches=N] "
         "[--batch_points=N] [--queries=N] [--metadata_bin=PATH] [--search_dir=DIR] "
         "[--skip_ingest] [--skip_search] [--skip_lineage] [--skip_tls_auth] [--lineage_runs=N] "
         "[--lineage_dir=DIR] [--lineage_clients=N] [--put_executions=N]\n";
  return 2;
}

}  // namespace

namespace mlops::bench {

int RunMetadataBench(int argc, char** argv) {
  Options o;
  std::string self = mlops::bench::BenchDir();
  o.metadata_bin = self + "/../../services/metadata/mlops-metadata";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) { return mlops::bench::FlagValue(argv[i], name); };
    if (arg == "--json") {
      o.json = true;
    } else if (auto v = value("--runs")) {
      o.runs = std::atoll(v);
    } else if (auto v = value("--clients")) {
      o.clients = std::atoi(v);
    } else if (auto v = value("--batches")) {
      o.batches = std::atoi(v);
    } else if (auto v = value("--batch_points")) {
      o.batch_points = std::atoi(v);
    } else if (auto v = value("--queries")) {
      o.queries = std::atoi(v);
    } else if (auto v = value("--metadata_bin")) {
      o.metadata_bin = v;
    } else if (auto v = value("--search_dir")) {
      o.search_dir = v;
    } else if (arg == "--skip_ingest") {
      o.skip_ingest = true;
    } else if (arg == "--skip_search") {
      o.skip_search = true;
    } else if (arg == "--skip_tls_auth") {
      o.skip_tls_auth = true;
    } else if (arg == "--skip_lineage") {
      o.skip_lineage = true;
    } else if (auto v = value("--lineage_runs")) {
      o.lineage.pipeline_runs = std::atoll(v);
    } else if (auto v = value("--lineage_dir")) {
      o.lineage.dir = v;
    } else if (auto v = value("--lineage_clients")) {
      o.lineage.clients = std::atoi(v);
    } else if (auto v = value("--put_executions")) {
      o.lineage.puts = std::atoll(v);
    } else {
      return Usage();
    }
  }
  if (!std::filesystem::exists(o.metadata_bin)) {
    std::cerr << "mlops-metadata not found at " << o.metadata_bin << " (use --metadata_bin)\n";
    return 2;
  }
  char tmpl[] = "/tmp/mlops-bench-XXXXXX";
  o.work_dir = mkdtemp(tmpl);
  // Progress goes to stderr even with --json (stdout has only the figures): a suite that stalls
  // says where.
  auto log = [&](const std::string& line) { std::cerr << line << "\n"; };

  std::map<std::string, double> figures;
  if (!o.skip_ingest) {
    log("ingest: floor (raw RocksDB WriteBatch) ...");
    figures["ingest_floor_points_per_s"] = IngestFloor(o);
    log("ingest: LogBatch through mlops-metadata ...");
    IngestResult ingest = IngestServer(o);
    figures["ingest_points_per_s"] = ingest.points_per_s;
    figures["ingest_ratio_to_floor"] = ingest.points_per_s / figures["ingest_floor_points_per_s"];
    figures["ingest_clients"] = o.clients;
    figures["ingest_batch_points"] = o.batch_points;
    figures["ingest_server_peak_rss_mb"] = ingest.peak_rss_mb;
    if (!o.skip_tls_auth) {
      log("ingest: LogBatch over TLS with a token ...");
      IngestResult secured = IngestServer(SecuredOptions(o));
      figures["ingest_points_per_s_tls_auth"] = secured.points_per_s;
      figures["ingest_tls_auth_ratio"] = secured.points_per_s / ingest.points_per_s;
    }
  }

  if (!o.skip_search) {
    std::string data_dir = o.search_dir.empty() ? o.work_dir + "/search" : o.search_dir;
    std::string experiment;
    if (!o.search_dir.empty() && std::filesystem::exists(data_dir + "/experiment")) {
      std::ifstream(data_dir + "/experiment") >> experiment >> o.runs;
      log("search: reusing " + std::to_string(o.runs) + " runs in " + data_dir);
      auto store =
          mlops::metadata::MetadataStore::Open(data_dir + "/metadata", mlops::Db::Options());
      if (!store.ok() || !(*store)->mutable_db().CompactAll().ok()) std::exit(1);
    } else {
      log("search: writing " + std::to_string(o.runs) + " runs ...");
      double populate_s = 0;
      experiment = Populate(o, data_dir, &populate_s);
      figures["search_populate_runs_per_s"] = static_cast<double>(o.runs) / populate_s;
      if (!o.search_dir.empty())
        std::ofstream(data_dir + "/experiment") << experiment << " " << o.runs;
    }
    figures["search_runs"] = static_cast<double>(o.runs);
    {
      Server server(o.metadata_bin, data_dir, o);
      auto stub = server.NewStub();
      log("search: selective queries ...");
      Latency selective =
          TimeQueries(stub.get(), experiment, SelectiveFilter, "metrics.m0 DESC", o.queries);
      log("search: unselective queries ...");
      Latency unselective = TimeQueries(
          stub.get(), experiment,
          [](int i) {
            return "metrics.m1 > 0.1 and tags.t0 != \"x" + std::to_string(i % 10) + "\"";
          },
          "metrics.m0 DESC", std::max(10, o.queries / 4));
      figures["search_selective_p50_ms"] = selective.p50;
      figures["search_selective_p99_ms"] = selective.p99;
      figures["search_selective_runs_returned"] = static_cast<double>(selective.returned);
      figures["search_unselective_p50_ms"] = unselective.p50;
      figures["search_unselective_p99_ms"] = unselective.p99;
      figures["search_unselective_runs_returned"] = static_cast<double>(unselective.returned);
      figures["search_server_peak_rss_mb"] = server.PeakRssMb();
    }
    if (!o.skip_tls_auth) {
      Options secured = SecuredOptions(o);
      Server server(o.metadata_bin, data_dir, secured);
      auto stub = server.NewStub();
      log("search: selective queries over TLS with a token ...");
      Latency selective =
          TimeQueries(stub.get(), experiment, SelectiveFilter, "metrics.m0 DESC", o.queries);
      figures["search_selective_p99_ms_tls_auth"] = selective.p99;
      figures["search_selective_p50_ms_tls_auth"] = selective.p50;
      figures["search_selective_p99_tls_auth_ratio"] =
          selective.p99 / figures["search_selective_p99_ms"];
    }
  }
  if (!o.skip_lineage) {
    o.lineage.metadata_bin = o.metadata_bin;
    o.lineage.work_dir = o.work_dir;
    o.lineage.queries = o.queries;
    mlops::bench::RunLineageBench(o.lineage, &figures, log);
  }
  figures["server_peak_rss_mb"] =
      std::max({figures["ingest_server_peak_rss_mb"], figures["search_server_peak_rss_mb"],
                figures["lineage_server_peak_rss_mb"]});
  if (o.skip_ingest) figures.erase("ingest_server_peak_rss_mb");
  if (o.skip_search) figures.erase("search_server_peak_rss_mb");
  if (o.skip_lineage) figures.erase("lineage_server_peak_rss_mb");
  std::error_code ec;
  std::filesystem::remove_all(o.work_dir, ec);

  PrintFigures(figures, o.json);
  return 0;
}

}  // namespace mlops::bench
