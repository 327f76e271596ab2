// Model analysis (services/monitoring/evaluation.h) against scikit-learn: every metric of random
// binary, multiclass and regression predictions, overall and per slice (a slice of one class
// only, tied scores, labels never predicted, zero labels for MAPE, constant labels for R²), and
// group fairness by Fairlearn's definitions. The reference values come from
// tests/monitoring/sklearn_metrics.py, run on the same CSV by Debian's python3-sklearn.
#include "services/monitoring/evaluation.h"

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "services/common/strings.h"
#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using ::mlops::testing::StatusIs;

constexpr double kTolerance = 1e-9;

// scikit-learn's values for `csv` (see sklearn_metrics.py), or an empty Struct when it cannot run.
Struct Sklearn(const std::string& csv, const std::string& task, const std::string& slice = "",
               const std::string& sensitive = "") {
  std::string command =
      StrCat("/usr/bin/python3 ", MLOPS_SOURCE_DIR, "/tests/monitoring/sklearn_metrics.py ", csv,
             " ", task, " '", slice, "' '", sensitive, "'");
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  EXPECT_EQ(::pclose(pipe), 0) << command;
  Struct result;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &result).ok()) << out;
  return result;
}

bool SklearnRuns() { return std::system("/usr/bin/python3 -c 'import sklearn' 2>/dev/null") == 0; }

const Value& Field(const Struct& s, const std::string& key) {
  static const Value* missing = new Value();
  auto it = s.fields().find(key);
  return it == s.fields().end() ? *missing : it->second;
}

void ExpectClassification(const v1::ModelMetrics& ours, const Struct& theirs,
                          const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(ours.count(), Field(theirs, "count").number_value());
  EXPECT_NEAR(ours.accuracy(), Field(theirs, "accuracy").number_value(), kTolerance);
  for (const char* average : {"macro", "weighted"}) {
    EXPECT_NEAR(
        std::string(average) == "macro" ? ours.macro_precision() : ours.weighted_precision(),
        Field(theirs, std::string(average) + "_precision").number_value(), kTolerance);
    EXPECT_NEAR(std::string(average) == "macro" ? ours.macro_recall() : ours.weighted_recall(),
                Field(theirs, std::string(average) + "_recall").number_value(), kTolerance);
    EXPECT_NEAR(std::string(average) == "macro" ? ours.macro_f1() : ours.weighted_f1(),
                Field(theirs, std::string(average) + "_f1").number_value(), kTolerance);
  }
  const auto& classes = Field(theirs, "classes").list_value();
  ASSERT_EQ(ours.classes_size(), classes.values_size());
  for (int i = 0; i < ours.classes_size(); ++i) {
    const Struct& c = classes.values(i).struct_value();
    EXPECT_EQ(ours.classes(i).label(), Field(c, "label").string_value());
    EXPECT_NEAR(ours.classes(i).precision(), Field(c, "precision").number_value(), kTolerance);
    EXPECT_NEAR(ours.classes(i).recall(), Field(c, "recall").number_value(), kTolerance);
    EXPECT_NEAR(ours.classes(i).f1(), Field(c, "f1").number_value(), kTolerance);
    EXPECT_EQ(ours.classes(i).support(), Field(c, "support").number_value());
  }
  const auto& confusion = Field(theirs, "confusion").list_value();
  ASSERT_EQ(ours.confusion_size(), confusion.values_size());
  for (int i = 0; i < ours.confusion_size(); ++i) {
    EXPECT_EQ(ours.confusion(i), confusion.values(i).number_value());
  }
  if (!theirs.fields().contains("log_loss")) return;  // no scores
  EXPECT_EQ(ours.has_roc_auc(), theirs.fields().contains("roc_auc"));
  if (ours.has_roc_auc()) {
    EXPECT_NEAR(ours.roc_auc(), Field(theirs, "roc_auc").number_value(), kTolerance);
  }
  EXPECT_EQ(ours.has_pr_auc(), theirs.fields().contains("pr_auc"));
  if (ours.has_pr_auc()) {
    EXPECT_NEAR(ours.pr_auc(), Field(theirs, "pr_auc").number_value(), kTolerance);
  }
  EXPECT_NEAR(ours.log_loss(), Field(theirs, "log_loss").number_value(), kTolerance);
  EXPECT_NEAR(ours.brier(), Field(theirs, "brier").number_value(), kTolerance);
  EXPECT_NEAR(ours.ece(), Field(theirs, "ece").number_value(), kTolerance);
  EXPECT_EQ(ours.calibration_size(), Field(theirs, "calibration_bins").number_value());
}

