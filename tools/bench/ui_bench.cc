// The ui suite of mlops-bench: the web UI and the HTTP/JSON API (docs/ui.md).
//
//   mlops-bench ui [--json] [--runs=100000] [--curve_runs=10] [--points=1000000]
//                  [--queries=200] [--data_dir=DIR] [--seed_only] [--skip_browser]
//
//   --data_dir keeps the data set in DIR and reuses it on later runs (it is written once:
//   100,000 runs and 10 runs of 1,000,000 points take a minute); --seed_only writes it and stops
//   (the browser tests, tests/ui, load their 100,000 runs this way rather than by one RPC each).
//
// Figures:
//   grpc_search_p50_ms / _p99_ms     SearchRuns (a filter on a param, first page of 100 ordered by
//                                    a metric) over gRPC: the floor
//   http_search_p50_ms / _p99_ms     the same request as POST /api/v1/metadata/SearchRuns (JSON,
//                                    keep-alive connection, libcurl)
//   http_search_p99_ratio            http p99 / gRPC p99
//   http_json_overhead_ratio         median HTTP/JSON GetRun / median gRPC GetRun
//   ui_runs_table_first_paint_ms     headless Chromium: the runs page of the 100,000 runs, from
//                                    navigation start to the first page of rows on screen
//                                    (Performance API mark), median of 5 loads
//   ui_runs_table_all_loaded_ms      ... to every run loaded into the table
//   ui_chart_10x1m_ms                the compare page of the 10 runs of 1,000,000 points: from
//                                    navigation start to every curve drawn, median of 5
//   (the browser figures come from tools/bench/ui_browser.py, run with Debian's python3 and
//   selenium; --skip_browser leaves them out)
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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
#include "services/common/db.h"
#include "services/common/strings.h"
#include "services/metadata/metadata_store.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

namespace v1 = ::mlops::metadata::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  bool json = false;
  int64_t runs = 100000;
  int curve_runs = 10;
  int64_t points = 1000000;
  int queries = 200;
  std::string data_dir;
  bool seed_only = false;
  bool skip_browser = false;
};

// What the seeded data set holds (DIR/ui-seed.txt): the two experiments and the curve runs.
struct Seed {
  std::string runs_experiment, curves_experiment;
  std::vector<std::string> curve_runs;
};

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "mlops-bench ui: " << message << "\n";
  std::exit(1);
}

double Ms(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Writes the data set through the store in-process (the server is not running yet).
Seed Populate(const Options& o, const std::string& dir) {
  auto store = metadata::MetadataStore::Open(dir + "/metadata", Db::Options());
  if (!store.ok()) Die(store.status().ToString());
  Seed seed;
  v1::CreateExperimentRequest e;
  e.set_name("ui-100k-runs");
  seed.runs_experiment = (*store)->CreateExperiment(e)->id();
  e.set_name("ui-10x1m-points");
  seed.curves_experiment = (*store)->CreateExperiment(e)->id();

  const int threads_n = 2;
  std::vector<std::thread> threads;
  for (int t = 0; t < threads_n; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(99 + t);
      std::uniform_real_distribution<double> unit(0, 1);
      for (int64_t i = t; i < o.runs; i += threads_n) {
        v1::CreateRunRequest r;
        r.set_experiment_id(seed.runs_experiment);
        r.set_name(StrCat("run-", i));
        r.set_start_time_ms(1700000000000 + i * 1000);
        auto& params = *r.mutable_params();
        params["optimizer"] = (rng() % 2) ? "adam" : "sgd";
        params["lr"] = FormatDouble(0.0001 * static_cast<double>(1 + rng() % 100));
        params["batch_size"] = std::to_string(16 << (rng() % 5));
        params["layers"] = std::to_string(1 + rng() % 12);
        params["group"] = StrCat("g", rng() % 100);  // 1% per value: a selective filter
        (*r.mutable_tags())["team"] = (rng() % 3 == 0) ? "vision" : "nlp";
        auto run = (*store)->CreateRun(r);
        if (!run.ok()) Die(run.status().ToString());
        v1::LogBatchRequest batch;
        batch.set_run_id(run->id());
        for (const char* key : {"acc", "loss", "f1"}) {
          for (int step = 0; step < 2; ++step) {
            v1::Metric* m = batch.add_metrics();
            m->set_key(key);
            m->set_value(unit(rng));
            m->set_step(step);
            m->set_timestamp_ms(1700000000000 + step);
          }
        }
        if (absl::Status s = (*store)->LogBatch(batch).status(); !s.ok()) Die(s.ToString());
        v1::UpdateRunRequest done;
        done.mutable_run()->set_id(run->id());
        done.mutable_run()->set_status(v1::FINISHED);
        done.mutable_run()->set_end_time_ms(r.start_time_ms() + 60000 + i % 3600000);
        done.mutable_update_mask()->add_paths("status");
        done.mutable_update_mask()->add_paths("end_time_ms");
        if (absl::Status s = (*store)->UpdateRun(done).status(); !s.ok()) Die(s.ToString());
      }
    });
  }
  for (auto& t : threads) t.join();

  for (int c = 0; c < o.curve_runs; ++c) {
    v1::CreateRunRequest r;
    r.set_experiment_id(seed.curves_experiment);
    r.set_name(StrCat("curve-", c));
    auto run = (*store)->CreateRun(r);
    if (!run.ok()) Die(run.status().ToString());
    seed.curve_runs.push_back(run->id());
    std::mt19937_64 rng(7 + c);
    std::normal_distribution<double> noise(0, 0.02);
    const int64_t per_batch = 10000;  // the most points a batch may carry
    for (int64_t from = 0; from < o.points; from += per_batch) {
      v1::LogBatchRequest batch;
      batch.set_run_id(run->id());
      v1::MetricSeries* series = batch.add_series();
      series->set_key("loss");
      for (int64_t i = from; i < std::min(o.points, from + per_batch); ++i) {
        series->add_values(1.0 / (1.0 + 0.00001 * static_cast<double>(i)) * (1 + 0.1 * c) +
                           noise(rng));
        series->add_steps(i);
        series->add_timestamps_ms(1700000000000 + i);
      }
      if (absl::Status s = (*store)->LogBatch(batch).status(); !s.ok()) Die(s.ToString());
    }
    v1::UpdateRunRequest done;
    done.mutable_run()->set_id(run->id());
    done.mutable_run()->set_status(v1::FINISHED);
    done.mutable_update_mask()->add_paths("status");
    if (absl::Status s = (*store)->UpdateRun(done).status(); !s.ok()) Die(s.ToString());
  }
  if (!(*store)->mutable_db().CompactAll().ok()) Die("compaction failed");
  std::ofstream out(dir + "/ui-seed.txt");
  out << seed.runs_experiment << "\n" << seed.curves_experiment << "\n";
  for (const auto& id : seed.curve_runs) out << id << "\n";
  return seed;
}

