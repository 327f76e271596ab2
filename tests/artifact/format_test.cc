// The chunker and the manifest rules: deterministic, shift-resistant boundaries; path and name
// validation; the Merkle digest of a version.
#include <random>

#include "services/artifact/chunker.h"
#include "services/artifact/client/artifact_client.h"
#include "services/artifact/manifest.h"
#include "tests/testing/testing.h"

namespace mlops::artifact {
namespace {

using ::mlops::testing::RandomBytes;
using ::mlops::testing::StatusIs;

std::vector<std::string> ChunkDigests(const std::string& data, const ChunkerParams& params) {
  FileChunks chunks =
      ChunkBytes(reinterpret_cast<const uint8_t*>(data.data()), data.size(), params);
  std::vector<std::string> out;
  for (const auto& c : chunks.chunks) out.push_back(DigestHex(c.digest));
  return out;
}

TEST(ChunkerTest, SizesStayWithinBoundsAndCoverTheInput) {
  ChunkerParams params{64 << 10};
  std::string data = RandomBytes(8 << 20, 1);
  FileChunks chunks =
      ChunkBytes(reinterpret_cast<const uint8_t*>(data.data()), data.size(), params);
  int64_t offset = 0;
  for (size_t i = 0; i < chunks.chunks.size(); ++i) {
    const auto& c = chunks.chunks[i];
    EXPECT_EQ(c.offset, offset);
    EXPECT_LE(c.size, static_cast<int64_t>(params.max_size()));
    if (i + 1 < chunks.chunks.size()) {
      EXPECT_GE(c.size, static_cast<int64_t>(params.min_size()));
    }
    EXPECT_EQ(c.digest, Sha256Of(data.data() + c.offset, static_cast<size_t>(c.size)));
    offset += c.size;
  }
  EXPECT_EQ(offset, static_cast<int64_t>(data.size()));
  EXPECT_EQ(chunks.digest, Sha256Of(data));
  // The average lands near the configured size (normalised chunking).
  double average = static_cast<double>(data.size()) / chunks.chunks.size();
  EXPECT_GT(average, 0.6 * (64 << 10));
  EXPECT_LT(average, 1.6 * (64 << 10));
}

TEST(ChunkerTest, AnInsertionChangesOnlyTheChunksAroundIt) {
  ChunkerParams params{64 << 10};
  std::string v1 = RandomBytes(4 << 20, 2);
  std::string v2 = v1;
  v2.insert(v2.size() / 2, RandomBytes(1000, 3));  // shifts every later byte
  auto a = ChunkDigests(v1, params);
  auto b = ChunkDigests(v2, params);
  std::set<std::string> old(a.begin(), a.end());
  int fresh = 0;
  for (const auto& d : b) fresh += old.count(d) == 0;
  EXPECT_LE(fresh, 3) << "of " << b.size() << " chunks";
  EXPECT_GT(b.size(), 30u);
}

TEST(ChunkerTest, DeterministicAndSmallInputsAreOneChunk) {
  ChunkerParams params;
  std::string data = RandomBytes(3 << 20, 4);
  EXPECT_EQ(ChunkDigests(data, params), ChunkDigests(data, params));
  std::string tiny = "hello\n";
  FileChunks chunks =
      ChunkBytes(reinterpret_cast<const uint8_t*>(tiny.data()), tiny.size(), params);
  ASSERT_EQ(chunks.chunks.size(), 1u);
  // What `sha256sum` prints for "hello\n".
  EXPECT_EQ(DigestHex(chunks.digest),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  FileChunks empty = ChunkBytes(nullptr, 0, params);
  EXPECT_TRUE(empty.chunks.empty());
  EXPECT_EQ(DigestHex(empty.digest),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ChunkerTest, RejectsBadAverageSizes) {
  EXPECT_THAT(ValidateChunkerParams({1000}), StatusIs(absl::StatusCode::kInvalidArgument, "power"));
  EXPECT_THAT(ValidateChunkerParams({32 << 10}), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(ValidateChunkerParams({16 << 20}), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_TRUE(ValidateChunkerParams({1 << 20}).ok());
}

TEST(ManifestTest, ValidatesPaths) {
  for (const char* good : {"a", "a/b.txt", "dir/sub/file", "..a", "a..", ".hidden", "a b"}) {
    EXPECT_TRUE(ValidatePath(good).ok()) << good;
  }
  struct Bad {
    std::string path;
    const char* why;
  };
  for (const Bad& bad : std::vector<Bad>{{"", "empty"},
                                         {"/etc/passwd", "absolute"},
                                         {"../x", "'..'"},
                                         {"a/../../x", "'..'"},
                                         {"a/./b", "'.'"},
                                         {"a//b", "empty component"},
                                         {"a/", "empty component"},
                                         {std::string("a\0b", 3), "NUL"},
                                         {"a\nb", "control"},
                                         {std::string(5000, 'a'), "4096"},
                                         {std::string(300, 'a'), "255"}}) {
    EXPECT_THAT(ValidatePath(bad.path), StatusIs(absl::StatusCode::kInvalidArgument, bad.why))
        << bad.path.substr(0, 20);
  }
}

TEST(ManifestTest, ValidatesNames) {
  EXPECT_TRUE(ValidateName(NameKind::kIdentifier, "dataset", "iris-v2.train_1").ok());
  for (const char* bad : {"", "-x", ".x", "a/b", "a b", "ä"}) {
    EXPECT_THAT(ValidateName(NameKind::kIdentifier, "dataset", bad),
                StatusIs(absl::StatusCode::kInvalidArgument, "dataset"))
        << bad;
  }
  EXPECT_FALSE(ValidateName(NameKind::kIdentifier, "dataset", std::string(129, 'a')).ok());
}

std::vector<ManifestEntry> Entries(std::vector<std::pair<std::string, std::string>> files) {
  std::vector<ManifestEntry> out;
  for (auto& [path, content] : files) {
    out.push_back({path, Sha256Of(content), static_cast<int64_t>(content.size()), 0644});
  }
  return out;
}

TEST(ManifestTest, DigestIsOrderIndependentAndFollowsTheDocumentedRule) {
  auto a = Entries({{"b/x", "1"}, {"a.txt", "2"}, {"b/y", "3"}});
  auto b = Entries({{"b/y", "3"}, {"a.txt", "2"}, {"b/x", "1"}});
  auto da = SortAndHashManifest(&a);
  auto db = SortAndHashManifest(&b);
  ASSERT_OK(da.status());
  ASSERT_OK(db.status());
  EXPECT_EQ(*da, *db);
  EXPECT_EQ(a[0].path, "a.txt");
  // Recompute by the rule in manifest.h.
  auto file = [](const std::string& name, const std::string& content) {
    RawDigest d = Sha256Of(content);
    return "f 644 " + std::to_string(content.size()) + " " + name + std::string(1, '\0') +
           std::string(DigestBytes(d));
  };
  RawDigest sub = Sha256Of(file("x", "1") + file("y", "3"));
  RawDigest root =
      Sha256Of(file("a.txt", "2") + "d b" + std::string(1, '\0') + std::string(DigestBytes(sub)));
  EXPECT_EQ(DigestHex(*da), DigestHex(root));
  std::vector<ManifestEntry> empty;
  EXPECT_EQ(DigestHex(*SortAndHashManifest(&empty)), DigestHex(Sha256Of("")));
}

TEST(ManifestTest, ContentModeAndPathChangesChangeTheDigest) {
  auto base = Entries({{"d/x", "1"}, {"y", "2"}});
  auto digest = *SortAndHashManifest(&base);
  auto content = Entries({{"d/x", "1!"}, {"y", "2"}});
  auto renamed = Entries({{"d/z", "1"}, {"y", "2"}});
  auto moved = Entries({{"x", "1"}, {"y", "2"}});
  auto mode = Entries({{"d/x", "1"}, {"y", "2"}});
  mode[1].mode = 0755;
  for (auto* other : {&content, &renamed, &moved, &mode}) {
    EXPECT_NE(*SortAndHashManifest(other), digest);
  }
}

TEST(ManifestTest, RejectsDuplicatesAndFileDirectoryClashes) {
  auto dup = Entries({{"a", "1"}, {"a", "2"}});
  EXPECT_THAT(SortAndHashManifest(&dup).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  auto clash = Entries({{"a", "1"}, {"a-b", "2"}, {"a/c", "3"}});
  EXPECT_THAT(SortAndHashManifest(&clash).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "both a file and a directory"));
}

}  // namespace
}  // namespace mlops::artifact
