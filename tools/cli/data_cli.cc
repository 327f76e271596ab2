#include "tools/cli/data_cli.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "mlops/artifact/v1/artifact.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/strings.h"

namespace mlops::cli {
namespace {

namespace av1 = mlops::artifact::v1;
using artifact::ArtifactClient;

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return buf;
}

// A one-line progress bar on stderr (bytes, rate, ETA), drawn only when stdout is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), start_(Clock::now()) {}
  ~ProgressBar() { Finish(); }

  void Update(int64_t done, int64_t total) {
    if (!enabled_) return;
    auto now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(100) && done < total) return;
    last_ = now;
    drawn_ = true;
    double seconds = std::chrono::duration<double>(now - start_).count();
    double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    double fraction = total > 0 ? std::min(1.0, static_cast<double>(done) / total) : 1.0;
    int filled = static_cast<int>(fraction * 30);
    std::string bar = std::string(filled, '#') + std::string(30 - filled, '.');
    std::string eta = rate > 0 && total > done
                          ? std::to_string(static_cast<int>((total - done) / rate)) + "s"
                          : "-";
    std::fprintf(stderr, "\r[%s] %3d%%  %s / %s  %s/s  ETA %s   ", bar.c_str(),
                 static_cast<int>(fraction * 100), HumanBytes(done).c_str(),
                 HumanBytes(total).c_str(), HumanBytes(rate).c_str(), eta.c_str());
  }
  void Finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool drawn_ = false;
  Clock::time_point start_;
  Clock::time_point last_{};
};

std::string Seconds(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f s", seconds);
  return buf;
}

void Check(const absl::Status& status) {
  if (!status.ok())
    FailRpc(
        grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message())));
}

template <typename T>
T Check(absl::StatusOr<T> value) {
  Check(value.status());
  return std::move(*value);
}

class DataCli {
 public:
  DataCli(std::shared_ptr<grpc::Channel> channel, bool json, ProgressBar* bar,
          artifact::ClientOptions options)
      : json_(json), client_(channel, WithProgress(std::move(options), bar)) {}

  int Data(const std::string& command, Args& args) {
    if (command == "push") return Push(args);
    if (command == "pull") return Pull(args);
    if (command == "diff") return Diff(args);
    if (command == "log") return Log(args);
    if (command == "list") return List(args);
    if (command == "show") return Show(args);
    if (command == "tag") return Tag(args);
    throw UsageError{"unknown command 'data " + command + "'"};
  }

  int Artifact(const std::string& command, Args& args) {
    if (command == "put") return Put(args);
    if (command == "get") return Get(args);
    if (command == "stat") return Stat(args);
    if (command == "list") return ListBlobs(args);
    if (command == "gc") return Gc(args);
    if (command == "scrub") return Scrub(args);
    throw UsageError{"unknown command 'artifact " + command + "'"};
  }

 private:
  static artifact::ClientOptions WithProgress(artifact::ClientOptions options, ProgressBar* bar) {
    options.progress = [bar](int64_t done, int64_t total) { bar->Update(done, total); };
    return options;
  }

  template <typename Request, typename Response>
  Response Call(grpc::Status (av1::ArtifactService::Stub::*method)(grpc::ClientContext*,
                                                                   const Request&, Response*),
                const Request& request) {
    return CallOrExit(&client_.stub(), method, request, std::chrono::minutes(10));
  }

  void PrintVersion(const av1::DatasetVersion& v) {
    if (json_) return PrintJson(v);
    std::cout << "dataset:  " << v.dataset() << "\nversion:  " << v.digest()
              << "\nmessage:  " << v.message()
              << "\nparent:   " << (v.parent_digest().empty() ? "-" : v.parent_digest())
              << "\ncreated:  " << FormatTime(v.create_time_ms())
              << "\nfiles:    " << v.file_count() << "\nbytes:    " << v.total_bytes() << " ("
              << HumanBytes(static_cast<double>(v.total_bytes())) << ")\ntags:     ";
    for (int i = 0; i < v.tags_size(); ++i) std::cout << (i ? ", " : "") << v.tags(i);
    std::cout << "\n";
  }

