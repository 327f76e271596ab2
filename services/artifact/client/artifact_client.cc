#include "services/artifact/client/artifact_client.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "services/artifact/manifest.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::artifact {
namespace {

constexpr size_t kParallelHashBytes = 8 << 20;
constexpr size_t kBatch = 10000;                   // digests per Find call, blobs per commit
constexpr int64_t kGroupBytes = int64_t{1} << 30;  // content mapped at once while uploading
constexpr size_t kGroupFiles = 4096;
constexpr size_t kSparseBlock = 64 << 10;  // downloads leave all-zero blocks of this size as holes

// Local file-system errors. Never UNAVAILABLE: that code means "the server is away, retry".
absl::Status ErrnoError(std::string_view what, const std::string& path) {
  std::string message = StrCat(what, " ", path, ": ", std::strerror(errno));
  switch (errno) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EISDIR:
    case ENOTDIR:
    case ENODEV:
    case ELOOP:
      return absl::InvalidArgumentError(message);
    default:
      return absl::FailedPreconditionError(message);
  }
}

const char* FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a fifo";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// The process's umask, read without changing it (umask(2) would, racing other threads).
mode_t CurrentUmask() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  mode_t mask = 022;
  if (f == nullptr) return mask;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    unsigned value = 0;
    if (std::sscanf(line, "Umask: %o", &value) == 1) {
      mask = static_cast<mode_t>(value);
      break;
    }
  }
  std::fclose(f);
  return mask;
}

bool AllZero(const char* data, size_t size) {
  return size == 0 || (data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0);
}

bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

