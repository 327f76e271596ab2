// SearchRuns is checked against a brute-force evaluation over every run, for many filters, orders
// and page sizes, under the default planner limits and under tiny ones that force every strategy
// (in-memory sort, index walk over a candidate set, walk with per-run checks, partial pages).
#include <algorithm>
#include <cmath>
#include <random>

#include "services/metadata/filter.h"
#include "services/metadata/metadata_store.h"
#include "services/metadata/run_index_internal.h"
#include "tests/testing/testing.h"

namespace mlops::metadata {
namespace {

using ::mlops::testing::StatusIs;

class RunSearchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto store = MetadataStore::Open(dir_->path() + "/metadata", Db::Options());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = store->release();
    std::mt19937 rng(42);
    for (const char* name : {"a", "b"}) {
      v1::CreateExperimentRequest request;
      request.set_name(name);
      experiments_.push_back(store_->CreateExperiment(request)->id());
    }
    const char* optimizers[] = {"adam", "sgd", "rmsprop", "adamw", "lion"};
    const char* teams[] = {"vision", "nlp", "speech"};
    for (int i = 0; i < 2500; ++i) {
      v1::CreateRunRequest request;
      request.set_experiment_id(experiments_[i % 5 == 0 ? 1 : 0]);
      request.set_name("run-" + std::to_string(rng() % 100));
      request.set_start_time_ms(1700000000000 + static_cast<int64_t>(rng() % 1000) * 1000);
      (*request.mutable_params())["opt"] = optimizers[rng() % 5];
      (*request.mutable_params())["seed"] = std::to_string(rng() % 200);
      if (rng() % 3 != 0) (*request.mutable_params())["lr"] = "0.00" + std::to_string(rng() % 9);
      (*request.mutable_tags())["team"] = teams[rng() % 3];
      auto run = store_->CreateRun(request);
      ASSERT_TRUE(run.ok()) << run.status();
      v1::LogBatchRequest batch;
      batch.set_run_id(run->id());
      std::uniform_real_distribution<double> unit(0, 1);
      for (int step = 0; step < 3; ++step) {
        v1::Metric* acc = batch.add_metrics();
        acc->set_key("acc");
        acc->set_value(std::round(unit(rng) * 1000) / 1000);
        if (i % 50 == 0 && step == 2) acc->set_value(0.5);  // exact boundary values
        acc->set_step(step);
        if (rng() % 4 != 0) {
          v1::Metric* loss = batch.add_metrics();
          loss->set_key("loss");
          loss->set_value(rng() % 50 == 0 ? std::nan("") : unit(rng) * 10 - 2);
          loss->set_step(step);
        }
      }
      ASSERT_OK(store_->LogBatch(batch));
      if (rng() % 2 == 0) {
        v1::UpdateRunRequest update;
        update.mutable_run()->set_id(run->id());
        update.mutable_run()->set_status(rng() % 3 == 0 ? v1::FAILED : v1::FINISHED);
        update.mutable_update_mask()->add_paths("status");
        ASSERT_TRUE(store_->UpdateRun(update).ok());
      }
      if (rng() % 20 == 0) {
        ASSERT_TRUE(store_->SetRunLifecycle(run->id(), v1::DELETED).ok());
      }
      run_ids_.push_back(run->id());
    }
    for (const auto& id : run_ids_) runs_.push_back(*store_->GetRun(id));
  }

  static void TearDownTestSuite() {
    runs_.clear();
    delete store_;
    delete dir_;
  }

