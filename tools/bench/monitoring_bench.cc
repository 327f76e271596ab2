// mlops-bench monitoring: drift evaluation, batch and streaming.
//
//   mlops-bench monitoring [--json] [--rows=1000000] [--features=100] [--reference_rows=200000]
//                          [--stream_seconds=5] [--clients=4] [--work_dir=/tmp]
//
// Figures:
//   batch_drift_seconds     EvaluateDataset of a --rows x --features dataset version (one .mlcol
//                           file of float64 columns, 10 features shifted) against a stored profile,
//                           through a child mlops-server: the dataset pulled from the artifact
//                           service, mapped, counted into the profile's grid, every feature tested
//                           (KS and PSI).
//   batch_floor_seconds     one pass over the same values in memory that only sums them.
//   batch_compute_seconds   the counting and testing alone, in this process, on 2 threads.
//   batch_values_per_s      rows x features / batch_drift_seconds.
//   batch_drifted_features  how many features the report found drifted (10 moved).
//   profile_seconds         CreateProfile from a --reference_rows dataset version.
//   stream_values_per_s     feature values ingested per second by --clients IngestSamples
//                           streams of 1,000-row batches to one monitor, over --stream_seconds.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>

#include "mlops/monitoring/v1/monitoring.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/monitoring/profile.h"
#include "services/monitoring/table.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

namespace mv1 = ::mlops::monitoring::v1;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Column f ~ N(f / 10, 1 + f / 100); with `shift`, features 0..9 move by one standard deviation.
std::vector<monitoring::Column> Generate(uint64_t rows, int features, bool shift, uint64_t seed) {
  std::vector<monitoring::Column> columns(static_cast<size_t>(features));
  std::mt19937_64 rng(seed);
  for (int f = 0; f < features; ++f) {
    auto& c = columns[static_cast<size_t>(f)];
    c.name = "f" + std::to_string(f);
    double sd = 1 + f / 100.0;
    std::normal_distribution<double> normal(f / 10.0 + (shift && f < 10 ? sd : 0), sd);
    c.owned.resize(rows);
    for (double& v : c.owned) v = normal(rng);
    c.values = c.owned.data();
  }
  return columns;
}

template <typename Response, typename Request, typename Method>
Response MustCall(mv1::MonitoringService::Stub* stub, Method method, const Request& request) {
  Response response;
  grpc::ClientContext context;
  grpc::Status status = (stub->*method)(&context, request, &response);
  if (!status.ok()) {
    std::cerr << "monitoring call failed: " << status.error_message() << "\n";
    std::exit(1);
  }
  return response;
}

}  // namespace

