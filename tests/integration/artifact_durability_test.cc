// The standalone mlops-artifact server killed with -9 while uploads are in flight: every
// acknowledged blob is there after a restart, complete and intact, and no half-uploaded blob is
// visible.
#include <atomic>
#include <random>
#include <thread>

#include "services/artifact/client/artifact_client.h"
#include "tests/testing/testing.h"

namespace mlops::artifact {
namespace {

using ::mlops::testing::RandomBytes;
TEST(ArtifactDurabilityTest, AcknowledgedBlobsSurviveKill9) {
  testing::TempDir dir;
  testing::ChildServer server(MLOPS_ARTIFACT_BIN, dir.path() + "/data");
  server.Start();
  ClientOptions options;
  options.chunker.avg_size = 64 << 10;
  options.max_attempts = 1;
  std::vector<std::pair<std::string, uint64_t>> acknowledged;  // digest, seed
  std::atomic<size_t> count{0};
  std::thread writer([&] {
    ArtifactClient client(grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()),
                          options);
    for (uint64_t seed = 1; seed < 100000; ++seed) {
      auto blob = client.UploadBytes(RandomBytes(1 << 20, seed), /*pin=*/true, nullptr);
      if (!blob.ok()) break;  // the server died
      acknowledged.emplace_back(blob->digest(), seed);
      count = acknowledged.size();
    }
  });
  while (count.load() < 15) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Kill();
  writer.join();
  ASSERT_GE(acknowledged.size(), 15u);

  testing::ChildServer restarted(MLOPS_ARTIFACT_BIN, dir.path() + "/data");
  restarted.Start();
  ArtifactClient client(
      grpc::CreateChannel(restarted.address(), grpc::InsecureChannelCredentials()), options);
  for (const auto& [digest, seed] : acknowledged) {
    auto data = client.DownloadBytes(digest);
    ASSERT_OK(data.status());
    EXPECT_EQ(*data, RandomBytes(1 << 20, seed));
  }
  // The upload that was cut off is not visible as a blob.
  uint64_t next_seed = acknowledged.back().second + 1;
  v1::StatBlobRequest stat;
  stat.set_digest(DigestHex(Sha256Of(RandomBytes(1 << 20, next_seed))));
  v1::Blob blob;
  grpc::ClientContext context;
  EXPECT_EQ(client.stub().StatBlob(&context, stat, &blob).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::ScrubResponse scrub;
  grpc::ClientContext scrub_context;
  ASSERT_TRUE(client.stub().Scrub(&scrub_context, {}, &scrub).ok());
  EXPECT_EQ(scrub.corrupt_size() + scrub.missing_size(), 0);
}

}  // namespace
}  // namespace mlops::artifact
