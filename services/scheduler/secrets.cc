#include "services/scheduler/secrets.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/escaping.h"
#include "services/common/ids.h"
#include "services/common/strings.h"

namespace mlops::scheduler {

std::string SecretVersion(std::string_view version_key, std::string_view secret,
                          std::string_view key, std::string_view value) {
  std::string message;
  for (std::string_view field : {secret, key, value}) {
    message += std::to_string(field.size());
    message += ':';
    message += field;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), version_key.data(), static_cast<int>(version_key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &length);
  OPENSSL_cleanse(message.data(), message.size());
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(mac), 16));
}

absl::StatusOr<std::string> LoadOrCreateVersionKey(const std::string& path) {
  constexpr size_t kBytes = 32;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (key.size() != kBytes) {
        return absl::FailedPreconditionError(
            StrCat("secret version key ", path, ": expected ", std::to_string(kBytes),
                   " bytes, found ", std::to_string(key.size()), " (delete it to make a new one)"));
      }
      return key;
    }
    std::string key(kBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), kBytes) != 1) {
      return absl::FailedPreconditionError("secret version key: no random bytes");
    }
    // Written aside and linked into place: two schedulers starting at once agree on one key.
    const std::string tmp = StrCat(path, ".", NewId());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      return absl::FailedPreconditionError(
          StrCat("secret version key ", path, ": ", std::strerror(errno)));
    }
    bool written =
        ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
    ::close(fd);
    bool linked = written && ::link(tmp.c_str(), path.c_str()) == 0;
    int link_errno = errno;
    ::unlink(tmp.c_str());
    if (linked) return key;
    if (!written || link_errno != EEXIST) {
      return absl::FailedPreconditionError(
          StrCat("secret version key ", path, ": ", std::strerror(link_errno)));
    }
  }
  return absl::FailedPreconditionError(StrCat("secret version key ", path, ": cannot be read"));
}

Redactor::Redactor(std::vector<Redaction> redactions) {
  for (Redaction& redaction : redactions) {
    if (redaction.value.empty()) continue;
    longest_ = std::max(longest_, redaction.value.size());
    redactions_.push_back(std::move(redaction));
  }
}

std::string Redactor::Feed(std::string_view data) {
  if (redactions_.empty()) return std::string(data);
  pending_.append(data);
  return Drain(false);
}

std::string Redactor::Finish() {
  std::string out = Drain(true);
  pending_.clear();
  return out;
}

size_t Redactor::HoldFrom(size_t from) const {
  const size_t size = pending_.size();
  for (size_t q = std::max(from, size - std::min(size, longest_ - 1)); q < size; ++q) {
    const size_t tail = size - q;
    for (const Redaction& redaction : redactions_) {
      if (redaction.value.size() > tail &&
          redaction.value.compare(0, tail, pending_, q, tail) == 0) {
        return q;
      }
    }
  }
  return size;
}

std::string Redactor::Drain(bool final) {
  std::string out;
  size_t at = 0;
  for (;;) {
    // From `hold` on, the text may still become a value (or a longer one) with the next piece:
    // nothing there is decided yet. Before it, every match is final.
    const size_t hold = final ? pending_.size() : HoldFrom(at);
    size_t best = std::string::npos;
    const Redaction* match = nullptr;
    for (const Redaction& redaction : redactions_) {
      size_t found = pending_.find(redaction.value, at);
      if (found == std::string::npos || found >= hold) continue;
      if (found < best || (found == best && redaction.value.size() > match->value.size())) {
        best = found;
        match = &redaction;
      }
    }
    if (match == nullptr) {
      out.append(pending_, at, hold - at);
      pending_.erase(0, hold);
      return out;
    }
    out.append(pending_, at, best - at);
    out.append(match->replacement);
    at = best + match->value.size();
  }
}

absl::Status RedactFile(const std::string& path, const std::vector<Redaction>& redactions) {
  Redactor redactor(redactions);
  if (redactor.empty()) return absl::OkStatus();
  std::FILE* in = std::fopen(path.c_str(), "rb");
  if (in == nullptr) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError(StrCat("redacting ", path, ": ", std::strerror(errno)));
  }
  struct stat st = {};
  ::fstat(::fileno(in), &st);
  const std::string tmp = path + ".redacted";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
  std::FILE* out = fd < 0 ? nullptr : ::fdopen(fd, "wb");
  if (out == nullptr) {
    int error = errno;
    if (fd >= 0) ::close(fd);
    std::fclose(in);
    return absl::FailedPreconditionError(StrCat("redacting ", path, ": ", std::strerror(error)));
  }
  std::string buffer(64 << 10, '\0');
  bool ok = true;
  auto put = [&](const std::string& text) {
    ok = ok && std::fwrite(text.data(), 1, text.size(), out) == text.size();
  };
  for (;;) {
    size_t n = std::fread(buffer.data(), 1, buffer.size(), in);
    if (n == 0) break;
    put(redactor.Feed(std::string_view(buffer.data(), n)));
  }
  ok = ok && !std::ferror(in);
  put(redactor.Finish());
  std::fclose(in);
  ok = std::fflush(out) == 0 && ok;
  std::fclose(out);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int error = errno;
    std::remove(tmp.c_str());
    return absl::FailedPreconditionError(StrCat("redacting ", path, ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace mlops::scheduler