// A read-only mapping of a whole regular file (nothing mapped for an empty one). Opens with
// O_NONBLOCK so that a fifo given by mistake is refused instead of blocking.
class Mapping {
 public:
  static absl::StatusOr<std::unique_ptr<Mapping>> Open(const std::string& path) {
    return OpenAt(AT_FDCWD, path, path, /*follow=*/true);
  }
  // `name` relative to `dirfd`; `display` is the path named in errors.
  static absl::StatusOr<std::unique_ptr<Mapping>> OpenAt(int dirfd, const std::string& name,
                                                         const std::string& display, bool follow) {
    int fd = ::openat(dirfd, name.c_str(),
                      O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0) return ErrnoError("open", display);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      absl::Status status = ErrnoError("stat", display);
      ::close(fd);
      return status;
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(
          StrCat(display, ": ", FileKind(st.st_mode), ", not a regular file"));
    }
    auto mapping = std::unique_ptr<Mapping>(new Mapping());
    mapping->size_ = static_cast<size_t>(st.st_size);
    if (mapping->size_ > 0) {
      void* data = ::mmap(nullptr, mapping->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        absl::Status status = ErrnoError("mmap", display);
        ::close(fd);
        return status;
      }
      ::madvise(data, mapping->size_, MADV_SEQUENTIAL);
      mapping->data_ = static_cast<const uint8_t*>(data);
    }
    ::close(fd);
    return mapping;
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  Mapping() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A directory fd that closes itself.
class DirFd {
 public:
  DirFd() = default;
  explicit DirFd(int fd) : fd_(fd) {}
  DirFd(DirFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  DirFd& operator=(DirFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~DirFd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Opens (creating) the directory `rel` (slash-separated, already validated) under `root_fd`,
// one component at a time, never following a symbolic link.
absl::StatusOr<DirFd> OpenDirNoFollow(int root_fd, const std::string& root, std::string_view rel) {
  DirFd current(::dup(root_fd));
  if (current.get() < 0) return ErrnoError("dup", root);
  std::string shown = root;
  while (!rel.empty()) {
    size_t slash = rel.find('/');
    std::string part(rel.substr(0, slash));
    rel = slash == std::string_view::npos ? std::string_view() : rel.substr(slash + 1);
    shown += "/" + part;
    int fd = ::openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      if (::mkdirat(current.get(), part.c_str(), 0777) != 0 && errno != EEXIST) {
        return ErrnoError("mkdir", shown);
      }
      fd = ::openat(current.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      struct stat st;
      if ((errno == ELOOP || errno == ENOTDIR) &&
          ::fstatat(current.get(), part.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return absl::FailedPreconditionError(
              StrCat(shown,
                     " is a symbolic link: pull never writes through a link inside its target "
                     "(remove it, or pull into another directory)"));
        }
        return absl::FailedPreconditionError(
            StrCat(shown, " is ", FileKind(st.st_mode), " where the version has a directory"));
      }
      return ErrnoError("open", shown);
    }
    current = DirFd(fd);
  }
  return current;
}

FileIdentity IdentityOf(const struct stat& st) {
  return {st.st_size, static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<uint64_t>(st.st_ino)};
}

std::string Hex(const RawDigest& digest) { return DigestHex(digest); }

}  // namespace

FileChunks ChunkBytes(const uint8_t* data, size_t size, const ChunkerParams& params) {
  FileChunks out;
  out.size = static_cast<int64_t>(size);
  std::thread whole;
  if (size >= kParallelHashBytes) {
    whole = std::thread([&] { out.digest = Sha256Of(data, size); });
  }
  Chunker chunker(params);
  size_t offset = 0;
  while (offset < size) {
    size_t length = chunker.NextCut(data + offset, size - offset, /*last=*/true);
    out.chunks.push_back({Sha256Of(data + offset, length), static_cast<int64_t>(offset),
                          static_cast<int64_t>(length)});
    offset += length;
  }
  if (whole.joinable()) {
    whole.join();
  } else if (out.chunks.size() == 1) {
    out.digest = out.chunks[0].digest;
  } else {
    out.digest = Sha256Of(data, size);
  }
  return out;
}

void SplitDatasetRef(const std::string& spec, std::string* dataset, std::string* ref) {
  size_t at = spec.find('@');
  *dataset = spec.substr(0, at);
  *ref = at == std::string::npos ? std::string() : spec.substr(at + 1);
}

ArtifactClient::ArtifactClient(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : stub_(v1::ArtifactService::NewStub(channel)), options_(std::move(options)) {}

absl::Status ArtifactClient::UploadFiles(const std::vector<LocalFile>& files, bool pin,
                                         TransferStats* stats) {
  // 1. Which blobs does the server lack?
  std::vector<size_t> missing_files;
  for (size_t start = 0; start < files.size(); start += kBatch) {
    v1::FindMissingBlobsRequest request;
    size_t end = std::min(files.size(), start + kBatch);
    for (size_t i = start; i < end; ++i) request.add_digests(Hex(files[i].digest));
    v1::FindMissingBlobsResponse response;
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpcStatus(stub_->FindMissingBlobs(&context, request, &response)));
    absl::flat_hash_set<std::string> missing(response.missing().begin(), response.missing().end());
    for (size_t i = start; i < end; ++i) {
      if (missing.contains(Hex(files[i].digest))) missing_files.push_back(i);
    }
  }
  if (missing_files.empty() && !pin) return absl::OkStatus();
  // Pinning needs a commit of every blob; an upload of the missing ones.
  std::vector<size_t> to_commit = pin ? std::vector<size_t>() : missing_files;
  if (pin) {
    for (size_t i = 0; i < files.size(); ++i) to_commit.push_back(i);
  }
  absl::flat_hash_set<size_t> needs_upload(missing_files.begin(), missing_files.end());

  v1::UploadSession session;
  {
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpcStatus(stub_->StartUpload(&context, {}, &session)));
  }
  // 2. Per group of files: chunk the ones to upload, ask which chunks are missing, send them,
  // commit the group's blobs.
  size_t next = 0;
  while (next < to_commit.size()) {
    std::vector<std::unique_ptr<Mapping>> mappings;
    std::vector<FileChunks> chunked;
    std::vector<size_t> group;
    int64_t group_bytes = 0;
    while (next < to_commit.size() && group.size() < kGroupFiles &&
           (group.empty() || group_bytes + files[to_commit[next]].size <= kGroupBytes)) {
      size_t index = to_commit[next++];
      group.push_back(index);
      group_bytes += files[index].size;
      if (!needs_upload.contains(index)) {
        mappings.push_back(nullptr);
        chunked.emplace_back();
        continue;
      }
      ASSIGN_OR_RETURN(auto mapping, Mapping::Open(files[index].path));
      FileChunks chunks =
          files[index].chunks && mapping->size() == static_cast<size_t>(files[index].size)
              ? *files[index].chunks
              : ChunkBytes(mapping->data(), mapping->size(), options_.chunker);
      if (chunks.digest != files[index].digest) {
        return absl::AbortedError(StrCat(files[index].path, ": changed while being pushed"));
      }
      mappings.push_back(std::move(mapping));
      chunked.push_back(std::move(chunks));
    }
    // Distinct chunks of the group, with where their bytes are.
    struct Source {
      const uint8_t* data;
      int64_t size;
    };
    std::vector<std::pair<RawDigest, Source>> distinct;
    absl::flat_hash_set<std::string> seen;
    for (size_t g = 0; g < group.size(); ++g) {
      if (!mappings[g]) continue;
      for (const auto& chunk : chunked[g].chunks) {
        if (seen.insert(std::string(DigestBytes(chunk.digest))).second) {
          distinct.push_back({chunk.digest, {mappings[g]->data() + chunk.offset, chunk.size}});
        }
      }
      if (stats) stats->chunks_total += static_cast<int64_t>(chunked[g].chunks.size());
    }
    // Send what is missing; on a dropped connection ask again and send the rest.
    for (int attempt = 1;; ++attempt) {
      std::vector<size_t> missing;
      bool find_failed = false;
      for (size_t start = 0; start < distinct.size() && !find_failed; start += kBatch) {
        v1::FindMissingChunksRequest request;
        request.set_session_id(session.id());
        size_t end = std::min(distinct.size(), start + kBatch);
        for (size_t i = start; i < end; ++i) request.add_digests(Hex(distinct[i].first));
        v1::FindMissingChunksResponse response;
        grpc::ClientContext context;
        grpc::Status status = stub_->FindMissingChunks(&context, request, &response);
        if (!status.ok()) {
          if (!Retryable(status) || attempt >= options_.max_attempts) {
            return FromGrpcStatus(status);
          }
          find_failed = true;
          break;
        }
        absl::flat_hash_set<std::string> set(response.missing().begin(), response.missing().end());
        for (size_t i = start; i < end; ++i) {
          if (set.contains(Hex(distinct[i].first))) missing.push_back(i);
        }
      }
      if (find_failed) {
        if (stats) stats->retries += 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
        continue;
      }
      if (missing.empty()) break;
      grpc::ClientContext context;
      v1::UploadChunksResponse response;
      auto writer = stub_->UploadChunks(&context, &response);
      v1::UploadChunksRequest message;
      message.set_session_id(session.id());
      size_t message_bytes = 0;
      bool write_failed = false;
      auto flush = [&]() {
        if (message.chunks_size() == 0) return;
        if (!writer->Write(message)) write_failed = true;
        message.clear_chunks();
        message.clear_session_id();
        message_bytes = 0;
      };
      for (size_t i : missing) {
        const auto& [digest, source] = distinct[i];
        v1::Chunk* chunk = message.add_chunks();
        chunk->set_digest(Hex(digest));
        chunk->set_data(reinterpret_cast<const char*>(source.data),
                        static_cast<size_t>(source.size));
        message_bytes += static_cast<size_t>(source.size);
        if (stats) {
          stats->chunks_sent += 1;
          stats->bytes_sent += source.size;
        }
        if (message_bytes >= options_.message_bytes) flush();
        if (write_failed) break;
        progress_done_ += source.size;
        if (options_.progress) options_.progress(progress_done_, progress_total_);
      }
      if (!write_failed) flush();
      writer->WritesDone();
      grpc::Status status = writer->Finish();
      if (status.ok()) break;
      if (!Retryable(status) || attempt >= options_.max_attempts) return FromGrpcStatus(status);
      if (stats) stats->retries += 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
    }
    // Commit the group's blobs.
    for (size_t start = 0; start < group.size(); start += kBatch) {
      v1::CommitBlobsRequest request;
      request.set_session_id(session.id());
      request.set_pin(pin);
      size_t end = std::min(group.size(), start + kBatch);
      for (size_t g = start; g < end; ++g) {
        const LocalFile& file = files[group[g]];
        v1::BlobManifest* blob = request.add_blobs();
        blob->set_digest(Hex(file.digest));
        blob->set_size(file.size);
        if (!mappings[g]) {
          // Already stored: committing it again pins it. The server keeps its chunk list.
          v1::StatBlobRequest stat;
          stat.set_digest(Hex(file.digest));
          stat.set_include_chunks(true);
          v1::Blob stored;
          grpc::ClientContext context;
          RETURN_IF_ERROR(FromGrpcStatus(stub_->StatBlob(&context, stat, &stored)));
          for (const auto& ref : stored.chunks()) *blob->add_chunks() = ref;
          continue;
        }
        for (const auto& chunk : chunked[g].chunks) {
          v1::ChunkRef* ref = blob->add_chunks();
          ref->set_digest(Hex(chunk.digest));
          ref->set_size(chunk.size);
        }
        if (stats) stats->blobs_uploaded += 1;
      }
      v1::CommitBlobsResponse response;
      grpc::ClientContext context;
      RETURN_IF_ERROR(FromGrpcStatus(stub_->CommitBlobs(&context, request, &response)));
    }
  }
  grpc::ClientContext context;
  v1::FinishUploadRequest finish;
  finish.set_session_id(session.id());
  v1::FinishUploadResponse finished;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->FinishUpload(&context, finish, &finished)));
  return absl::OkStatus();
}

