// The lineage part of `mlops-bench metadata` (see docs/performance.md):
//
//   graph      --lineage_runs pipeline runs (default 100,000), each 5 executions and 10 new
//              artifacts reading 3 of 100 shared datasets: 500,000 executions and 1,000,100
//              artifacts, written through LineageStore in-process (kept in --lineage_dir for
//              reuse), then served by a child mlops-metadata. lineage_3hop_p*_ms: GetLineage
//              upstream, 3 hops, from a random run's model, over gRPC.
//   writes     put_execution_per_s: PutExecution over gRPC (2 inputs, 2 new outputs) from
//              --lineage_clients client threads against a fresh server; the floor
//              (put_execution_floor_per_s) writes WriteBatches of the same 11 keys and value
//              sizes straight into RocksDB from as many threads. put_execution_per_s streams the
//              calls (PutExecutionStream, one stream per client); put_execution_unary_per_s makes
//              one unary call each; put_execution_inprocess_per_s calls LineageStore directly;
//              unary_rpc_floor_per_s is the same clients' unary calls that do no storage work.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "services/common/db.h"
#include "services/common/encoding.h"
#include "services/common/metrics.h"
#include "services/common/strings.h"
#include "services/metadata/lineage_store.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

namespace v1 = ::mlops::metadata::v1;
using Clock = std::chrono::steady_clock;

constexpr int kSharedDatasets = 100;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "mlops-bench metadata (lineage): " << what << "\n";
  std::exit(1);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

v1::PutExecutionRequest::ArtifactAndEvent* Input(v1::PutExecutionRequest* r, int64_t id,
                                                 const char* path) {
  auto* a = r->add_artifacts();
  a->mutable_artifact()->set_id(id);
  a->set_event_type(v1::Event::INPUT);
  a->set_path(path);
  return a;
}

void Output(v1::PutExecutionRequest* r, const char* type, const std::string& name,
            const char* path) {
  auto* a = r->add_artifacts();
  a->mutable_artifact()->set_type(type);
  a->mutable_artifact()->set_name(name);
  a->set_event_type(v1::Event::OUTPUT);
  a->set_path(path);
}

// One pipeline run: Transform, Train, Evaluate, Validate, Deploy. Returns the model's id.
int64_t WritePipelineRun(metadata::LineageStore& store, const std::vector<int64_t>& shared,
                         int64_t run, std::mt19937_64& rng) {
  std::string prefix = "run" + std::to_string(run) + "/";
  auto put = [&](v1::PutExecutionRequest& r) {
    auto* context = r.add_contexts();
    context->set_type("PipelineRun");
    context->set_name("pipeline-" + std::to_string(run));
    auto response = store.PutExecution(r);
    if (!response.ok()) Die(response.status().ToString());
    return *response;
  };
  v1::PutExecutionRequest transform;
  transform.mutable_execution()->set_type("Transform");
  transform.mutable_execution()->set_state(v1::Execution::COMPLETE);
  Input(&transform, shared[rng() % shared.size()], "raw/0");
  Input(&transform, shared[rng() % shared.size()], "raw/1");
  Output(&transform, "Dataset", prefix + "train", "train/0");
  Output(&transform, "Dataset", prefix + "test", "test/0");
  auto t = put(transform);
  int64_t train_split = t.artifact_ids(2), test_split = t.artifact_ids(3);

  v1::PutExecutionRequest train;
  train.mutable_execution()->set_type("Train");
  train.mutable_execution()->set_state(v1::Execution::COMPLETE);
  Input(&train, train_split, "train/0");
  Input(&train, shared[rng() % shared.size()], "labels/0");
  Output(&train, "Model", prefix + "model", "model/0");
  Output(&train, "Logs", prefix + "train.log", "logs/0");
  auto m = put(train);
  int64_t model = m.artifact_ids(2);

  v1::PutExecutionRequest evaluate;
  evaluate.mutable_execution()->set_type("Evaluate");
  evaluate.mutable_execution()->set_state(v1::Execution::COMPLETE);
  Input(&evaluate, model, "model/0");
  Input(&evaluate, test_split, "test/0");
  Output(&evaluate, "Metrics", prefix + "metrics", "metrics/0");
  Output(&evaluate, "Logs", prefix + "eval.log", "logs/0");
  auto e = put(evaluate);

  v1::PutExecutionRequest validate;
  validate.mutable_execution()->set_type("Validate");
  validate.mutable_execution()->set_state(v1::Execution::COMPLETE);
  Input(&validate, test_split, "data/0");
  Output(&validate, "Statistics", prefix + "stats", "stats/0");
  Output(&validate, "Logs", prefix + "validate.log", "logs/0");
  put(validate);

  v1::PutExecutionRequest deploy;
  deploy.mutable_execution()->set_type("Deploy");
  deploy.mutable_execution()->set_state(v1::Execution::COMPLETE);
  Input(&deploy, model, "model/0");
  Input(&deploy, e.artifact_ids(2), "metrics/0");
  Output(&deploy, "Model", prefix + "served", "served/0");
  Output(&deploy, "Logs", prefix + "deploy.log", "logs/0");
  put(deploy);
  return model;
}