bool LoadSeed(const std::string& dir, Seed* seed) {
  std::ifstream in(dir + "/ui-seed.txt");
  if (!(in >> seed->runs_experiment >> seed->curves_experiment)) return false;
  for (std::string id; in >> id;) seed->curve_runs.push_back(id);
  return true;
}

size_t Collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

// POSTs JSON on one kept-alive connection.
class HttpClient {
 public:
  explicit HttpClient(int port) : base_(StrCat("http://127.0.0.1:", port, "/api/v1/")) {
    curl_ = curl_easy_init();
    headers_ = curl_slist_append(nullptr, "Content-Type: application/json");
  }
  ~HttpClient() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }
  std::string Post(const std::string& route, const std::string& body) {
    std::string out;
    std::string url = base_ + route;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Collect);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &out);
    long status = 0;
    if (curl_easy_perform(curl_) != CURLE_OK) Die("http: " + route);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) Die(StrCat("http ", route, ": ", status, " ", out));
    return out;
  }

 private:
  std::string base_;
  CURL* curl_;
  curl_slist* headers_;
};

std::string JsonString(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

int RunUiBench(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json") {
      o.json = true;
    } else if (arg == "--seed_only") {
      o.seed_only = true;
    } else if (arg == "--skip_browser") {
      o.skip_browser = true;
    } else if (const char* v = FlagValue(argv[i], "--runs")) {
      o.runs = std::stoll(v);
    } else if (const char* v = FlagValue(argv[i], "--curve_runs")) {
      o.curve_runs = std::stoi(v);
    } else if (const char* v = FlagValue(argv[i], "--points")) {
      o.points = std::stoll(v);
    } else if (const char* v = FlagValue(argv[i], "--queries")) {
      o.queries = std::stoi(v);
    } else if (const char* v = FlagValue(argv[i], "--data_dir")) {
      o.data_dir = v;
    } else {
      std::cerr << "usage: mlops-bench ui [--json] [--runs=N] [--curve_runs=N] [--points=N] "
                   "[--queries=N] [--data_dir=DIR] [--seed_only] [--skip_browser]\n";
      return 2;
    }
  }
  auto log = [&](const std::string& line) {
    if (!o.json) std::cerr << line << "\n";
  };
  bool temporary = o.data_dir.empty();
  std::string dir = temporary ? StrCat(std::filesystem::temp_directory_path().string(),
                                       "/mlops-bench-ui-", getpid())
                              : o.data_dir;
  std::filesystem::create_directories(dir);
  Seed seed;
  if (!LoadSeed(dir, &seed)) {
    auto start = Clock::now();
    log(StrCat("writing ", o.runs, " runs and ", o.curve_runs, " runs of ", o.points,
               " points into ", dir));
    seed = Populate(o, dir);
    log(StrCat("written in ", static_cast<int>(Ms(start) / 1000), " s"));
  }
  if (o.seed_only) {
    std::cout << seed.runs_experiment << " " << seed.curves_experiment << "\n";
    return 0;
  }

  std::map<std::string, double> figures;
  int pid = 0;
  // The HTTP port too (the last --metrics_port given wins over SpawnServer's -1).
  int grpc_port =
      SpawnServer(BenchDir() + "/../server/mlops-server", dir, &pid, {"--metrics_port=0"});
  int http_port = 0;
  {
    std::ifstream in(dir + ".ports");
    int ignored = 0;
    in >> ignored >> http_port;
  }
  if (http_port <= 0) Die("no HTTP port in " + dir + ".ports");
  auto channel =
      grpc::CreateChannel(StrCat("127.0.0.1:", grpc_port), grpc::InsecureChannelCredentials());
  auto stub = v1::MetadataService::NewStub(channel);
  HttpClient http(http_port);

  // SearchRuns: the same query both ways, alternated so that both meet the same noise.
  std::vector<double> grpc_ms, http_ms;
  std::string some_run;
  for (int i = -10; i < o.queries; ++i) {
    std::string filter = StrCat("params.group = 'g", (i + 100) % 100, "'");
    v1::SearchRunsRequest request;
    request.add_experiment_ids(seed.runs_experiment);
    request.set_filter(filter);
    request.add_order_by("metrics.acc DESC");
    request.set_page_size(100);
    std::string body = StrCat("{\"experimentIds\": [", JsonString(seed.runs_experiment),
                              "], \"filter\": ", JsonString(filter),
                              ", \"orderBy\": [\"metrics.acc DESC\"], \"pageSize\": 100}");
    // Each pair in turn starts with the other protocol: the second of a pair finds the blocks
    // the first read in the cache.
    double g = 0, h = 0;
    std::string answer;
    auto grpc_call = [&] {
      v1::SearchRunsResponse response;
      grpc::ClientContext context;
      auto start = Clock::now();
      grpc::Status status = stub->SearchRuns(&context, request, &response);
      g = Ms(start);
      if (!status.ok()) Die("grpc SearchRuns: " + status.error_message());
      if (response.runs_size() == 0) Die("SearchRuns found nothing for " + filter);
      some_run = response.runs(0).id();
    };
    auto http_call = [&] {
      auto start = Clock::now();
      answer = http.Post("metadata/SearchRuns", body);
      h = Ms(start);
    };
    if (i % 2 == 0) {
      grpc_call();
      http_call();
    } else {
      http_call();
      grpc_call();
    }
    if (answer.find(some_run) == std::string::npos) Die("HTTP SearchRuns differs from gRPC");
    if (i >= 0) {
      grpc_ms.push_back(g);
      http_ms.push_back(h);
    }
  }
  figures["grpc_search_p50_ms"] = Percentile(grpc_ms, 0.5);
  figures["grpc_search_p99_ms"] = Percentile(grpc_ms, 0.99);
  figures["http_search_p50_ms"] = Percentile(http_ms, 0.5);
  figures["http_search_p99_ms"] = Percentile(http_ms, 0.99);
  figures["http_search_p99_ratio"] =
      figures["http_search_p99_ms"] / std::max(1e-9, figures["grpc_search_p99_ms"]);

  // GetRun: the JSON layer's own cost on a small call.
  grpc_ms.clear();
  http_ms.clear();
  std::string body = StrCat("{\"runId\": ", JsonString(some_run), "}");
  for (int i = -10; i < o.queries * 5; ++i) {
    v1::GetRunRequest request;
    request.set_run_id(some_run);
    v1::Run run;
    grpc::ClientContext context;
    auto start = Clock::now();
    if (!stub->GetRun(&context, request, &run).ok()) Die("grpc GetRun");
    double g = Ms(start);
    start = Clock::now();
    http.Post("metadata/GetRun", body);
    double h = Ms(start);
    if (i >= 0) {
      grpc_ms.push_back(g);
      http_ms.push_back(h);
    }
  }
  figures["grpc_get_run_p50_ms"] = Percentile(grpc_ms, 0.5);
  figures["http_get_run_p50_ms"] = Percentile(http_ms, 0.5);
  figures["http_json_overhead_ratio"] =
      figures["http_get_run_p50_ms"] / std::max(1e-9, figures["grpc_get_run_p50_ms"]);

  if (!o.skip_browser) {
    std::string runs;
    for (const auto& id : seed.curve_runs) runs += (runs.empty() ? "" : ",") + id;
    std::string command = StrCat("/usr/bin/python3 " MLOPS_SOURCE_DIR "/tools/bench/ui_browser.py",
                                 " --url http://127.0.0.1:", http_port, " --experiment ",
                                 seed.runs_experiment, " --runs ", runs, " --expect_runs ", o.runs);
    log("browser: " + command);
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) Die("cannot run " + command);
    char line[512];
    while (std::fgets(line, sizeof(line), pipe) != nullptr) {
      std::istringstream in(line);
      std::string key;
      double value;
      if (in >> key >> value) figures[key] = value;
    }
    if (pclose(pipe) != 0) Die("the browser measurement failed: " + command);
  }
  StopServer(pid);
  if (temporary) std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".ports");
  PrintFigures(figures, o.json);
  return 0;
}

}  // namespace mlops::bench
