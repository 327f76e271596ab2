// The artifact service over real gRPC (loopback, port 0) through the client library: concurrent
// uploads of the same content, the stream contracts and their bad inputs, and what stays stored.
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "mlops/artifact/v1/artifact.grpc.pb.h"
#include "services/artifact/artifact_component.h"
#include "services/artifact/client/artifact_client.h"
#include "tests/testing/testing.h"

namespace mlops::artifact {
namespace {

using ::mlops::testing::GrpcStatusIs;
using ::mlops::testing::RandomBytes;
using ::mlops::testing::StatusIs;
using ::testing::HasSubstr;

class ArtifactServiceTest : public ::testing::Test {
 protected:
  ArtifactServiceTest() : server_({OpenArtifactComponent}, /*metrics=*/false) {}

  ClientOptions Small() {
    ClientOptions options;
    options.chunker.avg_size = 64 << 10;
    return options;
  }

  testing::InProcessServer server_;
  testing::TempDir files_;
};

TEST_F(ArtifactServiceTest, UploadDownloadRoundTripsAndDedupsAcrossBlobs) {
  ArtifactClient client(server_.NewChannel(), Small());
  std::string a = RandomBytes(2 << 20, 1);
  std::string b = a.substr(0, 1 << 20) + "inserted" + a.substr(1 << 20);
  TransferStats first, second;
  auto blob_a = client.UploadBytes(a, true, &first);
  ASSERT_OK(blob_a.status());
  EXPECT_EQ(blob_a->digest(), DigestHex(Sha256Of(a)));
  EXPECT_EQ(first.bytes_sent, static_cast<int64_t>(a.size()));
  auto blob_b = client.UploadBytes(b, true, &second);
  ASSERT_OK(blob_b.status());
  EXPECT_LT(second.bytes_sent, static_cast<int64_t>(b.size()) / 5);
  EXPECT_EQ(*client.DownloadBytes(blob_b->digest()), b);
  std::string path = files_.path() + "/a.out";
  ASSERT_OK(client.DownloadToFile(blob_a->digest(), path, nullptr));
  std::ifstream in(path, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), a);
  // Ranges.
  v1::DownloadRequest range;
  range.set_digest(blob_a->digest());
  range.set_offset(1000);
  range.set_length(70000);
  grpc::ClientContext context;
  auto reader = client.stub().Download(&context, range);
  v1::DownloadResponse piece;
  std::string got;
  while (reader->Read(&piece)) got += piece.data();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, a.substr(1000, 70000));
}

TEST_F(ArtifactServiceTest, ConcurrentUploadsOfTheSameContentAgree) {
  std::string data = RandomBytes(3 << 20, 2);
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<v1::Blob>> results(4, absl::UnknownError("not run"));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      ArtifactClient client(server_.NewChannel(), Small());
      results[static_cast<size_t>(i)] = client.UploadBytes(data, i % 2 == 0, nullptr);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : results) {
    ASSERT_OK(r.status());
    EXPECT_EQ(r->digest(), DigestHex(Sha256Of(data)));
  }
  ArtifactClient client(server_.NewChannel(), Small());
  EXPECT_EQ(*client.DownloadBytes(results[0]->digest()), data);
  v1::ScrubRequest scrub;
  v1::ScrubResponse report;
  grpc::ClientContext context;
  ASSERT_TRUE(client.stub().Scrub(&context, scrub, &report).ok());
  EXPECT_EQ(report.corrupt_size() + report.missing_size(), 0);
}