absl::StatusOr<v1::Blob> ArtifactClient::UploadFile(const std::string& path, bool pin,
                                                    TransferStats* stats) {
  TransferStats local;
  if (stats == nullptr) stats = &local;
  LocalFile file;
  file.path = path;
  {
    ASSIGN_OR_RETURN(auto mapping, Mapping::Open(path));
    auto chunks = std::make_shared<FileChunks>(
        ChunkBytes(mapping->data(), mapping->size(), options_.chunker));
    file.digest = chunks->digest;
    file.size = chunks->size;
    file.chunks = std::move(chunks);
  }
  stats->files += 1;
  stats->files_hashed += 1;
  stats->bytes_total += file.size;
  progress_done_ = 0;
  progress_total_ = file.size;
  RETURN_IF_ERROR(UploadFiles({file}, pin, stats));
  v1::StatBlobRequest request;
  request.set_digest(Hex(file.digest));
  v1::Blob blob;
  grpc::ClientContext context;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->StatBlob(&context, request, &blob)));
  return blob;
}

absl::StatusOr<v1::Blob> ArtifactClient::UploadBytes(std::string_view data, bool pin,
                                                     TransferStats* stats) {
  // Through a temporary file so that one code path (mapped files) does every upload.
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string path = StrCat(dir, "/mlops-upload-", NewId());
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError("create", path);
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n <= 0) {
        absl::Status status = ErrnoError("write", path);
        ::close(fd);
        ::unlink(path.c_str());
        return status;
      }
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  auto blob = UploadFile(path, pin, stats);
  ::unlink(path.c_str());
  return blob;
}

