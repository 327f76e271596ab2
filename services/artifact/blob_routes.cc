#include "services/artifact/blob_routes.h"

#include <civetweb.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "mlops/artifact/v1/artifact.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/json_api.h"

namespace mlops::artifact {
namespace {

// Digits only, no sign, no overflow.
bool ParseCount(std::string_view text, int64_t* out) {
  if (text.empty()) return false;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return error == std::errc() && end == text.data() + text.size() && *out >= 0;
}

int MethodNotAllowed(mg_connection* conn, const char* allow) {
  const mg_request_info* info = mg_get_request_info(conn);
  SendReply(conn, 405, "application/json",
            JsonError(grpc::Status(
                grpc::StatusCode::INVALID_ARGUMENT,
                absl::StrCat(info->local_uri, " takes ", allow, ", not ", info->request_method))),
            {{"Allow", allow}});
  return 405;
}

int ServeBlob(ServiceHost* host, mg_connection* conn, std::string digest) {
  const mg_request_info* info = mg_get_request_info(conn);
  const bool head = std::strcmp(info->request_method, "HEAD") == 0;
  if (!head && std::strcmp(info->request_method, "GET") != 0) {
    return MethodNotAllowed(conn, "GET, HEAD");
  }
  if (absl::StartsWith(digest, "sha256:")) digest = digest.substr(7);
  const std::string project = QueryParameter(conn, "project").value_or("");
  auto stub = v1::ArtifactService::NewStub(host->CallerChannel(conn, project));

  v1::Blob blob;
  {
    grpc::ClientContext context;
    v1::StatBlobRequest request;
    request.set_digest(digest);
    grpc::Status status = stub->StatBlob(&context, request, &blob);
    if (!status.ok()) return SendError(conn, status);
  }
  // Content-addressed: the digest is a strong validator, and the bytes never change.
  const std::string etag = absl::StrCat("\"sha256:", blob.digest(), "\"");
  const char* if_none_match = mg_get_header(conn, "If-None-Match");
  if (if_none_match != nullptr && (etag == if_none_match || std::strcmp(if_none_match, "*") == 0)) {
    mg_response_header_start(conn, 304);
    mg_response_header_add(conn, "ETag", etag.c_str(), -1);
    mg_response_header_send(conn);
    return 304;
  }
  int64_t begin = 0, end = blob.size();
  bool whole = true;
  if (!ParseByteRange(mg_get_header(conn, "Range"), blob.size(), &begin, &end, &whole)) {
    std::string range = absl::StrCat("bytes */", blob.size());
    SendReply(conn, 416, "application/json",
              JsonError(grpc::Status(
                  grpc::StatusCode::OUT_OF_RANGE,
                  absl::StrCat("the range is outside the blob's ", blob.size(), " bytes"))),
              {{"Content-Range", range}});
    return 416;
  }
  if (whole) begin = 0, end = blob.size();
  const int code = whole ? 200 : 206;
  mg_response_header_start(conn, code);
  mg_response_header_add(conn, "Content-Type", "application/octet-stream", -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(end - begin).c_str(), -1);
  mg_response_header_add(conn, "Accept-Ranges", "bytes", -1);
  mg_response_header_add(conn, "ETag", etag.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "private, max-age=31536000, immutable", -1);
  if (!whole) {
    std::string range = absl::StrCat("bytes ", begin, "-", end - 1, "/", blob.size());
    mg_response_header_add(conn, "Content-Range", range.c_str(), -1);
  }
  mg_response_header_send(conn);
  if (head || end == begin) return code;

  grpc::ClientContext context;
  v1::DownloadRequest request;
  request.set_digest(digest);
  request.set_offset(begin);
  request.set_length(end - begin);
  std::unique_ptr<grpc::ClientReader<v1::DownloadResponse>> reader =
      stub->Download(&context, request);
  v1::DownloadResponse piece;
  int64_t sent = 0;
  while (reader->Read(&piece)) {
    if (mg_write(conn, piece.data().data(), piece.data().size()) <= 0 && !piece.data().empty()) {
      context.TryCancel();  // the client went away
      break;
    }
    sent += static_cast<int64_t>(piece.data().size());
  }
  // A failure now (DATA_LOSS of a damaged chunk) cannot change the status line: the body stops
  // short of its Content-Length, and civetweb closes the idle connection after its keep-alive
  // timeout (500 ms), which the client sees as a truncated response.
  (void)reader->Finish();
  (void)sent;
  return code;
}

// Streams the request body into a temporary file (0600, random name, removed after), hashing it.
// Returns the HTTP status sent on failure, 0 on success.
int ReceiveBody(mg_connection* conn, const std::string& path, std::string* sha256_hex,
                int64_t* size) {
  const mg_request_info* info = mg_get_request_info(conn);
  auto too_big = [&] {
    SendReply(conn, 413, "application/json",
              JsonError(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                     absl::StrCat("an upload over ", kMaxHttpUploadBytes,
                                                  " bytes: use the chunked upload protocol"))));
    return 413;
  };
  if (info->content_length > kMaxHttpUploadBytes) return too_big();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return SendError(conn,
                     grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  absl::StrCat("cannot stage the upload: ", std::strerror(errno))));
  }
  EVP_MD_CTX* hash = EVP_MD_CTX_new();
  EVP_DigestInit_ex(hash, EVP_sha256(), nullptr);
  std::string buffer(1 << 20, '\0');  // on the heap: civetweb's threads have small stacks
  *size = 0;
  int result = 0;
  while (result == 0) {
    int n = mg_read(conn, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      result = SendError(
          conn, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the request body was cut short"));
      break;
    }
    *size += n;
    if (*size > kMaxHttpUploadBytes) {
      result = too_big();
      break;
    }
    EVP_DigestUpdate(hash, buffer.data(), n);
    for (int done = 0; done < n;) {
      ssize_t w = ::write(fd, buffer.data() + done, n - done);
      if (w <= 0) {
        result = SendError(
            conn, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               absl::StrCat("cannot stage the upload: ", std::strerror(errno))));
        break;
      }
      done += static_cast<int>(w);
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(hash, digest, &length);
  EVP_MD_CTX_free(hash);
  if (::close(fd) != 0 && result == 0) {
    result = SendError(
        conn, grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot stage the upload: close failed"));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  sha256_hex->clear();
  for (unsigned int i = 0; i < length; ++i) {
    sha256_hex->push_back(kHex[digest[i] >> 4]);
    sha256_hex->push_back(kHex[digest[i] & 15]);
  }
  return result;
}

int UploadBlob(ServiceHost* host, mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (std::strcmp(info->request_method, "POST") != 0) return MethodNotAllowed(conn, "POST");
  const std::string project = QueryParameter(conn, "project").value_or("");
  const std::string pin = QueryParameter(conn, "pin").value_or("false");
  if (pin != "true" && pin != "false") {
    return SendError(conn, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        "pin: true or false, not '" + pin + "'"));
  }
  std::string expected = QueryParameter(conn, "digest").value_or("");
  if (absl::StartsWith(expected, "sha256:")) expected = expected.substr(7);

  const std::string path =
      (std::filesystem::temp_directory_path() / ("mlops-http-upload-" + NewId())).string();
  std::string actual;
  int64_t size = 0;
  int failed = ReceiveBody(conn, path, &actual, &size);
  struct Remove {
    std::string path;
    ~Remove() { ::unlink(path.c_str()); }
  } remove{path};
  if (failed != 0) return failed;
  if (!expected.empty() && expected != actual) {
    return SendError(conn, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        absl::StrCat("the body's digest is ", actual, ", not ",
                                                     expected, ": nothing stored")));
  }
  ArtifactClient client(host->CallerChannel(conn, project));
  TransferStats stats;
  absl::StatusOr<v1::Blob> blob = client.UploadFile(path, pin == "true", &stats);
  if (!blob.ok()) return SendError(conn, ToGrpcStatus(blob.status()));
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(*blob, &json);
  SendReply(conn, 200, "application/json", json);
  return 200;
}

}  // namespace

