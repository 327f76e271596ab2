// ArtifactStore on a real RocksDB in a temporary directory: uploads, verification, datasets,
// refs, diffs, scrub and garbage collection (including a collection racing uploads).
#include "services/artifact/artifact_store.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "services/common/ids.h"
#include "tests/testing/testing.h"

namespace mlops::artifact {
namespace {

using ::mlops::testing::RandomBytes;
using ::mlops::testing::StatusIs;
using ::mlops::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The value of `result`, which must be OK.
template <class T>
T ValueOf(absl::StatusOr<T> result) {
  EXPECT_OK(result.status());
  return result.ok() ? *std::move(result) : T();
}

// A commit of one blob made of `parts`, in order.
v1::CommitBlobsRequest CommitOf(const std::string& session, const std::vector<std::string>& parts,
                                bool pin = false) {
  v1::CommitBlobsRequest commit;
  commit.set_session_id(session);
  commit.set_pin(pin);
  v1::BlobManifest* blob = commit.add_blobs();
  std::string whole;
  for (const std::string& part : parts) {
    whole += part;
    v1::ChunkRef* ref = blob->add_chunks();
    ref->set_digest(DigestHex(Sha256Of(part)));
    ref->set_size(static_cast<int64_t>(part.size()));
  }
  blob->set_digest(DigestHex(Sha256Of(whole)));
  blob->set_size(static_cast<int64_t>(whole.size()));
  return commit;
}

class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = ArtifactStore::Open(dir_.path() + "/artifact", Db::Options());
    ASSERT_OK(store.status());
    store_ = std::move(*store);
    auto session = store_->StartUpload(0);
    ASSERT_OK(session.status());
    session_ = session->id();
  }

  // Stores `parts` as chunks and commits their concatenation as a blob; returns its digest.
  std::string PutBlob(const std::vector<std::string>& parts, bool pin = false) {
    std::vector<ArtifactStore::ChunkInput> chunks;
    for (const std::string& part : parts) chunks.push_back({Sha256Of(part), part});
    EXPECT_OK(store_->PutChunks(session_, chunks).status());
    v1::CommitBlobsRequest commit = CommitOf(session_, parts, pin);
    EXPECT_OK(store_->CommitBlobs(commit).status());
    return commit.blobs(0).digest();
  }

  std::string Read(const std::string& digest, int64_t offset = 0, int64_t length = 0) {
    RawDigest raw;
    EXPECT_TRUE(ParseDigestHex(digest, &raw));
    std::string out;
    int64_t size = 0;
    EXPECT_OK(store_->ReadBlob(raw, offset, length, &size, [&](int64_t at, std::string_view d) {
      EXPECT_EQ(at, offset + static_cast<int64_t>(out.size()));
      out.append(d);
      return true;
    }));
    return out;
  }

  v1::VersionEntry Entry(const std::string& path, const std::string& content) {
    v1::VersionEntry entry;
    entry.set_path(path);
    entry.set_digest(PutBlob({content}));
    entry.set_size(static_cast<int64_t>(content.size()));
    entry.set_mode(0644);
    return entry;
  }

  absl::StatusOr<v1::DatasetVersion> NewVersion(const std::string& dataset,
                                                std::vector<v1::VersionEntry> entries,
                                                std::vector<std::string> tags = {}) {
    v1::CreateVersionRequest::Header header;
    header.set_dataset(dataset);
    header.set_create_dataset(true);
    for (auto& t : tags) header.add_tags(t);
    return store_->CreateVersion(header, std::move(entries));
  }

  // A zero grace period still keeps what was touched in the collection's own millisecond.
  static void Settle() { std::this_thread::sleep_for(std::chrono::milliseconds(3)); }

  TempDir dir_;
  std::unique_ptr<ArtifactStore> store_;
  std::string session_;
};

TEST_F(ArtifactStoreTest, RoundTripsSmallLargeAndEmptyBlobsWithRanges) {
  std::string a = RandomBytes(100, 1), b = RandomBytes(200 << 10, 2), c = RandomBytes(3 << 20, 3);
  std::string digest = PutBlob({a, b, c});
  EXPECT_EQ(Read(digest), a + b + c);
  EXPECT_EQ(Read(digest, 50, 100), (a + b + c).substr(50, 100));
  EXPECT_EQ(Read(digest, (200 << 10), 2 << 20), (a + b + c).substr(200 << 10, 2 << 20));
  EXPECT_EQ(Read(digest, 100 + (200 << 10) + (3 << 20)), "");
  std::string empty = PutBlob({});
  EXPECT_EQ(empty, DigestHex(Sha256Of("")));
  EXPECT_EQ(Read(empty), "");
  RawDigest raw;
  ParseDigestHex(digest, &raw);
  int64_t size;
  EXPECT_THAT(
      store_->ReadBlob(raw, (4 << 20), 0, &size, [](int64_t, std::string_view) { return true; }),
      StatusIs(absl::StatusCode::kOutOfRange, "offset"));
  auto stat = store_->StatBlob(raw, true);
  ASSERT_OK(stat.status());
  EXPECT_EQ(stat->chunk_count(), 3);
  EXPECT_EQ(stat->chunks(1).size(), 200 << 10);
}