  // Every run matching the request, in the documented order, computed the slow way.
  static std::vector<std::string> BruteForce(const v1::SearchRunsRequest& request) {
    auto filter = ParseFilter(request.filter());
    EXPECT_TRUE(filter.ok());
    OrderBy order;
    order.field.kind = FieldKind::kAttribute;
    order.field.attribute = Attribute::kStartTime;
    order.field.key = "start_time";
    order.descending = true;
    if (request.order_by_size() > 0) order = *ParseOrderBy(request.order_by(0));
    struct Row {
      FieldValue value;
      v1::Run run;
    };
    std::vector<Row> rows;
    for (const v1::Run& run : runs_) {
      if (std::find(request.experiment_ids().begin(), request.experiment_ids().end(),
                    run.experiment_id()) == request.experiment_ids().end()) {
        continue;
      }
      bool deleted = run.lifecycle_stage() == v1::DELETED;
      if (request.view() != v1::ALL && deleted != (request.view() == v1::DELETED_ONLY)) continue;
      if (!internal::Matches(filter->get(), run)) continue;
      rows.push_back({internal::GetFieldValue(run, order.field), run});
    }
    auto less_value = [&](const FieldValue& a, const FieldValue& b) {
      if (a.numeric) {
        bool an = std::isnan(a.number), bn = std::isnan(b.number);
        if (an || bn) return !an && bn;  // NaN sorts above everything
        return a.number < b.number;
      }
      return a.text < b.text;
    };
    std::sort(rows.begin(), rows.end(), [&](const Row& x, const Row& y) {
      if (x.value.present != y.value.present) return x.value.present;
      if (!x.value.present) {
        return std::tie(x.run.experiment_id(), x.run.id()) <
               std::tie(y.run.experiment_id(), y.run.id());
      }
      bool x_less = less_value(x.value, y.value), y_less = less_value(y.value, x.value);
      if (x_less || y_less) return order.descending ? y_less : x_less;
      return order.descending ? x.run.id() > y.run.id() : x.run.id() < y.run.id();
    });
    std::vector<std::string> ids;
    for (const auto& row : rows) ids.push_back(row.run.id());
    return ids;
  }

  static std::vector<std::string> Paged(v1::SearchRunsRequest request, int page_size) {
    request.set_page_size(page_size);
    std::vector<std::string> ids;
    for (int pages = 0; pages < 10000; ++pages) {
      auto response = store_->SearchRuns(request);
      EXPECT_TRUE(response.ok()) << response.status() << " for " << request.filter();
      if (!response.ok()) break;
      EXPECT_LE(response->runs_size(), page_size);
      for (const auto& run : response->runs()) ids.push_back(run.id());
      if (response->next_page_token().empty()) break;
      request.set_page_token(response->next_page_token());
    }
    return ids;
  }

  static testing::TempDir* dir_;
  static MetadataStore* store_;
  static std::vector<std::string> experiments_;
  static std::vector<std::string> run_ids_;
  static std::vector<v1::Run> runs_;  // final state of every run, for the brute force
};

testing::TempDir* RunSearchTest::dir_ = nullptr;
MetadataStore* RunSearchTest::store_ = nullptr;
std::vector<std::string> RunSearchTest::experiments_;
std::vector<std::string> RunSearchTest::run_ids_;
std::vector<v1::Run> RunSearchTest::runs_;

const char* const kFilters[] = {
    "",
    "params.opt = 'adam'",
    "params.opt = 'adam' and metrics.acc > 0.5",
    "params.seed = '7'",
    "params.seed = '7' or params.seed = '8'",
    "params.opt in ('sgd', 'lion') and tags.team != 'nlp'",
    "metrics.acc >= 0.9",
    "metrics.acc < 0.1 or metrics.acc > 0.95",
    "metrics.loss < 0",
    "metrics.loss != 1",
    "metrics.loss <= 7.5 and metrics.acc > 0.2 and params.opt = 'adamw'",
    "status = 'FINISHED'",
    "status = 'RUNNING' and params.lr = '0.003'",
    "params.lr like '0.00%' and params.opt not in ('adam')",
    "name like 'run-1%'",
    "name ilike 'RUN-2_'",
    "tags.team not like 'v%'",
    "start_time > 1700000500000 and start_time <= 1700000600000",
    "end_time > 0",
    "(params.opt = 'sgd' or tags.team = 'speech') and (metrics.acc > 0.7 or status = 'FAILED')",
    "params.missing = 'x'",
    "params.lr > '0.004'",
    "run_id > '0'",
    "metrics.acc > 0.5",
    "metrics.acc <= 0.5 and metrics.acc >= 0.5",
    "metrics.acc = 0.5 or params.seed > '17'",
    "params.seed <= '17' and params.seed >= '12'",
    "params.seed < '3' or params.seed = '99'",
    "metrics.loss >= 0 and metrics.loss < 1",
    "start_time = 1700000500000 or start_time < 1700000010000",
};