int RunMonitoringBench(int argc, char** argv) {
  bool json = false;
  uint64_t rows = 1000000, reference_rows = 200000;
  int features = 100, clients = 4;
  double stream_seconds = 5;
  std::string work_parent = "/tmp";
  std::string server_bin = BenchDir() + "/../server/mlops-server";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) { return FlagValue(argv[i], name); };
    if (arg == "--json") {
      json = true;
    } else if (auto v = value("--rows")) {
      rows = std::strtoull(v, nullptr, 10);
    } else if (auto v = value("--reference_rows")) {
      reference_rows = std::strtoull(v, nullptr, 10);
    } else if (auto v = value("--features")) {
      features = std::atoi(v);
    } else if (auto v = value("--clients")) {
      clients = std::atoi(v);
    } else if (auto v = value("--stream_seconds")) {
      stream_seconds = std::atof(v);
    } else if (auto v = value("--work_dir")) {
      work_parent = v;
    } else if (auto v = value("--server_bin")) {
      server_bin = v;
    } else {
      std::cerr << "usage: mlops-bench monitoring [--json] [--rows=N] [--features=N] "
                   "[--reference_rows=N] [--stream_seconds=S] [--clients=N] [--work_dir=DIR] "
                   "[--server_bin=PATH]\n";
      return 2;
    }
  }
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  std::string dir = work_parent + "/mlops-bench-monitoring-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  std::map<std::string, double> figures;

  log("generating the reference and production datasets ...");
  std::filesystem::create_directories(dir + "/ref");
  std::filesystem::create_directories(dir + "/prod");
  {
    auto reference = Generate(reference_rows, features, false, 1);
    if (!monitoring::WriteColumnar(dir + "/ref/ref.mlcol", reference, reference_rows).ok())
      return 1;
  }
  auto production = Generate(rows, features, true, 2);
  if (!monitoring::WriteColumnar(dir + "/prod/prod.mlcol", production, rows).ok()) return 1;

  log("floor: summing the production values in memory ...");
  double floor = 1e30, checksum = 0;
  for (int round = 0; round < 3; ++round) {
    auto start = Clock::now();
    double sum = 0;
    for (const auto& c : production) {
      for (uint64_t r = 0; r < rows; ++r) sum += c.values[r];
    }
    floor = std::min(floor, Seconds(start));
    checksum += sum;
  }
  figures["batch_floor_seconds"] = floor;

  int pid = 0;
  int port = SpawnServer(server_bin, dir + "/server", &pid);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = mv1::MonitoringService::NewStub(channel);
  artifact::ArtifactClient client(channel);
  log("pushing the datasets ...");
  if (!client.Push(dir + "/ref", "bench-reference", {}, "", nullptr).ok() ||
      !client.Push(dir + "/prod", "bench-production", {}, "", nullptr).ok()) {
    std::cerr << "push failed\n";
    StopServer(pid);
    return 1;
  }
  std::filesystem::remove_all(dir + "/prod");

  log("profile of the reference ...");
  mv1::CreateProfileRequest profile_request;
  profile_request.set_name("bench");
  profile_request.set_dataset("bench-reference");
  auto start = Clock::now();
  auto profile = MustCall<mv1::Profile>(stub.get(), &mv1::MonitoringService::Stub::CreateProfile,
                                        profile_request);
  figures["profile_seconds"] = Seconds(start);

  mv1::Monitor monitor;
  monitor.set_name("batch");
  monitor.set_profile("bench");
  monitor.set_window_rows(1000000);
  MustCall<mv1::Monitor>(stub.get(), &mv1::MonitoringService::Stub::CreateMonitor, monitor);

  log("batch: EvaluateDataset of the production dataset ...");
  mv1::EvaluateDatasetRequest evaluate;
  evaluate.set_monitor("batch");
  evaluate.set_dataset("bench-production");
  start = Clock::now();
  auto report = MustCall<mv1::DriftReport>(
      stub.get(), &mv1::MonitoringService::Stub::EvaluateDataset, evaluate);
  figures["batch_drift_seconds"] = Seconds(start);
  figures["batch_values_per_s"] =
      static_cast<double>(rows) * features / figures["batch_drift_seconds"];
  figures["batch_ratio_to_floor"] = figures["batch_drift_seconds"] / floor;
  int drifted = 0;
  for (const auto& f : report.features()) drifted += f.drifted();
  figures["batch_drifted_features"] = drifted;

  log("batch: the counting and tests alone, in process ...");
  {
    start = Clock::now();
    std::vector<mv1::FeatureDrift> drifts(static_cast<size_t>(features));
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&] {
        for (int f = next++; f < features; f = next++) {
          monitoring::FeatureWindow window(&profile.features(f));
          window.AddNumeric(production[static_cast<size_t>(f)].values, rows);
          drifts[static_cast<size_t>(f)] = window.Evaluate({});
        }
      });
    }
    for (auto& t : threads) t.join();
    figures["batch_compute_seconds"] = Seconds(start);
  }
  production.clear();

  log("streaming: IngestSamples from several clients ...");
  monitor.set_name("stream");
  monitor.set_window_rows(1000000);
  MustCall<mv1::Monitor>(stub.get(), &mv1::MonitoringService::Stub::CreateMonitor, monitor);
  mv1::SampleBatch batch;
  batch.set_monitor("stream");
  {
    auto sample = Generate(1000, features, false, 3);
    for (int f = 0; f < features; ++f) batch.add_numeric_columns("f" + std::to_string(f));
    for (int r = 0; r < 1000; ++r) {
      for (int f = 0; f < features; ++f)
        batch.add_numeric(sample[static_cast<size_t>(f)].values[r]);
    }
  }
  std::atomic<uint64_t> ingested{0};
  std::atomic<bool> failed{false};
  auto stream_start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      auto local = mv1::MonitoringService::NewStub(channel);
      grpc::ClientContext context;
      mv1::IngestSamplesResponse response;
      auto writer = local->IngestSamples(&context, &response);
      while (Seconds(stream_start) < stream_seconds) {
        if (!writer->Write(batch)) break;
      }
      writer->WritesDone();
      if (!writer->Finish().ok()) failed = true;
      ingested += response.rows();
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = Seconds(stream_start);
  if (failed) {
    std::cerr << "a stream failed\n";
    StopServer(pid);
    return 1;
  }
  figures["stream_values_per_s"] = static_cast<double>(ingested.load()) * features / elapsed;
  figures["stream_rows"] = static_cast<double>(ingested.load());
  figures["rows"] = static_cast<double>(rows);
  figures["features"] = features;
  figures["clients"] = clients;
  if (checksum == 0.123456789) std::cerr << "";  // keeps the floor's sums
  StopServer(pid);
  std::filesystem::remove_all(dir);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