TEST_F(ArtifactStoreTest, AChunkWhoseBytesDoNotMatchIsRejectedAndNothingIsStored) {
  std::string good = RandomBytes(1000, 4), bad = RandomBytes(100 << 10, 5);
  RawDigest claimed = Sha256Of("something else");
  EXPECT_THAT(store_->PutChunks(session_, {{Sha256Of(good), good}, {claimed, bad}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, DigestHex(claimed)));
  auto missing = store_->FindMissingChunks(session_, {Sha256Of(good), claimed, Sha256Of(bad)});
  ASSERT_OK(missing.status());
  EXPECT_THAT(*missing, ElementsAre(0, 1, 2));
  EXPECT_FALSE(std::filesystem::exists(store_->ChunkPath(claimed)));
  EXPECT_EQ(store_->counters().chunks_rejected.load(), 1);
}

TEST_F(ArtifactStoreTest, CommitChecksChunksAndTheWholeDigest) {
  std::string a = RandomBytes(70 << 10, 6), b = RandomBytes(10, 7);
  ASSERT_OK(store_->PutChunks(session_, {{Sha256Of(a), a}}).status());
  v1::CommitBlobsRequest commit;
  commit.set_session_id(session_);
  auto* blob = commit.add_blobs();
  blob->set_digest(DigestHex(Sha256Of(a + b)));
  blob->set_size(static_cast<int64_t>(a.size() + b.size()));
  auto* ra = blob->add_chunks();
  ra->set_digest(DigestHex(Sha256Of(a)));
  ra->set_size(static_cast<int64_t>(a.size()));
  auto* rb = blob->add_chunks();
  rb->set_digest(DigestHex(Sha256Of(b)));
  rb->set_size(static_cast<int64_t>(b.size()));
  EXPECT_THAT(store_->CommitBlobs(commit).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "upload it first"));
  ASSERT_OK(store_->PutChunks(session_, {{Sha256Of(b), b}}).status());
  // A digest the chunks do not hash to.
  v1::CommitBlobsRequest lie = commit;
  lie.mutable_blobs(0)->set_digest(DigestHex(Sha256Of(b + a)));
  EXPECT_THAT(store_->CommitBlobs(lie).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "hash to"));
  v1::CommitBlobsRequest wrong_size = commit;
  wrong_size.mutable_blobs(0)->set_size(5);
  EXPECT_THAT(store_->CommitBlobs(wrong_size).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "add up to"));
  EXPECT_THAT(*store_->FindMissingBlobs({Sha256Of(b + a), Sha256Of(a + b)}), ElementsAre(0, 1));
  ASSERT_OK(store_->CommitBlobs(commit).status());
  EXPECT_EQ(Read(blob->digest()), a + b);
  v1::CommitBlobsRequest no_session = commit;
  no_session.set_session_id("00000000000000000000000000000000");
  EXPECT_THAT(store_->CommitBlobs(no_session).status(),
              StatusIs(absl::StatusCode::kNotFound, "session"));
  std::vector<RawDigest> too_many(10001);
  EXPECT_THAT(store_->FindMissingBlobs(too_many).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "10000"));
}