  int Push(Args& args) {
    std::string source = args.Positional("SOURCE (a directory or a file)");
    auto dataset = args.Take("--dataset");
    if (!dataset) throw UsageError{"data push needs --dataset NAME"};
    std::vector<std::string> tags = args.TakeAll("--tag");
    std::string message = args.Take("--message").value_or(args.Take("-m").value_or(""));
    artifact::PushOptions push_options;
    push_options.follow_symlinks = args.TakeFlag("--follow-symlinks");
    // In a pipeline step, one version per dataset per step: a retried attempt gets the same.
    push_options.request_id =
        args.Take("--request-id").value_or(StepRequestId("datasets/" + *dataset));
    args.ExpectEmpty();
    artifact::HashCache cache(artifact::HashCache::DefaultPath());
    Check(cache.Load());
    auto start = std::chrono::steady_clock::now();
    artifact::PushResult result =
        Check(client_.Push(source, *dataset, tags, message, &cache, push_options));
    Check(cache.Save());
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (json_) {
      PrintJson(result.version);
      return 0;
    }
    const auto& s = result.stats;
    if (result.unchanged) {
      std::cout << "unchanged: " << *dataset << "@" << result.version.digest()
                << " already holds this content; nothing uploaded (" << s.files << " files, "
                << s.files_hashed << " hashed)\n";
    } else {
      std::cout << "pushed " << *dataset << "@" << result.version.digest() << "\n"
                << "  " << s.files << " files, " << HumanBytes(static_cast<double>(s.bytes_total))
                << "; sent " << HumanBytes(static_cast<double>(s.bytes_sent)) << " in "
                << s.chunks_sent << " of " << s.chunks_total << " chunks (" << s.blobs_uploaded
                << " new files, " << s.files_hashed << " hashed) in " << Seconds(seconds) << "\n";
    }
    std::cout << "  tags: ";
    for (int i = 0; i < result.version.tags_size(); ++i) {
      std::cout << (i ? ", " : "") << result.version.tags(i);
    }
    std::cout << "\n";
    if (result.symlinks_skipped > 0) {
      std::cout << "  skipped " << result.symlinks_skipped
                << " symbolic links (not followed; --follow-symlinks follows them)\n";
    }
    if (result.special_skipped > 0) {
      std::cout << "  skipped " << result.special_skipped
                << " fifos, sockets or devices (no content to version)\n";
    }
    if (result.empty_dirs > 0) {
      std::cout << "  " << result.empty_dirs
                << " empty directories not recorded (a version lists files only)\n";
    }
    return 0;
  }

  int Pull(Args& args) {
    std::string spec = args.Positional("NAME[@VERSION|TAG]");
    std::string dest = args.Positional("DIR");
    artifact::PullOptions pull_options;
    pull_options.verify = args.TakeFlag("--verify");
    args.ExpectEmpty();
    std::string dataset, ref;
    artifact::SplitDatasetRef(spec, &dataset, &ref);
    artifact::HashCache cache(artifact::HashCache::DefaultPath());
    Check(cache.Load());
    artifact::PullResult result = Check(client_.Pull(dataset, ref, dest, &cache, pull_options));
    Check(cache.Save());
    if (json_) {
      PrintJson(result.version);
      return 0;
    }
    int64_t rehashed = result.files_already_present - result.files_trusted;
    std::cout << "pulled " << dataset << "@" << result.version.digest() << " into " << dest << ": "
              << result.files_written << " files written ("
              << HumanBytes(static_cast<double>(result.stats.bytes_sent))
              << ", each verified against its digest), " << result.files_already_present
              << " already present (" << rehashed << " re-hashed and verified";
    if (result.files_trusted > 0) {
      std::cout << ", " << result.files_trusted
                << " trusted from the hash cache: size, mtime and inode unchanged since last "
                   "hashed; --verify re-hashes them";
    }
    std::cout << ")\n";
    return 0;
  }