const char* const kOrders[] = {
    "",          "metrics.acc DESC", "metrics.acc",    "metrics.loss DESC",
    "params.lr", "params.seed DESC", "start_time ASC", "name DESC",
    "status"};

void CheckAll(MetadataStore* store, const std::vector<std::string>& experiments,
              const std::function<std::vector<std::string>(const v1::SearchRunsRequest&)>& brute,
              const std::function<std::vector<std::string>(v1::SearchRunsRequest, int)>& paged) {
  (void)store;
  // Every filter with three orders and a view each, rotating so that every order and view meets
  // many filters (the whole cross product is too slow under ASan).
  const int page_sizes[] = {1000, 97};
  const v1::ViewType views[] = {v1::VIEW_TYPE_UNSPECIFIED, v1::DELETED_ONLY, v1::ALL};
  const size_t n_orders = sizeof(kOrders) / sizeof(kOrders[0]);
  int checked = 0;
  for (size_t f = 0; f < sizeof(kFilters) / sizeof(kFilters[0]); ++f) {
    for (size_t j = 0; j < 3; ++j) {
      const char* filter = kFilters[f];
      const char* order = kOrders[(f + 3 * j) % n_orders];
      v1::SearchRunsRequest request;
      for (const auto& e : experiments) request.add_experiment_ids(e);
      if (checked % 3 == 1) request.mutable_experiment_ids()->RemoveLast();
      request.set_filter(filter);
      if (*order) request.add_order_by(order);
      request.set_view(views[(f + j) % 3]);
      auto expected = brute(request);
      int page_size = page_sizes[checked % 2];
      auto actual = paged(request, page_size);
      ASSERT_EQ(actual, expected) << "filter: " << filter << " order: " << order
                                  << " view: " << request.view() << " page: " << page_size;
      ++checked;
    }
  }
}

TEST_F(RunSearchTest, MatchesBruteForceWithDefaultPlanner) {
  store_->set_search_tuning(SearchTuning());
  CheckAll(store_, experiments_, BruteForce, Paged);
}

TEST_F(RunSearchTest, MatchesBruteForceWhenEveryStrategyIsForced) {
  SearchTuning tiny;
  tiny.candidate_limit = 150;
  tiny.in_memory_sort_max = 40;
  tiny.work_budget = 400;  // forces partial pages
  store_->set_search_tuning(tiny);
  CheckAll(store_, experiments_, BruteForce, Paged);
  store_->set_search_tuning(SearchTuning());
}

TEST_F(RunSearchTest, RejectsBadRequests) {
  v1::SearchRunsRequest request;
  EXPECT_THAT(store_->SearchRuns(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "experiment_ids"));
  request.add_experiment_ids(std::string(32, '0'));
  EXPECT_THAT(store_->SearchRuns(request).status(),
              StatusIs(absl::StatusCode::kNotFound, "not found"));
  request.set_experiment_ids(0, experiments_[0]);
  request.set_filter("metrics.acc >");
  EXPECT_THAT(store_->SearchRuns(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "filter: at position 14"));
  request.set_filter("");
  request.add_order_by("metrics.acc");
  request.add_order_by("params.lr");
  EXPECT_THAT(store_->SearchRuns(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most one"));
  request.clear_order_by();
  request.set_page_size(5);
  auto first = store_->SearchRuns(request);
  ASSERT_TRUE(first.ok());
  ASSERT_FALSE(first->next_page_token().empty());
  request.set_page_token(first->next_page_token());
  request.set_filter("params.opt = 'adam'");  // a token is bound to its query
  EXPECT_THAT(store_->SearchRuns(request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
}

}  // namespace
}  // namespace mlops::metadata