void ExpectRegression(const v1::ModelMetrics& ours, const Struct& theirs,
                      const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_EQ(ours.count(), Field(theirs, "count").number_value());
  EXPECT_NEAR(ours.rmse(), Field(theirs, "rmse").number_value(), kTolerance);
  EXPECT_NEAR(ours.mae(), Field(theirs, "mae").number_value(), kTolerance);
  EXPECT_NEAR(ours.r2(), Field(theirs, "r2").number_value(), kTolerance);
  // MAPE divides by machine epsilon where a label is 0: relative tolerance.
  const double mape = Field(theirs, "mape").number_value();
  EXPECT_NEAR(ours.mape(), mape, std::max(kTolerance, std::abs(mape) * 1e-12));
}

std::unique_ptr<Table> Read(const std::string& path) {
  auto table = Table::ReadFile(path);
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? std::move(*table) : nullptr;
}

v1::EvaluateModelRequest Request(const std::string& task) {
  v1::EvaluateModelRequest request;
  request.set_task(task);
  return request;
}

class EvaluationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // tools/bootstrap.sh installs python3-sklearn: CI always runs these.
    if (!SklearnRuns()) GTEST_SKIP() << "python3-sklearn is not installed (tools/bootstrap.sh)";
  }
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }
  testing::TempDir dir_;
};

