// RegistryStore on a real RocksDB: versions, aliases that move atomically with their history,
// "what was in production at time T", deletion rules, compare-and-set, and racing alias moves.
#include "services/metadata/registry_store.h"

#include <random>
#include <thread>

#include "services/metadata/lineage_store.h"
#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;

const std::string kDigest(64, 'a');

class RegistryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = LineageStore::OpenDb(dir_.path() + "/lineage", Db::Options());
    ASSERT_OK(db.status());
    db_ = std::move(*db);
    registry_ = std::make_unique<RegistryStore>(db_.get());
    v1::CreateRegisteredModelRequest create;
    create.set_name("iris");
    ASSERT_OK(registry_->CreateRegisteredModel(create).status());
  }

  int64_t NewVersion(const std::string& run = "") {
    v1::CreateModelVersionRequest request;
    request.set_name("iris");
    request.set_artifact_digest(kDigest);
    request.set_source_run_id(run);
    auto version = registry_->CreateModelVersion(request);
    EXPECT_OK(version.status());
    return version->version();
  }

  absl::StatusOr<v1::AliasMove> Move(const std::string& alias, int64_t version,
                                     int64_t expected = 0) {
    v1::SetAliasRequest request;
    request.set_name("iris");
    request.set_alias(alias);
    request.set_version(version);
    request.set_expected_version(expected);
    request.set_actor("alice");
    return registry_->SetAlias(request);
  }

  testing::TempDir dir_;
  std::unique_ptr<Db> db_;
  std::unique_ptr<RegistryStore> registry_;
};

TEST_F(RegistryStoreTest, VersionsAreNumberedAndRequestIdsMakeCreatesIdempotent) {
  EXPECT_EQ(NewVersion(), 1);
  EXPECT_EQ(NewVersion(), 2);
  v1::CreateModelVersionRequest request;
  request.set_name("iris");
  request.set_artifact_digest(kDigest);
  request.set_request_id("ci-build-17");
  auto first = registry_->CreateModelVersion(request);
  ASSERT_OK(first.status());
  EXPECT_EQ(first->version(), 3);
  EXPECT_EQ(registry_->CreateModelVersion(request)->version(), 3);
  EXPECT_EQ(registry_->GetRegisteredModel("iris")->latest_version(), 3);
  request.set_name("unknown-model");
  EXPECT_THAT(registry_->CreateModelVersion(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "unknown-model"));
  request.set_create_model(true);
  EXPECT_EQ(registry_->CreateModelVersion(request)->version(), 1);
  request.set_artifact_digest("xyz");
  EXPECT_THAT(registry_->CreateModelVersion(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "artifact_digest"));
  v1::CreateRegisteredModelRequest dup;
  dup.set_name("iris");
  EXPECT_THAT(registry_->CreateRegisteredModel(dup).status(),
              StatusIs(absl::StatusCode::kAlreadyExists, "iris"));
  v1::ListModelVersionsRequest list;
  list.set_name("iris");
  list.set_page_size(2);
  auto page = registry_->ListModelVersions(list);
  ASSERT_OK(page.status());
  ASSERT_EQ(page->versions_size(), 2);
  EXPECT_EQ(page->versions(0).version(), 3);  // newest first
  list.set_page_token(page->next_page_token());
  EXPECT_EQ(registry_->ListModelVersions(list)->versions(0).version(), 1);
}