absl::Status ArtifactClient::DownloadToFile(const std::string& digest, const std::string& path,
                                            TransferStats* stats) {
  std::filesystem::path target(path);
  std::string parent = target.parent_path().empty() ? "." : target.parent_path().string();
  DirFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return ErrnoError("open", parent);
  return DownloadAt(dir.get(), target.filename().string(), path, digest, 0666, stats);
}

absl::Status ArtifactClient::DownloadAt(int dirfd, const std::string& name,
                                        const std::string& display, const std::string& digest,
                                        uint32_t mode, TransferStats* stats) {
  RawDigest expected;
  if (!ParseDigestHex(digest, &expected)) {
    return absl::InvalidArgumentError(StrCat("digest \"", digest, "\": not a SHA-256 digest"));
  }
  std::string tmp = StrCat(".", name, ".mlops-tmp-", NewId().substr(20));
  // The umask applies to `mode` here, as for any file a program creates.
  int fd = ::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    static_cast<mode_t>(mode & 0777));
  if (fd < 0) return ErrnoError("create", display);
  auto fail = [&](absl::Status status) {
    ::close(fd);
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return status;
  };
  Sha256 hash;
  int64_t received = 0;
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext context;
    v1::DownloadRequest request;
    request.set_digest(digest);
    request.set_offset(received);
    auto reader = stub_->Download(&context, request);
    v1::DownloadResponse response;
    while (reader->Read(&response)) {
      if (response.blob_size() > 0 && progress_total_ == 0) progress_total_ = response.blob_size();
      if (response.data().empty()) continue;
      if (response.offset() != received) {
        context.TryCancel();
        return fail(absl::DataLossError(StrCat("blob ", digest, ": data at offset ",
                                               std::to_string(response.offset()), ", expected ",
                                               std::to_string(received))));
      }
      const std::string& data = response.data();
      hash.Update(data);
      // Zero blocks are not written: they stay holes, so a sparse file comes back sparse (the
      // size is set at the end).
      for (size_t block = 0; block < data.size(); block += kSparseBlock) {
        size_t length = std::min(kSparseBlock, data.size() - block);
        const char* bytes = data.data() + block;
        if (AllZero(bytes, length)) continue;
        size_t done = 0;
        while (done < length) {
          ssize_t n = ::pwrite(fd, bytes + done, length - done,
                               static_cast<off_t>(received + static_cast<int64_t>(block + done)));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            context.TryCancel();
            return fail(ErrnoError("write", display));
          }
          done += static_cast<size_t>(n);
        }
      }
      received += static_cast<int64_t>(data.size());
      if (stats) stats->bytes_sent += static_cast<int64_t>(data.size());
      progress_done_ += static_cast<int64_t>(data.size());
      if (options_.progress) options_.progress(progress_done_, progress_total_);
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) break;
    if (!Retryable(status) || attempt >= options_.max_attempts) {
      return fail(FromGrpcStatus(status));
    }
    if (stats) stats->retries += 1;  // resume from `received`
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
  }
  if (::ftruncate(fd, static_cast<off_t>(received)) != 0) {
    return fail(ErrnoError("truncate", display));
  }
  RawDigest actual = hash.Final();
  if (actual != expected) {
    return fail(absl::DataLossError(
        StrCat("blob ", digest, ": the bytes received hash to ", DigestHex(actual))));
  }
  if (options_.sync_downloads && !in_pull_ && ::fdatasync(fd) != 0) {
    return fail(ErrnoError("fdatasync", display));
  }
  ::close(fd);
  // rename replaces whatever is at `name`, a symbolic link included, and never follows it.
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    absl::Status status = ErrnoError("rename", display);
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ArtifactClient::DownloadBytes(const std::string& digest) {
  grpc::ClientContext context;
  v1::DownloadRequest request;
  request.set_digest(digest);
  auto reader = stub_->Download(&context, request);
  v1::DownloadResponse response;
  std::string out;
  while (reader->Read(&response)) out += response.data();
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  RawDigest expected;
  if (!ParseDigestHex(digest, &expected) || Sha256Of(out) != expected) {
    return absl::DataLossError(StrCat("blob ", digest, ": the bytes received do not match"));
  }
  return out;
}

