// The artifact suite of mlops-bench.
//
//   mlops-bench artifact [--json] [--size_mb=2048] [--dedup_mb=1024] [--small_files=100000]
//                        [--artifact_bin=PATH] [--work_dir=DIR]
//
//   upload / download  a --size_mb file of random bytes through a child mlops-artifact over
//              loopback (the client chunks, hashes, uploads; the server verifies and fsyncs;
//              download writes, verifies and fdatasyncs), against two floors on the same file:
//              `openssl dgst -sha256` and `dd bs=4M conv=fdatasync`.
//   dedup      version 2 of a --dedup_mb file = version 1 with ten 1 MiB regions overwritten at
//              random offsets and 1 MiB of new bytes inserted in the middle: the fraction of the
//              file sent and newly stored when pushing v2 after v1, and the same two versions
//              backed up with `restic backup` (time and bytes added; -1 when restic is absent).
//   no-op      --small_files small files pushed as a dataset, then pushed again unchanged: the
//              second push (stat + hash cache + one lookup) in seconds.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/strings.h"
#include "tools/bench/bench.h"

namespace mlops::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kMiB = 1 << 20;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "mlops-bench artifact: " << what << "\n";
  std::exit(1);
}

void CheckOk(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Die(StrCat(what, ": ", status.ToString()));
}

// Fast pseudo-random bytes (incompressible, reproducible from the seed).
void FillRandom(std::string* buffer, std::mt19937_64& rng) {
  for (size_t i = 0; i + 8 <= buffer->size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(buffer->data() + i, &v, 8);
  }
}

void WriteRandomFile(const std::string& path, int64_t bytes, uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::mt19937_64 rng(seed);
  std::string buffer(4 * kMiB, '\0');
  for (int64_t done = 0; done < bytes;) {
    FillRandom(&buffer, rng);
    int64_t n = std::min<int64_t>(bytes - done, static_cast<int64_t>(buffer.size()));
    out.write(buffer.data(), n);
    done += n;
  }
  if (!out.flush()) Die("cannot write " + path);
}

// Runs a shell command, returning its wall time; exits on failure.
double TimeCommand(const std::string& command) {
  auto start = Clock::now();
  int rc = std::system(command.c_str());
  if (rc != 0) Die("command failed: " + command);
  return Seconds(start);
}

std::string CommandOutput(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  return out;
}

// Bytes of `blob`'s chunks that are not among `known`, and adds them to it.
int64_t NewChunkBytes(artifact::ArtifactClient& client, const std::string& digest,
                      absl::flat_hash_set<std::string>* known) {
  artifact::v1::StatBlobRequest request;
  request.set_digest(digest);
  request.set_include_chunks(true);
  artifact::v1::Blob blob;
  grpc::ClientContext context;
  grpc::Status status = client.stub().StatBlob(&context, request, &blob);
  if (!status.ok()) Die("stat " + digest + ": " + status.error_message());
  int64_t bytes = 0;
  for (const auto& chunk : blob.chunks()) {
    if (known->insert(chunk.digest()).second) bytes += chunk.size();
  }
  return bytes;
}

// The blob digest of the (only) file of a dataset version.
std::string FileDigest(artifact::ArtifactClient& client, const std::string& dataset,
                       const std::string& version) {
  artifact::v1::ListVersionEntriesRequest request;
  request.set_dataset(dataset);
  request.set_ref(version);
  artifact::v1::ListVersionEntriesResponse response;
  grpc::ClientContext context;
  grpc::Status status = client.stub().ListVersionEntries(&context, request, &response);
  if (!status.ok() || response.entries_size() != 1) Die("list " + dataset + "@" + version);
  return response.entries(0).digest();
}

int Usage() {
  std::cerr << "usage: mlops-bench artifact [--json] [--size_mb=2048] [--dedup_mb=1024] "
               "[--small_files=100000] [--artifact_bin=PATH] [--work_dir=DIR]\n";
  return 2;
}

}  // namespace