TEST_F(EvaluationTest, BinaryClassificationMatchesScikitLearnOverallPerSliceAndInFairness) {
  // 3,000 rows: scores rounded to 0.05 (many ties), predictions at 0.5 with noise; city rome has
  // only negative labels (no ROC AUC there), and group b is treated worse than a.
  std::mt19937_64 rng(21);
  std::uniform_real_distribution<double> uniform(0, 1);
  const std::string csv = Path("binary.csv");
  {
    std::ofstream out(csv);
    out << "label,prediction,score,city,group,age\n";
    const char* cities[] = {"paris", "oslo", "rome"};
    for (int i = 0; i < 3000; ++i) {
      const std::string city = cities[i % 3];
      const std::string group = uniform(rng) < 0.4 ? "b" : "a";
      int label = city == "rome" ? 0 : uniform(rng) < 0.45;
      double score =
          std::clamp(0.5 * label + 0.5 * uniform(rng) - (group == "b" ? 0.1 : 0), 0.0, 1.0);
      score = std::round(score * 20) / 20;
      int prediction = uniform(rng) < 0.1 ? !(score >= 0.5) : score >= 0.5;
      out << label << "," << prediction << "," << score << "," << city << "," << group << ","
          << 18 + i % 60 << "\n";
    }
  }
  auto table = Read(csv);
  ASSERT_NE(table, nullptr);
  v1::EvaluateModelRequest request = Request("classification");
  request.set_score_column("score");
  request.add_slice_by("city");
  request.add_slice_by("age");
  request.add_cross("city,group");
  request.set_sensitive_feature("group");
  auto evaluation = EvaluatePredictions({table.get()}, request);
  ASSERT_OK(evaluation.status());
  Struct sklearn = Sklearn(csv, "classification", "city", "group");
  ExpectClassification(evaluation->overall(), Field(sklearn, "overall").struct_value(), "overall");
  EXPECT_TRUE(evaluation->overall().has_roc_auc());
  std::map<std::string, const v1::SliceMetrics*> cities;
  int age_slices = 0, cross_slices = 0;
  uint64_t age_rows = 0;
  for (const auto& slice : evaluation->slices()) {
    if (slice.feature() == "city") cities[slice.value()] = &slice;
    if (slice.feature() == "age") ++age_slices, age_rows += slice.metrics().count();
    if (slice.feature() == "city,group") ++cross_slices;
  }
  const Struct& slices = Field(sklearn, "slices").struct_value();
  ASSERT_EQ(cities.size(), 3u);
  for (const auto& [city, slice] : cities) {
    ExpectClassification(slice->metrics(), Field(slices, city).struct_value(), "city " + city);
  }
  EXPECT_FALSE(cities["rome"]->metrics().has_roc_auc());  // one class only
  EXPECT_FALSE(cities["rome"]->metrics().has_pr_auc());   // and no positive
  // age: 60 distinct values, so 4 quantile buckets covering every row.
  EXPECT_EQ(age_slices, 4);
  EXPECT_EQ(age_rows, 3000u);
  EXPECT_EQ(cross_slices, 6);
  EXPECT_EQ(evaluation->slices(3).value(), "[18, 33)");

  const Struct& fairness = Field(sklearn, "fairness").struct_value();
  const v1::Fairness& ours = evaluation->fairness();
  EXPECT_EQ(ours.feature(), "group");
  EXPECT_NEAR(ours.demographic_parity_difference(),
              Field(fairness, "demographic_parity_difference").number_value(), kTolerance);
  EXPECT_NEAR(ours.demographic_parity_ratio(),
              Field(fairness, "demographic_parity_ratio").number_value(), kTolerance);
  EXPECT_NEAR(ours.equalized_odds_difference(),
              Field(fairness, "equalized_odds_difference").number_value(), kTolerance);
  EXPECT_NEAR(ours.equalized_odds_ratio(), Field(fairness, "equalized_odds_ratio").number_value(),
              kTolerance);
  ASSERT_EQ(ours.groups_size(), 2);
  for (const auto& group : ours.groups()) {
    const Struct& theirs =
        Field(Field(fairness, "groups").struct_value(), group.group()).struct_value();
    EXPECT_EQ(group.count(), Field(theirs, "count").number_value());
    EXPECT_NEAR(group.selection_rate(), Field(theirs, "selection_rate").number_value(), kTolerance);
    EXPECT_NEAR(group.true_positive_rate(), Field(theirs, "true_positive_rate").number_value(),
                kTolerance);
    EXPECT_NEAR(group.false_positive_rate(), Field(theirs, "false_positive_rate").number_value(),
                kTolerance);
  }
  EXPECT_GT(ours.demographic_parity_difference(), 0.05);  // group b is selected less
}

TEST_F(EvaluationTest, MulticlassLabelsNeverPredictedAndPredictionsNeverTrue) {
  // Labels 0..3; the model never predicts 3 and sometimes predicts 4, which is never true.
  std::mt19937_64 rng(5);
  const std::string csv = Path("multi.csv");
  {
    std::ofstream out(csv);
    out << "label,prediction,city\n";
    for (int i = 0; i < 1000; ++i) {
      int label = static_cast<int>(rng() % 4);
      int prediction = rng() % 3 == 0 ? static_cast<int>(rng() % 3) : std::min(label, 2);
      if (rng() % 50 == 0) prediction = 4;
      out << label << "," << prediction << "," << (i % 2 ? "paris" : "oslo") << "\n";
    }
  }
  auto table = Read(csv);
  v1::EvaluateModelRequest request = Request("classification");
  request.add_slice_by("city");
  auto evaluation = EvaluatePredictions({table.get()}, request);
  ASSERT_OK(evaluation.status());
  Struct sklearn = Sklearn(csv, "classification", "city");
  ExpectClassification(evaluation->overall(), Field(sklearn, "overall").struct_value(), "overall");
  ASSERT_EQ(evaluation->overall().classes_size(), 5);
  EXPECT_EQ(evaluation->overall().classes(3).precision(), 0);  // never predicted
  EXPECT_EQ(evaluation->overall().classes(4).support(), 0u);   // never true
  for (const auto& slice : evaluation->slices()) {
    ExpectClassification(
        slice.metrics(),
        Field(Field(sklearn, "slices").struct_value(), slice.value()).struct_value(),
        slice.value());
  }
}