TEST_F(RegistryStoreTest, AliasesMoveWithHistoryAndAnswerWhatWasInProductionWhen) {
  NewVersion();
  NewVersion();
  NewVersion();
  auto m1 = Move("production", 1);
  ASSERT_OK(m1.status());
  EXPECT_EQ(m1->from_version(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto m2 = Move("production", 2);
  ASSERT_OK(m2.status());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto m3 = Move("production", 3);
  ASSERT_OK(m3.status());
  EXPECT_EQ(m3->from_version(), 2);
  EXPECT_EQ(m3->sequence(), 3);
  EXPECT_EQ(m3->actor(), "alice");
  v1::GetModelVersionRequest get;
  get.set_name("iris");
  get.set_alias("production");
  EXPECT_EQ(registry_->GetModelVersion(get)->version(), 3);
  EXPECT_THAT(registry_->GetModelVersion(get)->aliases(), ElementsAre("production"));

  v1::GetAliasHistoryRequest history;
  history.set_name("iris");
  history.set_alias("production");
  auto moves = registry_->GetAliasHistory(history);
  ASSERT_OK(moves.status());
  ASSERT_EQ(moves->moves_size(), 3);
  EXPECT_EQ(moves->moves(0).to_version(), 3);  // newest first
  EXPECT_EQ(moves->moves(2).to_version(), 1);
  // At a time between the first and second move: version 1.
  history.set_at_time_ms(m2->time_ms() - 1);
  EXPECT_EQ(registry_->GetAliasHistory(history)->moves(0).to_version(), 1);
  history.set_at_time_ms(m3->time_ms());
  EXPECT_EQ(registry_->GetAliasHistory(history)->moves(0).to_version(), 3);
  history.set_at_time_ms(m1->time_ms() - 1);
  EXPECT_THAT(registry_->GetAliasHistory(history).status(),
              StatusIs(absl::StatusCode::kNotFound, "pointed at nothing"));
  // Times in messages are RFC 3339, not milliseconds (this one is before the first move).
  ASSERT_GT(m1->time_ms(), 1795780800000);
  history.set_at_time_ms(1795780800000);
  EXPECT_THAT(registry_->GetAliasHistory(history).status(),
              StatusIs(absl::StatusCode::kNotFound, "pointed at nothing at 2026-11-27T12:00:00Z"));
}

TEST_F(RegistryStoreTest, AVersionWithAnAliasCannotBeDeleted) {
  NewVersion();
  NewVersion();
  ASSERT_OK(Move("staging", 2).status());
  EXPECT_THAT(registry_->DeleteModelVersion("iris", 2),
              StatusIs(absl::StatusCode::kFailedPrecondition, "alias staging"));
  ASSERT_OK(registry_->DeleteModelVersion("iris", 1));
  EXPECT_THAT(registry_->DeleteModelVersion("iris", 1), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(Move("production", 1).status(), StatusIs(absl::StatusCode::kNotFound, "version 1"));
  v1::DeleteAliasRequest remove;
  remove.set_name("iris");
  remove.set_alias("staging");
  auto removed = registry_->DeleteAlias(remove);
  ASSERT_OK(removed.status());
  EXPECT_EQ(removed->to_version(), 0);
  ASSERT_OK(registry_->DeleteModelVersion("iris", 2));
  // Numbers are never reused.
  EXPECT_EQ(NewVersion(), 3);
}

TEST_F(RegistryStoreTest, CompareAndSetAndBadNames) {
  NewVersion();
  NewVersion();
  EXPECT_THAT(Move("production", 1, /*expected=*/2).status(),
              StatusIs(absl::StatusCode::kAborted, "points at nothing"));
  ASSERT_OK(Move("production", 1, /*expected=*/-1).status());
  EXPECT_THAT(Move("production", 2, /*expected=*/-1).status(),
              StatusIs(absl::StatusCode::kAborted, "version 1"));
  ASSERT_OK(Move("production", 2, /*expected=*/1).status());
  EXPECT_THAT(Move("9lives", 1).status(), StatusIs(absl::StatusCode::kInvalidArgument, "alias"));
  EXPECT_THAT(Move("prod uction", 1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "alias"));
  v1::UpdateRegisteredModelRequest update;
  update.set_name("iris");
  update.set_description("flowers");
  update.set_expected_update_time_ms(1);
  EXPECT_THAT(registry_->UpdateRegisteredModel(update).status(),
              StatusIs(absl::StatusCode::kAborted, ""));
}

TEST_F(RegistryStoreTest, RacingAliasMovesLeaveAConsistentHistory) {
  for (int i = 0; i < 5; ++i) NewVersion();
  std::vector<std::thread> threads;
  std::atomic<int> applied{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 40; ++i) {
        auto move = Move("production", 1 + static_cast<int64_t>(rng() % 5));
        if (move.ok()) applied.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(applied.load(), 240);
  v1::GetAliasHistoryRequest history;
  history.set_name("iris");
  history.set_alias("production");
  history.set_page_size(1000);
  auto moves = registry_->GetAliasHistory(history);
  ASSERT_OK(moves.status());
  ASSERT_EQ(moves->moves_size(), 240);
  // Newest first: sequences count down by one, times strictly decrease, and each move starts
  // where the one before it ended.
  for (int i = 0; i + 1 < moves->moves_size(); ++i) {
    const auto& newer = moves->moves(i);
    const auto& older = moves->moves(i + 1);
    EXPECT_EQ(newer.sequence(), older.sequence() + 1);
    EXPECT_GT(newer.time_ms(), older.time_ms());
    EXPECT_EQ(newer.from_version(), older.to_version());
  }
  EXPECT_EQ(moves->moves(239).from_version(), 0);
  EXPECT_EQ(registry_->GetRegisteredModel("iris")->aliases().at("production"),
            moves->moves(0).to_version());
}

TEST_F(RegistryStoreTest, AnAliasThatRequiresABlessingMovesOnlyToBlessedVersionsOrByOverride) {
  const int64_t v1 = NewVersion(), v2 = NewVersion(), v3 = NewVersion();
  ASSERT_OK(Move("production", v1).status());
  v1::SetAliasPolicyRequest policy;
  policy.set_name("iris");
  policy.set_alias("production");
  policy.mutable_policy()->set_require_blessing(true);
  auto model = registry_->SetAliasPolicy(policy);
  ASSERT_OK(model.status());
  EXPECT_TRUE(model->alias_policies().at("production").require_blessing());

  // v2 was never judged; v3's evaluation failed two rules.
  EXPECT_THAT(Move("production", v2).status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                        "version 2 is not blessed: it has no "
                                                        "blessing"));
  v1::SetBlessingRequest bless;
  bless.set_name("iris");
  bless.set_version(v3);
  bless.mutable_blessing()->set_evaluation_id("e3");
  bless.mutable_blessing()->add_failed("accuracy 0.84 < 0.9 (accuracy >= 0.9)");
  bless.mutable_blessing()->add_failed("slice city=b (n=150): accuracy 0.7 < 0.8");
  bless.mutable_blessing()->add_passed("roc_auc >= champion - 0.01");
  auto blessed = registry_->SetBlessing(bless);
  ASSERT_OK(blessed.status());
  EXPECT_GT(blessed->blessing().time_ms(), 0);
  auto refused = Move("production", v3);
  EXPECT_THAT(refused.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "evaluation e3 failed; accuracy 0.84 < 0.9 (accuracy >= 0.9); slice city=b "
                       "(n=150): accuracy 0.7 < 0.8 (override it with a reason"));
  // Refused: the alias did not move and nothing was recorded.
  v1::GetModelVersionRequest get;
  get.set_name("iris");
  get.set_alias("production");
  EXPECT_EQ(registry_->GetModelVersion(get)->version(), v1);
  v1::GetAliasHistoryRequest history;
  history.set_name("iris");
  history.set_alias("production");
  EXPECT_EQ(registry_->GetAliasHistory(history)->moves_size(), 1);
  // Other aliases are free.
  EXPECT_OK(Move("staging", v3).status());

  // An override needs a reason, and is recorded as one.
  v1::SetAliasRequest request;
  request.set_name("iris");
  request.set_alias("production");
  request.set_version(v3);
  request.set_override(true);
  EXPECT_THAT(registry_->SetAlias(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "say why"));
  request.set_reason("incident 42: v1 leaks memory");
  request.set_actor("bob");
  auto overridden = registry_->SetAlias(request);
  ASSERT_OK(overridden.status());
  EXPECT_TRUE(overridden->overridden());
  auto moves = registry_->GetAliasHistory(history);
  ASSERT_OK(moves.status());
  ASSERT_EQ(moves->moves_size(), 2);
  EXPECT_TRUE(moves->moves(0).overridden());
  EXPECT_EQ(moves->moves(0).reason(), "incident 42: v1 leaks memory");
  EXPECT_FALSE(moves->moves(1).overridden());

  // A blessed version moves freely; an override of a blessed version is no override.
  bless.set_version(v2);
  bless.mutable_blessing()->clear_failed();
  bless.mutable_blessing()->set_blessed(true);
  ASSERT_OK(registry_->SetBlessing(bless).status());
  request.set_version(v2);
  auto plain = Move("production", v2);
  ASSERT_OK(plain.status());
  EXPECT_FALSE(plain->overridden());
  // A blessing that is blessed with failed rules is not one.
  bless.mutable_blessing()->add_failed("x");
  EXPECT_THAT(registry_->SetBlessing(bless).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "blessed, yet with failed rules"));
  // The version read back carries its blessing (and its aliases, not stored with it).
  get.clear_alias();
  get.set_version(v2);
  auto read = registry_->GetModelVersion(get);
  ASSERT_OK(read.status());
  EXPECT_TRUE(read->blessing().blessed());
  EXPECT_THAT(read->aliases(), ::testing::ElementsAre("production"));
  // Removing the policy frees the alias.
  policy.mutable_policy()->set_require_blessing(false);
  ASSERT_OK(registry_->SetAliasPolicy(policy).status());
  EXPECT_OK(Move("production", v1).status());
  policy.set_alias("no good");
  EXPECT_THAT(registry_->SetAliasPolicy(policy).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "alias"));
}

}  // namespace
}  // namespace mlops::metadata