TEST_F(ArtifactStoreTest, VersionsRefsTagsAndDiff) {
  auto v1 = NewVersion(
      "iris",
      {Entry("train.csv", "a,b\n1,2\n"), Entry("test/x.csv", "x\n"), Entry("README", "readme")},
      {"v1"});
  ASSERT_OK(v1.status());
  EXPECT_FALSE(v1->already_existed());
  EXPECT_THAT(v1->tags(), ::testing::UnorderedElementsAre("latest", "v1"));
  EXPECT_EQ(v1->file_count(), 3);
  auto v2 = NewVersion("iris", {Entry("train.csv", "a,b\n1,2\n3,4\n"), Entry("test/x.csv", "x\n"),
                                Entry("new.txt", "n")});
  ASSERT_OK(v2.status());
  EXPECT_EQ(v2->parent_digest(), v1->digest());
  // Refs: tag, full digest, prefix, latest.
  EXPECT_EQ(store_->GetVersion("iris", "v1")->digest(), v1->digest());
  EXPECT_EQ(store_->GetVersion("iris", v1->digest().substr(0, 10))->digest(), v1->digest());
  EXPECT_EQ(store_->GetVersion("iris", "")->digest(), v2->digest());
  EXPECT_THAT(store_->GetVersion("iris", "nope").status(),
              StatusIs(absl::StatusCode::kNotFound, "nope"));
  EXPECT_THAT(store_->GetVersion("ghost", "v1").status(),
              StatusIs(absl::StatusCode::kNotFound, "ghost"));
  // Re-creating v1's content: no new version, latest moves back.
  auto again = NewVersion("iris", {Entry("README", "readme"), Entry("train.csv", "a,b\n1,2\n"),
                                   Entry("test/x.csv", "x\n")});
  ASSERT_OK(again.status());
  EXPECT_TRUE(again->already_existed());
  EXPECT_EQ(again->digest(), v1->digest());
  EXPECT_EQ(store_->GetDataset("iris")->version_count(), 2);
  EXPECT_EQ(store_->GetDataset("iris")->latest_digest(), v1->digest());

  v1::DiffVersionsRequest diff;
  diff.set_from_dataset("iris");
  diff.set_from_ref("v1");
  diff.set_to_ref(v2->digest());
  auto d = store_->DiffVersions(diff);
  ASSERT_OK(d.status());
  ASSERT_EQ(d->changes_size(), 3);
  EXPECT_EQ(d->changes(0).path(), "README");
  EXPECT_EQ(d->changes(0).kind(), v1::FileChange::REMOVED);
  EXPECT_EQ(d->changes(1).path(), "new.txt");
  EXPECT_EQ(d->changes(1).kind(), v1::FileChange::ADDED);
  EXPECT_EQ(d->changes(2).path(), "train.csv");
  EXPECT_EQ(d->changes(2).kind(), v1::FileChange::MODIFIED);
  EXPECT_EQ(d->summary().unchanged(), 1);
  EXPECT_EQ(d->summary().bytes_changed(), 12);
  // Paged: one change a page, the summary on the first page only.
  diff.set_page_size(1);
  std::vector<std::string> paths;
  do {
    auto page = store_->DiffVersions(diff);
    ASSERT_OK(page.status());
    if (diff.page_token().empty()) {
      EXPECT_EQ(page->summary().added(), 1);
    } else {
      EXPECT_FALSE(page->has_summary());
    }
    for (const auto& c : page->changes()) paths.push_back(c.path());
    diff.set_page_token(page->next_page_token());
  } while (!diff.page_token().empty());
  EXPECT_THAT(paths, ElementsAre("README", "new.txt", "train.csv"));

  v1::ListVersionsRequest list;
  list.set_dataset("iris");
  auto versions = store_->ListVersions(list);
  ASSERT_OK(versions.status());
  ASSERT_EQ(versions->versions_size(), 2);
  EXPECT_EQ(versions->versions(0).digest(), v2->digest());  // newest first

  v1::TagVersionRequest tag;
  tag.set_dataset("iris");
  tag.set_ref(v2->digest());
  tag.set_tag("prod");
  ASSERT_OK(store_->TagVersion(tag).status());
  EXPECT_EQ(store_->GetVersion("iris", "prod")->digest(), v2->digest());
  tag.set_tag(std::string(64, 'a'));
  EXPECT_THAT(store_->TagVersion(tag).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "digest"));
  tag.set_tag("latest");
  tag.set_remove(true);
  EXPECT_THAT(store_->TagVersion(tag).status(), StatusIs(absl::StatusCode::kInvalidArgument, ""));
}