bool ParseByteRange(const char* header, int64_t size, int64_t* begin, int64_t* end, bool* whole) {
  *whole = true;
  if (header == nullptr) return true;
  std::string_view spec = header;
  if (!spec.starts_with("bytes=") || spec.find(',') != std::string_view::npos) return true;
  spec.remove_prefix(6);
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return true;
  std::string_view first = spec.substr(0, dash), last = spec.substr(dash + 1);
  int64_t a = 0, b = 0;
  if (first.empty()) {  // the last `b` bytes
    if (!ParseCount(last, &b)) return true;
    if (b == 0 || size == 0) return false;
    *begin = size - std::min(b, size);
    *end = size;
  } else {
    if (!ParseCount(first, &a)) return true;
    if (last.empty()) {
      b = size - 1;
    } else if (!ParseCount(last, &b) || b < a) {
      return true;  // not a valid range: ignored
    }
    if (a >= size) return false;
    *begin = a;
    *end = std::min(b, size - 1) + 1;
  }
  *whole = false;
  return true;
}

void AddBlobRoutes(ServiceHost& host) {
  host.AddApiRoute("artifact/blobs", [host = &host](mg_connection* conn, const std::string& rest) {
    if (rest.empty() || rest == "/") return UploadBlob(host, conn);
    std::string digest = rest.substr(1);
    if (digest.find('/') != std::string::npos) {
      return SendError(conn, grpc::Status(grpc::StatusCode::NOT_FOUND, "no such route"));
    }
    return ServeBlob(host, conn, digest);
  });
}

}  // namespace mlops::artifact