std::vector<int64_t> CreateShared(metadata::LineageStore& store) {
  std::vector<int64_t> shared;
  for (int i = 0; i < kSharedDatasets; ++i) {
    v1::PutArtifactRequest r;
    r.mutable_artifact()->set_type("Dataset");
    r.mutable_artifact()->set_name("shared-" + std::to_string(i));
    auto a = store.PutArtifact(r);
    if (!a.ok()) Die(a.status().ToString());
    shared.push_back(a->id());
  }
  return shared;
}

// Builds (or reuses) the graph in dir; returns the model ids.
std::vector<int64_t> BuildGraph(const LineageOptions& o, const std::string& dir,
                                std::map<std::string, double>* figures,
                                const std::function<void(const std::string&)>& log) {
  std::string models_file = dir + "/lineage-models";
  std::vector<int64_t> models;
  if (std::filesystem::exists(models_file)) {
    std::ifstream in(models_file);
    int64_t id;
    while (in >> id) models.push_back(id);
    log("lineage: reusing the graph of " + std::to_string(models.size()) + " pipeline runs in " +
        dir);
    return models;
  }
  log("lineage: writing " + std::to_string(o.pipeline_runs) + " pipeline runs ...");
  auto start = Clock::now();
  {
    auto db = metadata::LineageStore::OpenDb(dir + "/lineage", Db::Options());
    if (!db.ok()) Die(db.status().ToString());
    auto store = metadata::LineageStore::Create(db->get());
    if (!store.ok()) Die(store.status().ToString());
    std::vector<int64_t> shared = CreateShared(**store);
    models.resize(static_cast<size_t>(o.pipeline_runs));
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(77 + t);
        for (int64_t run = t; run < o.pipeline_runs; run += 2) {
          models[static_cast<size_t>(run)] = WritePipelineRun(**store, shared, run, rng);
        }
      });
    }
    for (auto& thread : threads) thread.join();
    store->reset();
    if (!(*db)->CompactAll().ok()) Die("compact");
  }
  (*figures)["lineage_populate_executions_per_s"] =
      static_cast<double>(o.pipeline_runs) * 5 / Seconds(start);
  std::ofstream out(models_file);
  for (int64_t id : models) out << id << "\n";
  return models;
}

std::unique_ptr<v1::LineageService::Stub> Connect(int port, int client) {
  grpc::ChannelArguments args;
  args.SetInt("mlops.bench.client", client);  // a connection per client
  return v1::LineageService::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
}

double PutExecutionFloor(const LineageOptions& o, const std::string& dir) {
  auto db = Db::Open(dir, {"nodes", "edges", "index"}, Db::Options());
  if (!db.ok()) Die(db.status().ToString());
  auto* nodes = (*db)->Cf("nodes");
  auto* edges = (*db)->Cf("edges");
  auto* index = (*db)->Cf("index");
  std::atomic<int64_t> next{1 << 20};
  int64_t per_client = o.puts / o.clients;
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&] {
      std::string value80(80, 'v'), value40(40, 'e'), value160(160, 'l');
      for (int64_t i = 0; i < per_client; ++i) {
        int64_t id = next.fetch_add(3);
        rocksdb::WriteBatch batch;
        auto key = [](char kind, int64_t a, int64_t b) {
          std::string k(1, kind);
          AppendBigEndian64(&k, static_cast<uint64_t>(a));
          if (b >= 0) AppendBigEndian64(&k, static_cast<uint64_t>(b));
          return k;
        };
        batch.Put(nodes, key('2', id, -1), value80);      // execution
        batch.Put(nodes, key('1', id + 1, -1), value80);  // two outputs
        batch.Put(nodes, key('1', id + 2, -1), value80);
        for (int k = 0; k < 3; ++k) batch.Put(index, key('t', id + k, -1), "");
        for (int k = 0; k < 4; ++k) batch.Put(edges, key('A', id + k, id), value40);  // events
        batch.Put(edges, key('E', id, -1), value160);  // the execution's event list
        if (!(*db)->Write(&batch).ok()) Die("floor write");
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(per_client * o.clients) / Seconds(start);
}

}  // namespace