TEST_F(ArtifactStoreTest, BadVersionsAreRejectedAndLeaveNothingBehind) {
  auto ok = NewVersion("d", {Entry("a", "1")});
  ASSERT_OK(ok.status());
  auto count = [&] { return store_->GetDataset("d")->version_count(); };
  v1::VersionEntry missing_blob;
  missing_blob.set_path("x");
  missing_blob.set_digest(DigestHex(Sha256Of("never uploaded")));
  missing_blob.set_size(14);
  EXPECT_THAT(NewVersion("d", {missing_blob}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not stored"));
  v1::VersionEntry wrong_size = Entry("y", "12345");
  wrong_size.set_size(4);
  EXPECT_THAT(NewVersion("d", {wrong_size}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "size 4"));
  for (const char* path : {"../escape", "/abs", "a//b"}) {
    EXPECT_THAT(NewVersion("d", {Entry(path, "z")}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "path"))
        << path;
  }
  EXPECT_THAT(NewVersion("d", {Entry("same", "1"), Entry("same", "2")}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  EXPECT_THAT(NewVersion("bad name", {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset"));
  v1::CreateVersionRequest::Header header;
  header.set_dataset("d");
  header.set_expected_digest(std::string(64, '0'));
  EXPECT_THAT(store_->CreateVersion(header, {Entry("q", "q")}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "expected_digest"));
  header.set_dataset("not-created");
  header.clear_expected_digest();
  EXPECT_THAT(store_->CreateVersion(header, {}).status(),
              StatusIs(absl::StatusCode::kNotFound, "not-created"));
  EXPECT_EQ(count(), 1);
  EXPECT_EQ(store_->GetVersion("d", "")->digest(), ok->digest());
}

TEST_F(ArtifactStoreTest, ARequestIdMakesCreateVersionIdempotentWhateverTheEntries) {
  // A retried pipeline step pushes again under the same request id: it gets the first version,
  // even when its output differs, and the dataset gains no version.
  v1::CreateVersionRequest::Header header;
  header.set_dataset("d");
  header.set_create_dataset(true);
  header.set_request_id("stepkey:datasets/d");
  auto first = store_->CreateVersion(header, {Entry("a", "attempt 1")});
  ASSERT_OK(first.status());
  EXPECT_FALSE(first->already_existed());
  auto again = store_->CreateVersion(header, {Entry("a", "attempt 2, other bytes")});
  ASSERT_OK(again.status());
  EXPECT_TRUE(again->already_existed());
  EXPECT_EQ(again->digest(), first->digest());
  EXPECT_EQ(store_->GetDataset("d")->version_count(), 1);
  // Another id, or another dataset under the same id, is a new version.
  header.set_request_id("stepkey:other");
  auto other = store_->CreateVersion(header, {Entry("a", "attempt 2, other bytes")});
  ASSERT_OK(other.status());
  EXPECT_NE(other->digest(), first->digest());
  header.set_dataset("e");
  header.set_request_id("stepkey:datasets/d");
  EXPECT_FALSE(store_->CreateVersion(header, {Entry("a", "x")})->already_existed());
  // Too long: refused, nothing stored; the id survives a reopen.
  header.set_request_id(std::string(129, 'k'));
  EXPECT_THAT(store_->CreateVersion(header, {Entry("b", "y")}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "request_id"));
  EXPECT_EQ(store_->GetDataset("e")->version_count(), 1);
  v1::VersionEntry late = Entry("c", "z");
  store_.reset();
  auto reopened = ArtifactStore::Open(dir_.path() + "/artifact", Db::Options());
  ASSERT_OK(reopened.status());
  store_ = std::move(*reopened);
  header.set_dataset("d");
  header.set_request_id("stepkey:datasets/d");
  EXPECT_EQ(store_->CreateVersion(header, {late})->digest(), first->digest());
}

TEST_F(ArtifactStoreTest, ScrubFindsCorruptAndMissingChunksAndRepairHeals) {
  std::string big = RandomBytes(200 << 10, 8), other = RandomBytes(300 << 10, 9);
  std::string small = RandomBytes(100, 20);
  std::string digest = PutBlob({big, small});
  std::string other_digest = PutBlob({other});
  RawDigest raw, other_raw;
  ASSERT_TRUE(ParseDigestHex(digest, &raw));
  ASSERT_TRUE(ParseDigestHex(other_digest, &other_raw));
  auto clean = store_->Scrub(false);
  ASSERT_OK(clean.status());
  EXPECT_EQ(clean->chunks_checked(), 3);
  EXPECT_EQ(clean->corrupt_size(), 0);
  EXPECT_EQ(clean->damaged_blob_count(), 0);
  EXPECT_THAT(*store_->FindMissingBlobs({raw, other_raw}), ElementsAre());
  {  // flip a byte in place
    std::fstream f(store_->ChunkPath(Sha256Of(big)),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1234);
    f.put(static_cast<char>(big[1234] ^ 0x40));
  }
  std::filesystem::remove(store_->ChunkPath(Sha256Of(other)));
  auto dirty = store_->Scrub(/*repair=*/true);
  ASSERT_OK(dirty.status());
  EXPECT_THAT(dirty->corrupt(), ElementsAre(DigestHex(Sha256Of(big))));
  EXPECT_THAT(dirty->missing(), ElementsAre(DigestHex(Sha256Of(other))));
  EXPECT_EQ(dirty->damaged_blob_count(), 2);
  EXPECT_EQ(dirty->chunks_repaired(), 1);
  EXPECT_EQ(store_->counters().scrub_corrupt_chunks.load(), 1);
  EXPECT_EQ(store_->counters().scrub_missing_chunks.load(), 1);
  EXPECT_EQ(store_->DamagedChunks(), 2);
  // After the repair a scrub still reports what cannot be read, and the blobs stay unreadable.
  auto after = store_->Scrub(false);
  ASSERT_OK(after.status());
  EXPECT_EQ(after->corrupt_size(), 0);
  EXPECT_EQ(after->missing_size(), 2);
  EXPECT_EQ(after->damaged_blob_count(), 2);
  EXPECT_EQ(store_->counters().scrub_corrupt_chunks.load(), 1);  // counted once per chunk
  int64_t size = 0;
  EXPECT_THAT(store_->ReadBlob(raw, 0, 0, &size, [](int64_t, std::string_view) { return true; }),
              StatusIs(absl::StatusCode::kDataLoss, DigestHex(Sha256Of(big))));
  // An uploader learns that the blobs and the damaged chunks are missing, and only those.
  EXPECT_THAT(*store_->FindMissingBlobs({raw, other_raw}), ElementsAre(0, 1));
  EXPECT_THAT(*store_->FindMissingChunks(session_, {Sha256Of(big), Sha256Of(small)}),
              ElementsAre(0));
  // Re-committing without re-sending is refused: the bytes are still damaged.
  EXPECT_THAT(store_->CommitBlobs(CommitOf(session_, {big, small})).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "damaged"));
  // Uploading the content again heals both blobs; the downloads return the original bytes.
  EXPECT_EQ(PutBlob({big, small}), digest);
  EXPECT_EQ(PutBlob({other}), other_digest);
  EXPECT_EQ(Read(digest), big + small);
  EXPECT_EQ(Read(other_digest), other);
  EXPECT_EQ(store_->DamagedChunks(), 0);
  EXPECT_THAT(*store_->FindMissingBlobs({raw, other_raw}), ElementsAre());
  auto healed = store_->Scrub(false);
  ASSERT_OK(healed.status());
  EXPECT_EQ(healed->corrupt_size() + healed->missing_size() + healed->damaged_blob_count(), 0);
}

TEST_F(ArtifactStoreTest, DownloadVerifiesEveryChunkAndMarksABadOneDamaged) {
  std::string a = RandomBytes(300 << 10, 21), b = RandomBytes(300 << 10, 22);
  std::string small = RandomBytes(1000, 23);
  std::string digest = PutBlob({a, b, small});
  RawDigest raw;
  ASSERT_TRUE(ParseDigestHex(digest, &raw));
  {
    std::fstream f(store_->ChunkPath(Sha256Of(b)), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    f.put(static_cast<char>(b[10] ^ 0x01));
  }
  // A range inside the intact first chunk still reads; one touching the corrupt chunk fails
  // before any of its bytes is passed on, naming the chunk.
  EXPECT_EQ(Read(digest, 100, 1000), a.substr(100, 1000));
  for (int64_t offset : {int64_t{0}, int64_t{(300 << 10) + 5000}}) {
    std::string got;
    int64_t size = 0;
    absl::Status status = store_->ReadBlob(raw, offset, 0, &size, [&](int64_t, std::string_view d) {
      got.append(d);
      return true;
    });
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss,
                                 "chunk " + DigestHex(Sha256Of(b)) + " is corrupt"));
    EXPECT_EQ(got, offset == 0 ? a : "");
  }
  EXPECT_EQ(store_->counters().scrub_corrupt_chunks.load(), 1);
  EXPECT_EQ(store_->DamagedChunks(), 1);
  EXPECT_THAT(*store_->FindMissingBlobs({raw}), ElementsAre(0));
  // The mark survives a restart.
  store_.reset();
  auto reopened = ArtifactStore::Open(dir_.path() + "/artifact", Db::Options());
  ASSERT_OK(reopened.status());
  store_ = std::move(*reopened);
  EXPECT_EQ(store_->DamagedChunks(), 1);
  auto session = store_->StartUpload(0);
  ASSERT_OK(session.status());
  session_ = session->id();
  EXPECT_THAT(*store_->FindMissingChunks(session_, {Sha256Of(a), Sha256Of(b)}), ElementsAre(1));
  EXPECT_EQ(PutBlob({a, b, small}), digest);
  EXPECT_EQ(Read(digest), a + b + small);
  // An inline chunk (small) that is corrupted in RocksDB is caught the same way.
  ASSERT_TRUE(store_->db()
                  .raw()
                  ->Put(rocksdb::WriteOptions(), store_->db().Cf("chunk_data"),
                        std::string(DigestBytes(Sha256Of(small))), std::string(1000, 'x'))
                  .ok());
  int64_t size = 0;
  EXPECT_THAT(store_->ReadBlob(raw, (600 << 10) + 1, 10, &size,
                               [](int64_t, std::string_view) { return true; }),
              StatusIs(absl::StatusCode::kDataLoss, DigestHex(Sha256Of(small))));
}

TEST_F(ArtifactStoreTest, GarbageCollectionKeepsRootsAndSweepsTheRest) {
  std::string kept_by_version = RandomBytes(100 << 10, 10);
  std::string pinned = RandomBytes(100 << 10, 11);
  std::string garbage = RandomBytes(100 << 10, 12);
  std::string shared = RandomBytes(90 << 10, 13);
  auto version = NewVersion("g", {Entry("f", kept_by_version)});
  ASSERT_OK(version.status());
  std::string pinned_digest = PutBlob({pinned, shared}, /*pin=*/true);
  std::string garbage_digest = PutBlob({garbage, shared});
  ASSERT_OK(store_->FinishUpload(session_));
  v1::GarbageCollectRequest gc;
  // Within the grace period nothing goes.
  gc.set_grace_period_seconds(3600);
  auto none = store_->GarbageCollect(gc);
  ASSERT_OK(none.status());
  EXPECT_EQ(none->blobs_deleted(), 0);
  EXPECT_EQ(none->chunks_deleted(), 0);
  gc.set_zero_grace(true);
  gc.set_dry_run(true);
  Settle();
  auto dry = store_->GarbageCollect(gc);
  ASSERT_OK(dry.status());
  EXPECT_EQ(dry->blobs_deleted(), 1);
  EXPECT_EQ(dry->chunks_deleted(), 1);
  EXPECT_EQ(Read(garbage_digest), garbage + shared);  // dry run deleted nothing
  gc.set_dry_run(false);
  auto swept = store_->GarbageCollect(gc);
  ASSERT_OK(swept.status());
  EXPECT_EQ(swept->blobs_deleted(), 1);
  EXPECT_EQ(swept->chunks_deleted(), 1);  // `garbage`; `shared` is still used by the pinned blob
  EXPECT_EQ(swept->bytes_freed(), 100 << 10);
  EXPECT_FALSE(std::filesystem::exists(store_->ChunkPath(Sha256Of(garbage))));
  RawDigest raw;
  ParseDigestHex(garbage_digest, &raw);
  EXPECT_THAT(store_->StatBlob(raw).status(), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_EQ(Read(pinned_digest), pinned + shared);
  EXPECT_EQ(store_->Scrub(false)->missing_size(), 0);
  // Unpinned, the blob goes too.
  ParseDigestHex(pinned_digest, &raw);
  ASSERT_OK(store_->SetBlobPinned(raw, false).status());
  Settle();
  auto after = store_->GarbageCollect(gc);
  ASSERT_OK(after.status());
  EXPECT_EQ(after->blobs_deleted(), 1);
  EXPECT_EQ(after->chunks_deleted(), 2);
  v1::ListVersionEntriesRequest list;
  list.set_dataset("g");
  auto entries = store_->ListVersionEntries(list);
  ASSERT_OK(entries.status());
  EXPECT_EQ(Read(entries->entries(0).digest()), kept_by_version);
}

// Projects (docs/api.md, "Projects"): content is stored once, but a project sees only what it
// uploaded; another project is told the content is missing, must send it (storing nothing new),
// and commits a blob only from chunks it sent; sessions and datasets are per project; a version
// lists only blobs its project sees; garbage collection drops the references with the content.
TEST_F(ArtifactStoreTest, EachProjectSeesOnlyTheContentItUploaded) {
  std::string part1 = RandomBytes(100 << 10, 21), part2 = RandomBytes(90 << 10, 22);
  std::string digest_hex = PutBlob({part1, part2});  // project default's session
  RawDigest digest, chunk1;
  ASSERT_TRUE(ParseDigestHex(digest_hex, &digest));
  chunk1 = Sha256Of(part1);

  auto vision = store_->StartUpload(0, "vision");
  ASSERT_OK(vision.status());
  ASSERT_THAT(vision->id(), ::testing::StartsWith("projects/vision/"));
  // Its session is not found under its bare id (project default) nor in another project.
  std::string bare = vision->id().substr(std::string("projects/vision/").size());
  EXPECT_THAT(store_->FindMissingChunks(bare, {chunk1}).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  EXPECT_THAT(store_->FindMissingChunks("projects/other/" + bare, {chunk1}).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  EXPECT_THAT(ValueOf(store_->FindMissingChunks(session_, {chunk1})), ElementsAre());

  // Stored, but missing to vision.
  EXPECT_THAT(ValueOf(store_->FindMissingBlobs({digest}, "vision")), ElementsAre(0));
  EXPECT_THAT(ValueOf(store_->FindMissingBlobs({digest})), ElementsAre());
  EXPECT_THAT(ValueOf(store_->FindMissingChunks(vision->id(), {chunk1, Sha256Of(part2)})),
              ElementsAre(0, 1));
  EXPECT_THAT(store_->StatBlob(digest, false, "vision").status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  int64_t size = 0;
  EXPECT_THAT(store_->ReadBlob(
                  digest, 0, 0, &size, [](int64_t, std::string_view) { return true; }, "vision"),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  EXPECT_THAT(store_->SetBlobPinned(digest, true, "vision").status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  // Claiming the blob from chunks it never sent is refused as if they were not stored.
  EXPECT_THAT(store_->CommitBlobs(CommitOf(vision->id(), {part1, part2})).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "is not stored; upload it first"));
  // A version of a vision dataset cannot list the blob either.
  v1::VersionEntry entry;
  entry.set_path("f");
  entry.set_digest(digest_hex);
  entry.set_size(static_cast<int64_t>(part1.size() + part2.size()));
  entry.set_mode(0644);
  EXPECT_THAT(NewVersion("projects/vision/d", {entry}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "is not stored"));

  // Vision sends the bytes: nothing new is stored, but now it sees them.
  auto sent = store_->PutChunks(vision->id(), {{chunk1, part1}, {Sha256Of(part2), part2}});
  ASSERT_OK(sent.status());
  EXPECT_EQ(sent->stored, 0);
  EXPECT_EQ(sent->already_present, 2);
  // What vision is told: two chunks new to it, as if nobody had them (nothing may say otherwise).
  EXPECT_EQ(sent->new_to_project, 2);
  EXPECT_EQ(sent->bytes_new_to_project, 190 << 10);
  Settle();
  int64_t before_commit = NowMs();
  auto committed = store_->CommitBlobs(CommitOf(vision->id(), {part1, part2}));
  ASSERT_OK(committed.status());
  EXPECT_GE(committed->at(0).create_time_ms(), before_commit) << "created now, for vision";
  EXPECT_GE(store_->StatBlob(digest, false, "vision")->create_time_ms(), before_commit);
  EXPECT_LT(store_->StatBlob(digest)->create_time_ms(), before_commit) << "default's is older";
  auto again = store_->PutChunks(vision->id(), {{chunk1, part1}});
  ASSERT_OK(again.status());
  EXPECT_EQ(again->new_to_project, 0);
  EXPECT_THAT(ValueOf(store_->FindMissingBlobs({digest}, "vision")), ElementsAre());
  EXPECT_EQ(store_->StatBlob(digest, false, "vision")->size(), 190 << 10);
  auto version = NewVersion("projects/vision/d", {entry});
  ASSERT_OK(version.status());
  EXPECT_EQ(version->dataset(), "projects/vision/d");

  // Datasets are listed per project; the same name in two projects is two datasets.
  ASSERT_OK(NewVersion("d", {entry}).status());
  v1::ListDatasetsRequest ours, theirs, every;
  theirs.set_project("vision");
  every.set_project("*");
  auto names = [&](const v1::ListDatasetsRequest& request) {
    std::vector<std::string> out;
    v1::ListDatasetsResponse listed = ValueOf(store_->ListDatasets(request));
    for (const auto& dataset : listed.datasets()) {
      out.push_back(dataset.name());
    }
    return out;
  };
  EXPECT_THAT(names(ours), ElementsAre("d"));
  EXPECT_THAT(names(theirs), ElementsAre("projects/vision/d"));
  EXPECT_THAT(names(every), ::testing::UnorderedElementsAre("d", "projects/vision/d"));
  EXPECT_THAT(store_->GetDataset("projects/default/d").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "has no prefix"));

  // Garbage collection drops every project's reference with the content: a project that uploads
  // it again afterwards starts from nothing.
  std::string garbage = RandomBytes(80 << 10, 23);
  auto other = store_->StartUpload(0, "other");
  ASSERT_OK(other.status());
  ASSERT_OK(store_->PutChunks(other->id(), {{Sha256Of(garbage), garbage}}).status());
  ASSERT_OK(store_->CommitBlobs(CommitOf(other->id(), {garbage})).status());
  ASSERT_OK(store_->FinishUpload(other->id()));
  ASSERT_OK(store_->FinishUpload(vision->id()));
  ASSERT_OK(store_->FinishUpload(session_));
  v1::GarbageCollectRequest gc;
  gc.set_zero_grace(true);
  Settle();
  auto swept = store_->GarbageCollect(gc);
  ASSERT_OK(swept.status());
  EXPECT_EQ(swept->blobs_deleted(), 1);
  int refs = 0;
  ASSERT_OK(store_->db().ScanPrefix(
      store_->db().Cf("project_refs"), "", {}, [&](std::string_view key, std::string_view) {
        EXPECT_EQ(key.find(std::string(DigestBytes(Sha256Of(garbage)))), std::string::npos);
        ++refs;
        return true;
      }));
  EXPECT_EQ(refs, 2 * 3) << "the blob and its two chunks, for default and vision";
}

TEST_F(ArtifactStoreTest, GarbageCollectionNeverDeletesWhatAnOpenSessionSentOrFound) {
  std::string sent = RandomBytes(100 << 10, 14), found = RandomBytes(100 << 10, 15);
  // `found` was stored by an earlier, finished session and is garbage...
  auto other = store_->StartUpload(0);
  ASSERT_OK(other.status());
  ASSERT_OK(store_->PutChunks(other->id(), {{Sha256Of(found), found}}).status());
  ASSERT_OK(store_->FinishUpload(other->id()));
  // ...until this open session asks about it; and it sends `sent` without committing yet.
  ASSERT_OK(store_->FindMissingChunks(session_, {Sha256Of(found)}).status());
  ASSERT_OK(store_->PutChunks(session_, {{Sha256Of(sent), sent}}).status());
  v1::GarbageCollectRequest gc;
  gc.set_zero_grace(true);
  auto result = store_->GarbageCollect(gc);
  ASSERT_OK(result.status());
  EXPECT_EQ(result->chunks_deleted(), 0);
  // The commit that follows succeeds.
  v1::CommitBlobsRequest commit = CommitOf(session_, {found, sent});
  ASSERT_OK(store_->CommitBlobs(commit).status());
  EXPECT_EQ(Read(commit.blobs(0).digest()), found + sent);
  // Once the session ends and nothing references the blob, both chunks go.
  ASSERT_OK(store_->FinishUpload(session_));
  Settle();
  EXPECT_EQ(store_->GarbageCollect(gc)->chunks_deleted(), 2);
}

TEST_F(ArtifactStoreTest, GarbageCollectionRacingUploadsLosesNoCommittedBlob) {
  // Uploader threads store and commit blobs into a dataset while collections run back to back
  // with zero grace; every committed blob must stay readable.
  std::atomic<bool> stop{false};
  std::thread collector([&] {
    v1::GarbageCollectRequest gc;
    gc.set_zero_grace(true);
    while (!stop.load()) ASSERT_OK(store_->GarbageCollect(gc).status());
  });
  std::vector<std::string> committed;
  for (int i = 0; i < 40; ++i) {
    auto session = store_->StartUpload(0);
    ASSERT_OK(session.status());
    std::string a = RandomBytes(70 << 10, 100 + i), shared = RandomBytes(70 << 10, 1);
    ASSERT_OK(
        store_->PutChunks(session->id(), {{Sha256Of(a), a}, {Sha256Of(shared), shared}}).status());
    v1::CommitBlobsRequest commit = CommitOf(session->id(), {a, shared});
    ASSERT_OK(store_->CommitBlobs(commit).status());
    const v1::BlobManifest* blob = &commit.blobs(0);
    v1::VersionEntry entry;
    entry.set_path("f" + std::to_string(i));
    entry.set_digest(blob->digest());
    entry.set_size(blob->size());
    ASSERT_OK(NewVersion("race" + std::to_string(i), {entry}).status());
    ASSERT_OK(store_->FinishUpload(session->id()));
    committed.push_back(blob->digest());
  }
  stop = true;
  collector.join();
  v1::GarbageCollectRequest gc;
  gc.set_zero_grace(true);
  ASSERT_OK(store_->GarbageCollect(gc).status());
  for (int i = 0; i < 40; ++i) {
    std::string a = RandomBytes(70 << 10, 100 + i), shared = RandomBytes(70 << 10, 1);
    EXPECT_EQ(Read(committed[static_cast<size_t>(i)]), a + shared) << i;
  }
  EXPECT_EQ(store_->Scrub(false)->missing_size(), 0);
}

TEST_F(ArtifactStoreTest, DataSurvivesReopen) {
  std::string content = RandomBytes(300 << 10, 20);
  auto version = NewVersion("persist", {Entry("file", content)});
  ASSERT_OK(version.status());
  store_.reset();
  auto reopened = ArtifactStore::Open(dir_.path() + "/artifact", Db::Options());
  ASSERT_OK(reopened.status());
  store_ = std::move(*reopened);
  auto got = store_->GetVersion("persist", "latest");
  ASSERT_OK(got.status());
  EXPECT_EQ(got->digest(), version->digest());
  v1::ListVersionEntriesRequest list;
  list.set_dataset("persist");
  EXPECT_EQ(Read(store_->ListVersionEntries(list)->entries(0).digest()), content);
}

TEST_F(ArtifactStoreTest, ACorruptRecordIsDataLossNotAnEmptyDataset) {
  ASSERT_OK(NewVersion("broken", {Entry("a", "1")}).status());
  store_.reset();
  testing::CorruptRecord(dir_.path() + "/artifact/db", "datasets", "broken");
  auto reopened = ArtifactStore::Open(dir_.path() + "/artifact", Db::Options());
  ASSERT_OK(reopened.status());
  store_ = std::move(*reopened);
  EXPECT_THAT(store_->GetDataset("broken").status(),
              StatusIs(absl::StatusCode::kDataLoss, "column family datasets, key \"broken\""));
  // A version of it cannot be written over the damage either.
  auto session = store_->StartUpload(0);
  ASSERT_OK(session.status());
  session_ = session->id();
  EXPECT_THAT(NewVersion("broken", {Entry("b", "2")}).status(),
              StatusIs(absl::StatusCode::kDataLoss, "datasets"));
}

}  // namespace
}  // namespace mlops::artifact