absl::StatusOr<PushResult> ArtifactClient::Push(const std::string& source,
                                                const std::string& dataset,
                                                const std::vector<std::string>& tags,
                                                const std::string& message, HashCache* cache,
                                                const PushOptions& push_options) {
  PushResult result;
  TransferStats& stats = result.stats;
  std::error_code ec;
  std::filesystem::path root = std::filesystem::absolute(source, ec);
  if (ec) return absl::InvalidArgumentError(StrCat(source, ": ", ec.message()));
  struct stat root_stat;  // follows a symbolic link named on the command line
  if (::stat(root.c_str(), &root_stat) != 0) return ErrnoError("stat", source);
  std::vector<LocalFile> files;
  auto add = [&](const std::filesystem::path& path, std::string rel,
                 const struct stat& st) -> absl::Status {
    RETURN_IF_ERROR(ValidatePath(rel));
    LocalFile file;
    file.path = path.string();
    file.rel_path = std::move(rel);
    file.size = st.st_size;
    file.mode = st.st_mode & 0777;  // permission bits only: never setuid, setgid or sticky
    file.identity = IdentityOf(st);
    files.push_back(std::move(file));
    return absl::OkStatus();
  };
  if (S_ISREG(root_stat.st_mode)) {
    RETURN_IF_ERROR(add(root, root.filename().string(), root_stat));
  } else if (S_ISDIR(root_stat.st_mode)) {
    auto options = push_options.follow_symlinks
                       ? std::filesystem::directory_options::follow_directory_symlink
                       : std::filesystem::directory_options::none;
    // The directories from the root down to the current entry, so that a link to one of them
    // (a loop) is not followed forever. A directory reached by two paths is pushed under both.
    std::vector<std::pair<dev_t, ino_t>> ancestors{{root_stat.st_dev, root_stat.st_ino}};
    for (auto it = std::filesystem::recursive_directory_iterator(root, options, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      const std::filesystem::path& path = it->path();
      std::string rel = path.lexically_relative(root).generic_string();
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0) return ErrnoError("stat", path.string());
      if (S_ISLNK(st.st_mode)) {
        if (!push_options.follow_symlinks || ::stat(path.c_str(), &st) != 0) {
          ++result.symlinks_skipped;  // not followed, or dangling
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        ancestors.resize(static_cast<size_t>(it.depth()) + 1);
        if (std::find(ancestors.begin(), ancestors.end(), std::make_pair(st.st_dev, st.st_ino)) !=
            ancestors.end()) {
          it.disable_recursion_pending();
          ++result.symlinks_skipped;  // a link back up the tree
          continue;
        }
        ancestors.emplace_back(st.st_dev, st.st_ino);
        std::error_code empty_ec;
        if (std::filesystem::is_empty(path, empty_ec) && !empty_ec) ++result.empty_dirs;
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        ++result.special_skipped;  // fifos, sockets, devices: no content to version
        continue;
      }
      RETURN_IF_ERROR(add(path, std::move(rel), st));
    }
    if (ec) return ErrnoError("read directory", root.string());
  } else {
    return absl::InvalidArgumentError(StrCat(source, ": ", FileKind(root_stat.st_mode),
                                             "; push takes a directory or a regular file"));
  }
  // Digests: from the cache when the file is unchanged, otherwise hashed.
  for (LocalFile& file : files) {
    stats.files += 1;
    stats.bytes_total += file.size;
    if (cache && cache->Lookup(file.path, file.identity, &file.digest)) continue;
    ASSIGN_OR_RETURN(auto mapping, Mapping::Open(file.path));
    auto chunks = std::make_shared<FileChunks>(
        ChunkBytes(mapping->data(), mapping->size(), options_.chunker));
    file.digest = chunks->digest;
    // Keep the chunk lists of large files (small ones are cheap to redo) for the upload.
    if (chunks->chunks.size() > 1) file.chunks = std::move(chunks);
    stats.files_hashed += 1;
    if (cache) cache->Put(file.path, file.identity, file.digest);
  }
  std::vector<ManifestEntry> manifest;
  manifest.reserve(files.size());
  for (const LocalFile& file : files) {
    manifest.push_back({file.rel_path, file.digest, file.size, file.mode});
  }
  ASSIGN_OR_RETURN(RawDigest version_digest, SortAndHashManifest(&manifest));
  std::string version_hex = DigestHex(version_digest);

  // Already a version? Then only tags move.
  {
    v1::GetVersionRequest request;
    request.set_dataset(dataset);
    request.set_ref(version_hex);
    grpc::ClientContext context;
    grpc::Status status = stub_->GetVersion(&context, request, &result.version);
    if (status.ok()) {
      result.unchanged = true;
      // Nothing new, but blobs the server found damaged since are sent again (healing them).
      // One cheap call says whether there is anything damaged at all.
      v1::FindMissingBlobsResponse damage;
      grpc::ClientContext damage_context;
      RETURN_IF_ERROR(FromGrpcStatus(stub_->FindMissingBlobs(&damage_context, {}, &damage)));
      if (damage.damaged_chunks() > 0) RETURN_IF_ERROR(UploadFiles(files, /*pin=*/false, &stats));
      std::vector<std::string> move = tags;
      move.push_back("latest");
      for (const std::string& tag : move) {
        if (std::find(result.version.tags().begin(), result.version.tags().end(), tag) !=
            result.version.tags().end()) {
          continue;
        }
        v1::TagVersionRequest tag_request;
        tag_request.set_dataset(dataset);
        tag_request.set_ref(version_hex);
        tag_request.set_tag(tag);
        grpc::ClientContext tag_context;
        RETURN_IF_ERROR(
            FromGrpcStatus(stub_->TagVersion(&tag_context, tag_request, &result.version)));
      }
      result.version.set_already_existed(true);
      return result;
    }
    if (status.error_code() != grpc::StatusCode::NOT_FOUND) return FromGrpcStatus(status);
  }
  progress_done_ = 0;
  progress_total_ = stats.bytes_total;
  RETURN_IF_ERROR(UploadFiles(files, /*pin=*/false, &stats));

  grpc::ClientContext context;
  auto writer = stub_->CreateVersion(&context, &result.version);
  v1::CreateVersionRequest request;
  auto* header = request.mutable_header();
  header->set_dataset(dataset);
  header->set_message(message);
  for (const std::string& tag : tags) header->add_tags(tag);
  header->set_expected_digest(version_hex);
  header->set_create_dataset(true);
  header->set_request_id(push_options.request_id);
  for (size_t i = 0; i < manifest.size(); ++i) {
    v1::VersionEntry* entry = request.add_entries();
    entry->set_path(manifest[i].path);
    entry->set_digest(DigestHex(manifest[i].digest));
    entry->set_size(manifest[i].size);
    entry->set_mode(manifest[i].mode);
    if (request.entries_size() == static_cast<int>(kBatch) || i + 1 == manifest.size()) {
      if (!writer->Write(request)) break;
      request.Clear();
    }
  }
  if (manifest.empty()) writer->Write(request);
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return result;
}

absl::StatusOr<PullResult> ArtifactClient::Pull(const std::string& dataset, const std::string& ref,
                                                const std::string& dest, HashCache* cache,
                                                const PullOptions& pull_options) {
  PullResult result;
  std::error_code ec;
  std::filesystem::create_directories(dest, ec);
  if (ec) return absl::FailedPreconditionError(StrCat("create ", dest, ": ", ec.message()));
  std::string root = std::filesystem::absolute(dest).lexically_normal().string();
  if (root.size() > 1 && root.back() == '/') root.pop_back();
  // The target itself may be a link the user named; nothing inside it is followed.
  DirFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.get() < 0) return ErrnoError("open", root);
  const mode_t umask = CurrentUmask();
  {
    // Resolve the ref once, so that every page lists the same version even if a tag moves.
    v1::GetVersionRequest request;
    request.set_dataset(dataset);
    request.set_ref(ref);
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpcStatus(stub_->GetVersion(&context, request, &result.version)));
  }
  progress_done_ = 0;
  progress_total_ = result.version.total_bytes();
  // One syncfs at the end instead of an fdatasync per file (many small files).
  in_pull_ = true;
  struct Reset {
    bool* flag;
    ~Reset() { *flag = false; }
  } reset{&in_pull_};
  // Entries come in path order: the parent directory of the last file is kept open.
  std::string parent_rel;
  DirFd parent;
  std::string token;
  bool first = true;
  while (first || !token.empty()) {
    first = false;
    v1::ListVersionEntriesRequest request;
    request.set_dataset(dataset);
    request.set_ref(result.version.digest());
    request.set_page_size(10000);
    request.set_page_token(token);
    v1::ListVersionEntriesResponse response;
    grpc::ClientContext context;
    RETURN_IF_ERROR(FromGrpcStatus(stub_->ListVersionEntries(&context, request, &response)));
    token = response.next_page_token();
    for (const v1::VersionEntry& entry : response.entries()) {
      // Never trust a path from the wire with the file system.
      RETURN_IF_ERROR(ValidatePath(entry.path()));
      size_t slash = entry.path().rfind('/');
      std::string dir_rel = slash == std::string::npos ? "" : entry.path().substr(0, slash);
      std::string name = slash == std::string::npos ? entry.path() : entry.path().substr(slash + 1);
      if (parent.get() < 0 || dir_rel != parent_rel) {
        ASSIGN_OR_RETURN(parent, OpenDirNoFollow(root_fd.get(), root, dir_rel));
        parent_rel = dir_rel;
      }
      std::string path = StrCat(root, "/", entry.path());
      // Permission bits only (older versions may list more), and the umask applies.
      const mode_t wanted = static_cast<mode_t>(entry.mode() & 0777) & ~umask;
      result.stats.files += 1;
      result.stats.bytes_total += entry.size();
      struct stat st;
      if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) && st.st_size == entry.size()) {
        RawDigest have;
        bool trusted = !pull_options.verify && cache && cache->Lookup(path, IdentityOf(st), &have);
        if (trusted) {
          result.files_trusted += 1;
        } else {
          ASSIGN_OR_RETURN(auto mapping, Mapping::OpenAt(parent.get(), name, path, false));
          have = Sha256Of(mapping->data(), mapping->size());
          result.stats.files_hashed += 1;
          if (cache) cache->Put(path, IdentityOf(st), have);
        }
        if (DigestHex(have) == entry.digest()) {
          if ((st.st_mode & 07777) != wanted) ::fchmodat(parent.get(), name.c_str(), wanted, 0);
          result.files_already_present += 1;
          progress_done_ += entry.size();
          continue;
        }
      }
      RETURN_IF_ERROR(
          DownloadAt(parent.get(), name, path, entry.digest(), entry.mode() & 0777, &result.stats));
      result.files_written += 1;
      if (cache && ::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        RawDigest digest;
        ParseDigestHex(entry.digest(), &digest);
        cache->Put(path, IdentityOf(st), digest);
      }
    }
  }
  if (options_.sync_downloads && result.files_written > 0 && ::syncfs(root_fd.get()) != 0) {
    return ErrnoError("syncfs", root);
  }
  return result;
}

}  // namespace mlops::artifact