TEST_F(EvaluationTest, RegressionMatchesScikitLearnWithZeroLabelsAndConstantSlices) {
  std::mt19937_64 rng(8);
  std::normal_distribution<double> normal(0, 1);
  const std::string csv = Path("regression.csv");
  {
    std::ofstream out(csv);
    out << "label,prediction,city\n";
    for (int i = 0; i < 800; ++i) {
      const char* city = i % 4 == 0 ? "rome" : (i % 2 ? "paris" : "oslo");
      // rome: a constant label of 5 (R² by scikit-learn's force_finite); some labels are 0.
      double label = std::string(city) == "rome" ? 5 : (i % 37 == 0 ? 0 : 10 + 3 * normal(rng));
      out << FormatDouble(label) << "," << FormatDouble(label + normal(rng)) << "," << city << "\n";
    }
  }
  auto table = Read(csv);
  v1::EvaluateModelRequest request = Request("regression");
  request.add_slice_by("city");
  auto evaluation = EvaluatePredictions({table.get()}, request);
  ASSERT_OK(evaluation.status());
  Struct sklearn = Sklearn(csv, "regression", "city");
  ExpectRegression(evaluation->overall(), Field(sklearn, "overall").struct_value(), "overall");
  ASSERT_EQ(evaluation->slices_size(), 3);
  for (const auto& slice : evaluation->slices()) {
    ExpectRegression(slice.metrics(),
                     Field(Field(sklearn, "slices").struct_value(), slice.value()).struct_value(),
                     slice.value());
  }
  EXPECT_EQ(evaluation->slices(2).value(), "rome");
  EXPECT_EQ(evaluation->slices(2).metrics().r2(), 0);  // constant labels, not predicted exactly
}

TEST(EvaluationErrorsTest, BadRequestsAreRefusedNamingWhatIsWrong) {
  auto table = Table::ParseCsv(
      "label,prediction,score,text\n1,1,0.9,a\n0,1,0.6,b\n2,0,0.1,c\n,1,0.5,d\n", {});
  ASSERT_OK(table.status());
  std::vector<const Table*> tables = {table->get()};
  auto refuse = [&](v1::EvaluateModelRequest request, const std::string& what) {
    EXPECT_THAT(EvaluatePredictions(tables, request).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, what))
        << request.DebugString();
  };
  refuse(Request("ranking"), "task: classification or regression");
  v1::EvaluateModelRequest request = Request("classification");
  request.set_label_column("y");
  refuse(request, "a table has no column y");
  request = Request("classification");
  request.add_slice_by("nope");
  refuse(request, "a table has no column nope");
  request = Request("classification");
  request.set_score_column("score");
  refuse(request, "binary labels with positive_class 1 among them; found 3 labels");
  request = Request("classification");
  request.add_cross("text");
  refuse(request, "cross text: two features");
  request = Request("regression");
  request.set_label_column("text");
  refuse(request, "regression: labels and predictions are numbers");
  request = Request("regression");
  request.set_score_column("score");
  refuse(request, "score_column and sensitive_feature are for binary classification");
  auto bad_score = Table::ParseCsv("label,prediction,score\n1,1,1.5\n", {});
  ASSERT_OK(bad_score.status());
  request = Request("classification");
  request.set_score_column("score");
  EXPECT_THAT(EvaluatePredictions({bad_score->get()}, request).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "1.5 is not a probability"));
  // A row without a label is skipped and counted.
  auto evaluation = EvaluatePredictions(tables, Request("classification"));
  ASSERT_OK(evaluation.status());
  EXPECT_EQ(evaluation->skipped(), 1u);
  EXPECT_EQ(evaluation->overall().count(), 3u);
}

}  // namespace
}  // namespace mlops::monitoring