void RunLineageBench(const LineageOptions& o, std::map<std::string, double>* figures,
                     const std::function<void(const std::string&)>& log) {
  // --- 3-hop upstream queries on the big graph.
  std::string dir = o.dir.empty() ? o.work_dir + "/lineage" : o.dir;
  std::vector<int64_t> models = BuildGraph(o, dir, figures, log);
  (*figures)["lineage_executions"] = static_cast<double>(models.size()) * 5;
  (*figures)["lineage_artifacts"] = static_cast<double>(models.size()) * 10 + kSharedDatasets;
  {
    int pid = 0;
    int port = SpawnServer(o.metadata_bin, dir, &pid);
    auto stub = Connect(port, 0);
    std::mt19937_64 rng(5);
    std::vector<double> latencies;
    int64_t nodes = 0;
    log("lineage: 3-hop upstream queries ...");
    for (int i = 0; i < o.queries + 10; ++i) {
      v1::GetLineageRequest request;
      request.set_artifact_id(models[rng() % models.size()]);
      request.set_direction(v1::GetLineageRequest::UPSTREAM);
      request.set_max_hops(3);
      v1::LineageGraph graph;
      grpc::ClientContext context;
      auto start = Clock::now();
      grpc::Status status = stub->GetLineage(&context, request, &graph);
      double ms = Seconds(start) * 1000;
      if (!status.ok()) Die("GetLineage: " + status.error_message());
      if (i >= 10) {
        latencies.push_back(ms);
        nodes += graph.nodes_size();
      }
    }
    (*figures)["lineage_3hop_p50_ms"] = Percentile(latencies, 0.5);
    (*figures)["lineage_3hop_p99_ms"] = Percentile(latencies, 0.99);
    (*figures)["lineage_3hop_nodes"] = static_cast<double>(nodes) / latencies.size();
    (*figures)["lineage_server_peak_rss_mb"] = static_cast<double>(PeakRssBytes(pid)) / (1 << 20);
    StopServer(pid);
  }

  // --- PutExecution throughput over gRPC, and its floor.
  log("lineage: PutExecution floor (raw RocksDB) ...");
  (*figures)["put_execution_floor_per_s"] = PutExecutionFloor(o, o.work_dir + "/put-floor");
  log("lineage: PutExecution over gRPC ...");
  int pid = 0;
  int port = SpawnServer(o.metadata_bin, o.work_dir + "/put", &pid);
  std::vector<int64_t> shared;
  {
    auto stub = Connect(port, 0);
    for (int i = 0; i < kSharedDatasets; ++i) {
      v1::PutArtifactRequest r;
      r.mutable_artifact()->set_type("Dataset");
      r.mutable_artifact()->set_name("shared-" + std::to_string(i));
      v1::Artifact a;
      grpc::ClientContext context;
      if (!stub->PutArtifact(&context, r, &a).ok()) Die("PutArtifact");
      shared.push_back(a.id());
    }
  }
  int64_t per_client = o.puts / o.clients;
  std::vector<std::vector<v1::PutExecutionRequest>> requests(static_cast<size_t>(o.clients));
  for (int c = 0; c < o.clients; ++c) {
    std::mt19937_64 rng(100 + c);
    for (int64_t i = 0; i < per_client; ++i) {
      v1::PutExecutionRequest r;
      r.mutable_execution()->set_type("Train");
      r.mutable_execution()->set_state(v1::Execution::COMPLETE);
      Input(&r, shared[rng() % shared.size()], "train/0");
      Input(&r, shared[rng() % shared.size()], "labels/0");
      std::string name = "c" + std::to_string(c) + "-" + std::to_string(i);
      Output(&r, "Model", name + "/model", "model/0");
      Output(&r, "Metrics", name + "/metrics", "metrics/0");
      requests[static_cast<size_t>(c)].push_back(std::move(r));
    }
  }
  // The same calls into LineageStore in this process (the core without gRPC), on a copy of the
  // database state: a fresh store with the same shared datasets.
  {
    auto db = metadata::LineageStore::OpenDb(o.work_dir + "/put-inprocess", Db::Options());
    if (!db.ok()) Die(db.status().ToString());
    auto store = metadata::LineageStore::Create(db->get());
    if (!store.ok()) Die(store.status().ToString());
    std::vector<int64_t> local_shared = CreateShared(**store);
    if (local_shared != shared) Die("shared dataset ids differ");
    auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < o.clients; ++c) {
      threads.emplace_back([&, c] {
        for (const auto& r : requests[static_cast<size_t>(c)]) {
          if (!(*store)->PutExecution(r).ok()) Die("in-process PutExecution");
        }
      });
    }
    for (auto& t : threads) t.join();
    (*figures)["put_execution_inprocess_per_s"] =
        static_cast<double>(per_client * o.clients) / Seconds(start);
  }
  std::vector<std::unique_ptr<v1::LineageService::Stub>> stubs;
  for (int c = 0; c < o.clients; ++c) stubs.push_back(Connect(port, c + 1));
  // The gRPC floor: as many unary calls that do no storage work (GetType, answered from memory).
  {
    auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < o.clients; ++c) {
      threads.emplace_back([&, c] {
        v1::GetTypeRequest r;
        r.set_kind(v1::EXECUTION);
        r.set_name("Train");
        for (int64_t i = 0; i < per_client; ++i) {
          v1::NodeType type;
          grpc::ClientContext context;
          if (!stubs[static_cast<size_t>(c)]->GetType(&context, r, &type).ok()) Die("GetType");
        }
      });
    }
    for (auto& t : threads) t.join();
    (*figures)["unary_rpc_floor_per_s"] =
        static_cast<double>(per_client * o.clients) / Seconds(start);
  }
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      for (const auto& r : requests[static_cast<size_t>(c)]) {
        v1::PutExecutionResponse response;
        grpc::ClientContext context;
        grpc::Status status = stubs[static_cast<size_t>(c)]->PutExecution(&context, r, &response);
        if (!status.ok()) Die("PutExecution: " + status.error_message());
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = Seconds(start);
  (*figures)["put_execution_unary_per_s"] = static_cast<double>(per_client * o.clients) / seconds;
  // The same requests again (new artifacts), one PutExecutionStream per client: a writer thread
  // sends while a reader thread collects the answers.
  for (auto& client_requests : requests) {
    for (auto& r : client_requests) {
      for (auto& a : *r.mutable_artifacts()) {
        if (a.artifact().id() == 0) a.mutable_artifact()->set_name(a.artifact().name() + "/s");
      }
    }
  }
  start = Clock::now();
  threads.clear();
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ClientContext context;
      auto stream = stubs[static_cast<size_t>(c)]->PutExecutionStream(&context);
      std::thread reader([&] {
        v1::PutExecutionResult result;
        int64_t answered = 0;
        while (stream->Read(&result)) {
          if (result.code() != 0) Die("PutExecutionStream: " + result.message());
          ++answered;
        }
        if (answered != per_client) Die("PutExecutionStream: answers missing");
      });
      for (const auto& r : requests[static_cast<size_t>(c)]) {
        if (!stream->Write(r)) break;
      }
      stream->WritesDone();
      reader.join();
      if (!stream->Finish().ok()) Die("PutExecutionStream finish");
    });
  }
  for (auto& t : threads) t.join();
  (*figures)["put_execution_per_s"] = static_cast<double>(per_client * o.clients) / Seconds(start);
  (*figures)["put_execution_ratio_to_floor"] =
      (*figures)["put_execution_per_s"] / (*figures)["put_execution_floor_per_s"];
  (*figures)["put_execution_clients"] = o.clients;
  StopServer(pid);
}

}  // namespace mlops::bench