int RunArtifactBench(int argc, char** argv) {
  bool json = false;
  int64_t size_mb = 2048, dedup_mb = 1024, small_files = 100000;
  std::string self = BenchDir();
  std::string artifact_bin = self + "/../../services/artifact/mlops-artifact";
  std::string work_parent = "/tmp";
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) { return FlagValue(argv[i], name); };
    if (arg == "--json") {
      json = true;
    } else if (auto v = value("--size_mb")) {
      size_mb = std::atoll(v);
    } else if (auto v = value("--dedup_mb")) {
      dedup_mb = std::atoll(v);
    } else if (auto v = value("--small_files")) {
      small_files = std::atoll(v);
    } else if (auto v = value("--artifact_bin")) {
      artifact_bin = v;
    } else if (auto v = value("--work_dir")) {
      work_parent = v;
    } else {
      return Usage();
    }
  }
  if (!std::filesystem::exists(artifact_bin)) {
    std::cerr << "mlops-artifact not found at " << artifact_bin << " (use --artifact_bin)\n";
    return 2;
  }
  std::string tmpl = work_parent + "/mlops-bench-artifact-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) Die("cannot create a work dir under " + work_parent);
  const std::string work = tmpl;
  auto log = [&](const std::string& line) {
    if (!json) std::cerr << line << "\n";
  };
  std::map<std::string, double> figures;
  ::setenv("MLOPS_CACHE_DIR", (work + "/cache").c_str(), 1);

  int pid = 0;
  int port = SpawnServer(artifact_bin, work + "/server", &pid);
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxSendMessageSize(64 << 20);
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::InsecureChannelCredentials(), channel_args);
  artifact::ClientOptions options;
  artifact::ArtifactClient client(channel, options);

  // --- Throughput and its floors.
  const double size_mib = static_cast<double>(size_mb);
  std::string big = work + "/big.bin";
  log("throughput: writing a " + std::to_string(size_mb) + " MiB file ...");
  WriteRandomFile(big, size_mb * kMiB, 1);
  TimeCommand("openssl dgst -sha256 " + big + " > /dev/null");  // warm the page cache
  double sha_s = TimeCommand("openssl dgst -sha256 " + big + " > /dev/null");
  double dd_s =
      TimeCommand("dd if=" + big + " of=" + work + "/dd.out bs=4M conv=fdatasync " + "status=none");
  std::filesystem::remove(work + "/dd.out");
  figures["floor_sha256_mb_per_s"] = size_mib / sha_s;
  figures["floor_dd_mb_per_s"] = size_mib / dd_s;
  log("throughput: upload ...");
  auto start = Clock::now();
  artifact::TransferStats up;
  auto blob = client.UploadFile(big, /*pin=*/true, &up);
  CheckOk(blob.status(), "upload");
  figures["upload_mb_per_s"] = size_mib / Seconds(start);
  log("throughput: download ...");
  start = Clock::now();
  CheckOk(client.DownloadToFile(blob->digest(), work + "/big.out", nullptr), "download");
  figures["download_mb_per_s"] = size_mib / Seconds(start);
  if (std::filesystem::file_size(work + "/big.out") != static_cast<uintmax_t>(size_mb * kMiB)) {
    Die("downloaded file has the wrong size");
  }
  std::filesystem::remove(work + "/big.out");
  std::filesystem::remove(big);
  double slower_floor = std::min(figures["floor_sha256_mb_per_s"], figures["floor_dd_mb_per_s"]);
  figures["upload_ratio_to_floor"] = figures["upload_mb_per_s"] / slower_floor;
  figures["download_ratio_to_floor"] = figures["download_mb_per_s"] / slower_floor;

  // --- Dedup: v2 = v1 with ten 1 MiB regions overwritten and 1 MiB inserted in the middle.
  log("dedup: writing two versions of a " + std::to_string(dedup_mb) + " MiB file ...");
  std::filesystem::create_directories(work + "/dedup");
  std::string v1_path = work + "/v1.bin", v2_path = work + "/v2.bin";
  WriteRandomFile(v1_path, dedup_mb * kMiB, 2);
  {
    std::string data;
    {
      std::ifstream in(v1_path, std::ios::binary);
      data.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::mt19937_64 rng(3);
    std::string region(kMiB, '\0');
    for (int i = 0; i < 10; ++i) {
      FillRandom(&region, rng);
      size_t offset = rng() % (data.size() - kMiB);
      data.replace(offset, kMiB, region);
    }
    FillRandom(&region, rng);
    data.insert(data.size() / 2, region);
    std::ofstream(v2_path, std::ios::binary | std::ios::trunc).write(data.data(), data.size());
  }
  std::string file_in_dir = work + "/dedup/data.bin";
  std::filesystem::copy_file(v1_path, file_in_dir);
  artifact::HashCache cache(work + "/cache/dedup.tsv");
  auto push1 = client.Push(file_in_dir, "dedup", {}, "v1", &cache);
  CheckOk(push1.status(), "push v1");
  absl::flat_hash_set<std::string> known;
  NewChunkBytes(client, FileDigest(client, "dedup", push1->version.digest()), &known);
  std::filesystem::remove(file_in_dir);
  std::filesystem::copy_file(v2_path, file_in_dir);
  start = Clock::now();
  auto push2 = client.Push(file_in_dir, "dedup", {}, "v2", &cache);
  CheckOk(push2.status(), "push v2");
  figures["mlops_v2_push_seconds"] = Seconds(start);
  double v2_size = static_cast<double>(std::filesystem::file_size(v2_path));
  figures["dedup_sent_fraction"] = static_cast<double>(push2->stats.bytes_sent) / v2_size;
  figures["dedup_stored_fraction"] =
      static_cast<double>(
          NewChunkBytes(client, FileDigest(client, "dedup", push2->version.digest()), &known)) /
      v2_size;
  // restic on the same two versions, in its own repository.
  figures["restic_seconds"] = -1;
  figures["restic_added_bytes"] = -1;
  if (std::system("command -v restic > /dev/null 2>&1") == 0) {
    log("dedup: restic backup of the same two versions ...");
    std::string restic_dir = work + "/restic-src";
    std::filesystem::create_directories(restic_dir);
    std::filesystem::copy_file(v1_path, restic_dir + "/data.bin");
    std::string env = "RESTIC_PASSWORD=bench RESTIC_REPOSITORY=" + work + "/restic-repo ";
    TimeCommand(env + "restic init --quiet > /dev/null");
    TimeCommand(env + "restic backup --quiet " + restic_dir + " > /dev/null");
    std::filesystem::remove(restic_dir + "/data.bin");
    std::filesystem::copy_file(v2_path, restic_dir + "/data.bin");
    start = Clock::now();
    std::string out = CommandOutput(env + "restic backup --json " + restic_dir + " 2>/dev/null");
    figures["restic_seconds"] = Seconds(start);
    size_t at = out.find("\"data_added\":");
    if (at != std::string::npos) {
      figures["restic_added_bytes"] = std::atof(out.c_str() + at + 13);
    }
  }
  std::filesystem::remove_all(work + "/dedup");
  std::filesystem::remove_all(work + "/restic-src");
  std::filesystem::remove_all(work + "/restic-repo");
  std::filesystem::remove(v1_path);
  std::filesystem::remove(v2_path);

  // --- No-op re-push of many small files.
  log("no-op re-push: writing " + std::to_string(small_files) + " small files ...");
  std::string small_dir = work + "/small";
  for (int64_t i = 0; i < small_files; ++i) {
    std::string dir = StrCat(small_dir, "/d", std::to_string(i / 1000));
    if (i % 1000 == 0) std::filesystem::create_directories(dir);
    std::ofstream(StrCat(dir, "/f", std::to_string(i), ".txt"))
        << "row " << i << ", feature " << (i * 7919) % 1000 << "\n";
  }
  artifact::HashCache small_cache(work + "/cache/small.tsv");
  start = Clock::now();
  auto first = client.Push(small_dir, "small", {}, "first", &small_cache);
  CheckOk(first.status(), "first push of small files");
  figures["small_files_first_push_s"] = Seconds(start);
  CheckOk(small_cache.Save(), "save the hash cache");
  // A new process would load the cache from disk: do the same.
  start = Clock::now();
  artifact::HashCache reloaded(work + "/cache/small.tsv");
  CheckOk(reloaded.Load(), "load the hash cache");
  auto again = client.Push(small_dir, "small", {}, "again", &reloaded);
  CheckOk(again.status(), "no-op push of small files");
  figures["noop_repush_100k_files_s"] = Seconds(start);
  if (!again->unchanged || again->stats.bytes_sent != 0 || again->stats.files_hashed != 0) {
    Die("the no-op re-push uploaded or hashed something");
  }
  figures["small_files"] = static_cast<double>(small_files);
  figures["size_mb"] = size_mib;
  figures["dedup_mb"] = static_cast<double>(dedup_mb);

  StopServer(pid);
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  PrintFigures(figures, json);
  return 0;
}

}  // namespace mlops::bench