  int Diff(Args& args) {
    std::string a = args.Positional("FROM (NAME@REF)");
    std::string b = args.Positional("TO (NAME@REF, or REF in the same dataset)");
    auto max = args.Take("--max");
    args.ExpectEmpty();
    av1::DiffVersionsRequest request;
    std::string from_dataset, from_ref, to_dataset, to_ref;
    artifact::SplitDatasetRef(a, &from_dataset, &from_ref);
    if (b.find('@') == std::string::npos) {
      to_dataset = from_dataset;
      to_ref = b;
    } else {
      artifact::SplitDatasetRef(b, &to_dataset, &to_ref);
      if (to_dataset.empty()) to_dataset = from_dataset;
    }
    request.set_from_dataset(from_dataset);
    request.set_from_ref(from_ref);
    request.set_to_dataset(to_dataset);
    request.set_to_ref(to_ref);
    int64_t limit = max ? ParseInt(*max, "--max") : 1000;
    request.set_page_size(static_cast<int>(std::min<int64_t>(limit, 10000)));
    av1::DiffVersionsResponse first;
    std::vector<av1::FileChange> changes;
    do {
      auto page = Call(&av1::ArtifactService::Stub::DiffVersions, request);
      if (request.page_token().empty()) first = page;
      for (const auto& change : page.changes()) {
        if (static_cast<int64_t>(changes.size()) < limit) changes.push_back(change);
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty() && static_cast<int64_t>(changes.size()) < limit);
    if (json_) {
      first.clear_changes();
      for (const auto& change : changes) *first.add_changes() = change;
      PrintJson(first);
      return 0;
    }
    const auto& s = first.summary();
    std::cout << from_dataset << "@" << first.from().digest().substr(0, 12) << " -> " << to_dataset
              << "@" << first.to().digest().substr(0, 12) << ": " << s.added() << " added, "
              << s.removed() << " removed, " << s.modified() << " modified, " << s.unchanged()
              << " unchanged; +" << HumanBytes(s.bytes_added()) << " -"
              << HumanBytes(s.bytes_removed()) << " ~" << HumanBytes(s.bytes_changed()) << "\n";
    for (const auto& change : changes) {
      char kind = change.kind() == av1::FileChange::ADDED     ? '+'
                  : change.kind() == av1::FileChange::REMOVED ? '-'
                                                              : 'M';
      std::cout << kind << " " << change.path();
      if (change.kind() == av1::FileChange::MODIFIED) {
        std::cout << "  (" << change.from().size() << " -> " << change.to().size() << " bytes)";
      }
      std::cout << "\n";
    }
    int64_t total = s.added() + s.removed() + s.modified();
    if (total > static_cast<int64_t>(changes.size())) {
      std::cout << "... " << total - static_cast<int64_t>(changes.size()) << " more (use --max)\n";
    }
    return 0;
  }

  int Log(Args& args) {
    std::string dataset = args.Positional("NAME");
    int64_t max = ParseInt(args.Take("--max").value_or("100"), "--max");
    args.ExpectEmpty();
    av1::ListVersionsRequest request;
    request.set_dataset(dataset);
    std::vector<av1::DatasetVersion> versions;
    do {
      auto page = Call(&av1::ArtifactService::Stub::ListVersions, request);
      for (const auto& v : page.versions()) {
        if (static_cast<int64_t>(versions.size()) < max) versions.push_back(v);
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty() && static_cast<int64_t>(versions.size()) < max);
    if (json_) {
      av1::ListVersionsResponse all;
      for (const auto& v : versions) *all.add_versions() = v;
      PrintJson(all);
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& v : versions) {
      std::string tags;
      for (int i = 0; i < v.tags_size(); ++i) tags += (i ? "," : "") + v.tags(i);
      rows.push_back({v.digest().substr(0, 16), FormatTime(v.create_time_ms()),
                      std::to_string(v.file_count()),
                      HumanBytes(static_cast<double>(v.total_bytes())), tags, v.message()});
    }
    PrintTable({"VERSION", "CREATED", "FILES", "SIZE", "TAGS", "MESSAGE"}, rows);
    return 0;
  }

  int List(Args& args) {
    args.ExpectEmpty();
    av1::ListDatasetsRequest request;
    av1::ListDatasetsResponse all;
    do {
      auto page = Call(&av1::ArtifactService::Stub::ListDatasets, request);
      for (const auto& d : page.datasets()) *all.add_datasets() = d;
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    if (json_) {
      PrintJson(all);
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& d : all.datasets()) {
      rows.push_back({d.name(), std::to_string(d.version_count()), d.latest_digest().substr(0, 16),
                      FormatTime(d.create_time_ms())});
    }
    PrintTable({"DATASET", "VERSIONS", "LATEST", "CREATED"}, rows);
    return 0;
  }

  int Show(Args& args) {
    std::string spec = args.Positional("NAME[@REF]");
    bool files = args.TakeFlag("--files");
    args.ExpectEmpty();
    std::string dataset, ref;
    artifact::SplitDatasetRef(spec, &dataset, &ref);
    av1::GetVersionRequest request;
    request.set_dataset(dataset);
    request.set_ref(ref);
    auto version = Call(&av1::ArtifactService::Stub::GetVersion, request);
    PrintVersion(version);
    if (files && !json_) {
      av1::ListVersionEntriesRequest list;
      list.set_dataset(dataset);
      list.set_ref(version.digest());
      do {
        auto page = Call(&av1::ArtifactService::Stub::ListVersionEntries, list);
        for (const auto& e : page.entries()) {
          char mode[8];
          std::snprintf(mode, sizeof(mode), "%04o", e.mode());
          std::cout << mode << "  " << e.digest().substr(0, 16) << "  " << e.size() << "  "
                    << e.path() << "\n";
        }
        list.set_page_token(page.next_page_token());
      } while (!list.page_token().empty());
    }
    return 0;
  }

  int Tag(Args& args) {
    std::string spec = args.Positional("NAME@REF");
    std::string tag = args.Positional("TAG");
    bool remove = args.TakeFlag("--remove");
    args.ExpectEmpty();
    av1::TagVersionRequest request;
    std::string dataset, ref;
    artifact::SplitDatasetRef(spec, &dataset, &ref);
    request.set_dataset(dataset);
    request.set_ref(ref);
    request.set_tag(tag);
    request.set_remove(remove);
    PrintVersion(Call(&av1::ArtifactService::Stub::TagVersion, request));
    return 0;
  }

  int Put(Args& args) {
    std::string path = args.Positional("FILE");
    bool no_pin = args.TakeFlag("--no-pin");
    args.ExpectEmpty();
    artifact::TransferStats stats;
    av1::Blob blob = Check(client_.UploadFile(path, !no_pin, &stats));
    if (json_) {
      PrintJson(blob);
      return 0;
    }
    std::cout << blob.digest() << "\n";
    std::cerr << "stored " << HumanBytes(static_cast<double>(blob.size())) << "; sent "
              << HumanBytes(static_cast<double>(stats.bytes_sent)) << " in " << stats.chunks_sent
              << " of " << stats.chunks_total << " chunks" << (blob.pinned() ? " (pinned)" : "")
              << "\n";
    return 0;
  }

  int Get(Args& args) {
    std::string digest = args.Positional("DIGEST");
    std::string out = args.Positional("OUT (a file, or - for stdout)");
    args.ExpectEmpty();
    if (out == "-") {
      std::string data = Check(client_.DownloadBytes(digest));
      std::fwrite(data.data(), 1, data.size(), stdout);
      return 0;
    }
    artifact::TransferStats stats;
    Check(client_.DownloadToFile(digest, out, &stats));
    std::cerr << "wrote " << out << " (" << HumanBytes(static_cast<double>(stats.bytes_sent))
              << ", verified)\n";
    return 0;
  }

  int Stat(Args& args) {
    av1::StatBlobRequest request;
    request.set_digest(args.Positional("DIGEST"));
    request.set_include_chunks(args.TakeFlag("--chunks"));
    args.ExpectEmpty();
    auto blob = Call(&av1::ArtifactService::Stub::StatBlob, request);
    if (json_) {
      PrintJson(blob);
      return 0;
    }
    std::cout << "digest:   " << blob.digest() << "\nsize:     " << blob.size()
              << "\nchunks:   " << blob.chunk_count()
              << "\ncreated:  " << FormatTime(blob.create_time_ms())
              << "\npinned:   " << (blob.pinned() ? "yes" : "no") << "\n";
    for (const auto& chunk : blob.chunks()) {
      std::cout << "  " << chunk.digest() << "  " << chunk.size() << "\n";
    }
    return 0;
  }

  int ListBlobs(Args& args) {
    int64_t max = ParseInt(args.Take("--max").value_or("100"), "--max");
    args.ExpectEmpty();
    av1::ListBlobsRequest request;
    std::vector<std::vector<std::string>> rows;
    av1::ListBlobsResponse all;
    do {
      auto page = Call(&av1::ArtifactService::Stub::ListBlobs, request);
      for (const auto& b : page.blobs()) {
        if (all.blobs_size() < max) *all.add_blobs() = b;
      }
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty() && all.blobs_size() < max);
    if (json_) {
      PrintJson(all);
      return 0;
    }
    for (const auto& b : all.blobs()) {
      rows.push_back({b.digest(), std::to_string(b.size()), std::to_string(b.chunk_count()),
                      b.pinned() ? "yes" : "no", FormatTime(b.create_time_ms())});
    }
    PrintTable({"DIGEST", "SIZE", "CHUNKS", "PINNED", "CREATED"}, rows);
    return 0;
  }

  int Gc(Args& args) {
    av1::GarbageCollectRequest request;
    if (auto grace = args.Take("--grace")) {
      int64_t seconds = ParseInt(*grace, "--grace");
      request.set_grace_period_seconds(seconds);
      request.set_zero_grace(seconds == 0);
    }
    request.set_dry_run(args.TakeFlag("--dry-run"));
    args.ExpectEmpty();
    auto response = Call(&av1::ArtifactService::Stub::GarbageCollect, request);
    if (json_) {
      PrintJson(response);
      return 0;
    }
    std::cout << (request.dry_run() ? "would delete " : "deleted ") << response.blobs_deleted()
              << " blobs and " << response.chunks_deleted() << " chunks ("
              << HumanBytes(static_cast<double>(response.bytes_freed()))
              << "); live: " << response.blobs_live() << " blobs, " << response.chunks_live()
              << " chunks; " << response.sessions_expired() << " expired upload sessions; "
              << response.duration_ms() << " ms\n";
    return 0;
  }

  int Scrub(Args& args) {
    av1::ScrubRequest request;
    request.set_repair(args.TakeFlag("--repair"));
    args.ExpectEmpty();
    auto response = Call(&av1::ArtifactService::Stub::Scrub, request);
    if (json_) {
      PrintJson(response);
    } else {
      std::cout << "checked " << response.chunks_checked() << " chunks ("
                << HumanBytes(static_cast<double>(response.bytes_checked())) << ") in "
                << response.duration_ms() << " ms: " << response.corrupt_size() << " corrupt, "
                << response.missing_size() << " missing; " << response.damaged_blob_count()
                << " blobs unreadable";
      if (response.chunks_repaired() > 0) {
        std::cout << "; the bytes of " << response.chunks_repaired() << " corrupt chunks deleted";
      }
      std::cout << "\n";
      for (const auto& d : response.corrupt()) std::cout << "corrupt " << d << "\n";
      for (const auto& d : response.missing()) std::cout << "missing " << d << "\n";
      for (const auto& d : response.damaged_blobs()) std::cout << "unreadable blob " << d << "\n";
      if (response.damaged_blob_count() > 0) {
        std::cout << "to heal: upload the same content again (mlops artifact put FILE, or mlops "
                     "data push of the dataset)\n";
      }
    }
    return response.corrupt_size() + response.missing_size() + response.damaged_blob_count() > 0
               ? 1
               : 0;
  }

  bool json_;
  ArtifactClient client_;
};

}  // namespace

int RunDataCommand(const std::string& group, const std::string& command, Args& args,
                   std::shared_ptr<grpc::Channel> channel, bool json) {
  artifact::ClientOptions options;
  if (auto size = args.Take("--chunk-size")) {
    options.chunker.avg_size = static_cast<size_t>(ParseInt(*size, "--chunk-size"));
    auto valid = artifact::ValidateChunkerParams(options.chunker);
    if (!valid.ok()) throw UsageError{std::string(valid.message())};
  }
  ProgressBar bar(::isatty(STDOUT_FILENO) && !json);
  DataCli cli(channel, json, &bar, options);
  return group == "data" ? cli.Data(command, args) : cli.Artifact(command, args);
}

}  // namespace mlops::cli