TEST_F(ArtifactServiceTest, DownloadEndsWithDataLossAtACorruptChunkForWholeBlobsAndRanges) {
  ArtifactClient client(server_.NewChannel());  // 512 KiB chunks: stored as files
  std::string data = RandomBytes(3 << 20, 5);
  auto blob = client.UploadBytes(data, true, nullptr);
  ASSERT_OK(blob.status());
  v1::StatBlobRequest stat;
  stat.set_digest(blob->digest());
  stat.set_include_chunks(true);
  v1::Blob stored;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(client.stub().StatBlob(&context, stat, &stored).ok());
  }
  ASSERT_GE(stored.chunks_size(), 3);
  const std::string& chunk = stored.chunks(1).digest();
  int64_t chunk_offset = stored.chunks(0).size();
  std::string file = server_.data_dir() + "/artifact/chunks/" + chunk.substr(0, 2) + "/" + chunk;
  ASSERT_TRUE(std::filesystem::exists(file)) << file;
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);
    f.put(static_cast<char>(data[static_cast<size_t>(chunk_offset) + 7] ^ 0x20));
  }
  for (auto [offset, length] : {std::pair<int64_t, int64_t>{0, 0}, {chunk_offset + 100, 10}}) {
    v1::DownloadRequest request;
    request.set_digest(blob->digest());
    request.set_offset(offset);
    request.set_length(length);
    grpc::ClientContext context;
    auto reader = client.stub().Download(&context, request);
    v1::DownloadResponse piece;
    std::string got;
    while (reader->Read(&piece)) got += piece.data();
    EXPECT_THAT(reader->Finish(),
                GrpcStatusIs(grpc::StatusCode::DATA_LOSS, "chunk " + chunk + " is corrupt"));
    // Nothing of the corrupt chunk was sent: only the intact bytes before it.
    EXPECT_EQ(got, offset == 0 ? data.substr(0, static_cast<size_t>(chunk_offset)) : "");
  }
  // The client's own download fails too, and leaves no file behind.
  std::string out = files_.path() + "/corrupt.out";
  EXPECT_THAT(client.DownloadToFile(blob->digest(), out, nullptr),
              StatusIs(absl::StatusCode::kDataLoss, chunk));
  EXPECT_FALSE(std::filesystem::exists(out));
  // Uploading the same bytes again heals it.
  TransferStats again;
  ASSERT_OK(client.UploadBytes(data, true, &again).status());
  EXPECT_EQ(again.chunks_sent, 1);
  EXPECT_EQ(*client.DownloadBytes(blob->digest()), data);
}

TEST_F(ArtifactServiceTest, AVersionEntryThatDoesNotParseStoresNoVersion) {
  ArtifactClient client(server_.NewChannel());
  auto blob = client.UploadBytes("content", true, nullptr);
  ASSERT_OK(blob.status());
  grpc::ClientContext context;
  v1::DatasetVersion version;
  auto writer = client.stub().CreateVersion(&context, &version);
  v1::CreateVersionRequest first;
  first.mutable_header()->set_dataset("utf8");
  first.mutable_header()->set_create_dataset(true);
  v1::VersionEntry* good = first.add_entries();
  good->set_path("a.txt");
  good->set_digest(blob->digest());
  good->set_size(7);
  good->set_mode(0644);
  ASSERT_TRUE(writer->Write(first));
  v1::CreateVersionRequest second;
  *second.add_entries() = *good;
  second.mutable_entries(0)->set_path("b\xff.txt");  // not UTF-8
  writer->Write(second);
  writer->WritesDone();
  EXPECT_THAT(writer->Finish(), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT,
                                             "mlops.artifact.v1.VersionEntry.path"));
  grpc::ClientContext get_context;
  v1::GetDatasetRequest get;
  get.set_name("utf8");
  v1::Dataset dataset;
  EXPECT_THAT(client.stub().GetDataset(&get_context, get, &dataset),
              GrpcStatusIs(grpc::StatusCode::NOT_FOUND, ""));
}

TEST_F(ArtifactServiceTest, ABadChunkInTheStreamIsRejectedAndNothingOfItIsStored) {
  ArtifactClient client(server_.NewChannel());
  auto& stub = client.stub();
  v1::UploadSession session;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub.StartUpload(&context, {}, &session).ok());
  }
  std::string good = RandomBytes(100 << 10, 3), bad = RandomBytes(100 << 10, 4);
  std::string lie = DigestHex(Sha256Of("not these bytes"));
  {
    grpc::ClientContext context;
    v1::UploadChunksResponse response;
    auto writer = stub.UploadChunks(&context, &response);
    v1::UploadChunksRequest request;
    request.set_session_id(session.id());
    auto* c = request.add_chunks();
    c->set_digest(DigestHex(Sha256Of(good)));
    c->set_data(good);
    ASSERT_TRUE(writer->Write(request));
    request.Clear();
    c = request.add_chunks();
    c->set_digest(lie);
    c->set_data(bad);
    writer->Write(request);
    writer->WritesDone();
    EXPECT_THAT(writer->Finish(), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, lie));
  }
  v1::FindMissingChunksRequest find;
  find.set_session_id(session.id());
  find.add_digests(DigestHex(Sha256Of(good)));
  find.add_digests(lie);
  find.add_digests(DigestHex(Sha256Of(bad)));
  v1::FindMissingChunksResponse missing;
  grpc::ClientContext context;
  ASSERT_TRUE(stub.FindMissingChunks(&context, find, &missing).ok());
  // The good chunk, verified in an earlier message, is kept; the bad one left no trace.
  EXPECT_THAT(missing.missing(), ::testing::ElementsAre(lie, DigestHex(Sha256Of(bad))));
}

TEST_F(ArtifactServiceTest, MalformedRequestsGetSpecificCodes) {
  ArtifactClient client(server_.NewChannel());
  auto& stub = client.stub();
  {
    grpc::ClientContext context;
    v1::StatBlobRequest request;
    request.set_digest("xyz");
    v1::Blob blob;
    EXPECT_THAT(stub.StatBlob(&context, request, &blob),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "digest"));
  }
  {
    grpc::ClientContext context;
    v1::StatBlobRequest request;
    request.set_digest(DigestHex(Sha256Of("absent")));
    v1::Blob blob;
    EXPECT_THAT(stub.StatBlob(&context, request, &blob),
                GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "not found"));
  }
  {
    grpc::ClientContext context;
    v1::FindMissingBlobsRequest request;
    for (int i = 0; i < 10001; ++i) request.add_digests(DigestHex(Sha256Of(std::to_string(i))));
    v1::FindMissingBlobsResponse response;
    EXPECT_THAT(stub.FindMissingBlobs(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "10000"));
  }
  {  // CreateVersion without a header.
    grpc::ClientContext context;
    v1::DatasetVersion version;
    auto writer = stub.CreateVersion(&context, &version);
    v1::CreateVersionRequest request;
    request.add_entries()->set_path("a");
    writer->Write(request);
    writer->WritesDone();
    EXPECT_THAT(writer->Finish(), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "header"));
  }
  {  // UploadChunks without a session.
    grpc::ClientContext context;
    v1::UploadChunksResponse response;
    auto writer = stub.UploadChunks(&context, &response);
    v1::UploadChunksRequest request;
    request.add_chunks()->set_digest(DigestHex(Sha256Of("")));
    writer->Write(request);
    writer->WritesDone();
    EXPECT_THAT(writer->Finish(), GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "session_id"));
  }
  {
    grpc::ClientContext context;
    v1::GarbageCollectRequest request;
    request.set_grace_period_seconds(-1);
    v1::GarbageCollectResponse response;
    EXPECT_THAT(stub.GarbageCollect(&context, request, &response),
                GrpcStatusIs(grpc::StatusCode::INVALID_ARGUMENT, "grace"));
  }
  {
    grpc::ClientContext context;
    v1::DownloadRequest request;
    request.set_digest(DigestHex(Sha256Of("absent")));
    auto reader = stub.Download(&context, request);
    v1::DownloadResponse response;
    while (reader->Read(&response)) {
    }
    EXPECT_THAT(reader->Finish(), GrpcStatusIs(grpc::StatusCode::NOT_FOUND, "not found"));
  }
}

TEST_F(ArtifactServiceTest, PushAndPullDatasetsThroughTheClient) {
  ArtifactClient client(server_.NewChannel(), Small());
  std::string src = files_.path() + "/src";
  std::filesystem::create_directories(src + "/a/b");
  std::ofstream(src + "/a/b/one.txt") << "one";
  std::ofstream(src + "/two.bin") << RandomBytes(300 << 10, 5);
  std::ofstream(src + "/empty");
  HashCache cache(files_.path() + "/cache.tsv");
  auto first = client.Push(src, "svc", {"v1"}, "first", &cache);
  ASSERT_OK(first.status());
  EXPECT_FALSE(first->unchanged);
  EXPECT_EQ(first->version.file_count(), 3);
  EXPECT_EQ(first->stats.files_hashed, 3);
  auto second = client.Push(src, "svc", {"again"}, "", &cache);
  ASSERT_OK(second.status());
  EXPECT_TRUE(second->unchanged);
  EXPECT_EQ(second->stats.files_hashed, 0);
  EXPECT_EQ(second->stats.bytes_sent, 0);
  EXPECT_THAT(second->version.tags(), ::testing::Contains("again"));
  std::string dest = files_.path() + "/dest";
  auto pulled = client.Pull("svc", "v1", dest, nullptr);
  ASSERT_OK(pulled.status());
  EXPECT_EQ(pulled->files_written, 3);
  std::ifstream one(dest + "/a/b/one.txt");
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(one), {}), "one");
  EXPECT_EQ(std::filesystem::file_size(dest + "/empty"), 0u);
  EXPECT_THAT(client.Pull("svc", "nope", dest, nullptr).status(),
              StatusIs(absl::StatusCode::kNotFound, "nope"));
}

}  // namespace
}  // namespace mlops::artifact
