// The validation engine (services/monitoring/validation.h): inference from CSV and columnar
// tables, every anomaly kind with its counts and examples, schemas that are not well-formed, and
// the YAML form of a schema both ways.
#include "services/monitoring/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "services/common/strings.h"
#include "services/monitoring/schema_yaml.h"
#include "tests/testing/testing.h"

namespace mlops::monitoring {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using v1::Anomaly;
using v1::FeatureSchema;

std::unique_ptr<Table> Csv(std::string_view text) {
  auto table = Table::ParseCsv(text, {});
  EXPECT_TRUE(table.ok()) << table.status();
  return table.ok() ? std::move(*table) : nullptr;
}

std::vector<Anomaly> Check(const v1::Schema& schema, const std::vector<const Table*>& tables,
                           uint64_t* rows = nullptr) {
  EXPECT_OK(CheckSchema(schema));
  std::vector<std::string> files;
  for (size_t i = 0; i < tables.size(); ++i) files.push_back("part" + std::to_string(i) + ".csv");
  return ValidateTables(schema, tables, files, rows);
}

const Anomaly* Find(const std::vector<Anomaly>& anomalies, Anomaly::Kind kind,
                    std::string_view feature) {
  for (const Anomaly& a : anomalies) {
    if (a.kind() == kind && a.feature() == feature) return &a;
  }
  return nullptr;
}

constexpr char kReference[] =
    "id,age,income,plan,active,note\n"
    "1,34,52000.5,basic,true,\n"
    "2,45,61000,pro,false,hello\n"
    "3,29,38000.25,basic,true,\n"
    "4,61,99000,team,true,x\n";

TEST(InferSchemaTest, TypesRangesDomainsAndMissingFromTheTable) {
  auto table = Csv(kReference);
  auto schema = InferSchema({table.get()}, {});
  ASSERT_OK(schema.status());
  ASSERT_EQ(schema->features_size(), 6);
  const auto& id = schema->features(0);
  EXPECT_EQ(id.name(), "id");
  EXPECT_EQ(id.type(), FeatureSchema::INT);
  EXPECT_EQ(id.min(), 1);
  EXPECT_EQ(id.max(), 4);
  EXPECT_FALSE(id.unique());        // 4 rows prove nothing of a key
  EXPECT_FALSE(id.has_required());  // unset: required
  const auto& income = schema->features(2);
  EXPECT_EQ(income.type(), FeatureSchema::FLOAT);
  EXPECT_FALSE(income.has_min());  // a float gets no range from a sample
  EXPECT_FALSE(income.has_max());
  const auto& plan = schema->features(3);
  EXPECT_EQ(plan.type(), FeatureSchema::CATEGORY);
  EXPECT_THAT(plan.values(), ElementsAre("basic", "pro", "team"));
  EXPECT_EQ(schema->features(4).type(), FeatureSchema::BOOL);
  const auto& note = schema->features(5);
  EXPECT_EQ(note.type(), FeatureSchema::CATEGORY);
  EXPECT_EQ(note.max_missing(), 0.5);  // 2 of 4 missing
  EXPECT_EQ(schema->min_rows(), 1u);
  // A table validates against the schema inferred from it.
  EXPECT_TRUE(Check(*schema, {table.get()}).empty());
}

TEST(InferSchemaTest, KeysManyCategoriesOptionalColumnsAndColumnarTables) {
  // 200 rows: a unique int id, a unique string code, a string column of 150 distinct values
  // (over --max-categories 100: STRING), a repeated int (not unique), a column only in one table.
  std::vector<Column> columns(4);
  columns[0].name = "id";
  columns[1].name = "code";
  columns[1].numeric = false;
  columns[2].name = "city";
  columns[2].numeric = false;
  columns[3].name = "bucket";
  for (int i = 0; i < 200; ++i) {
    columns[0].owned.push_back(1000 + i);
    columns[1].strings.push_back("c" + std::to_string(i));
    columns[2].strings.push_back("city" + std::to_string(i % 150));
    columns[3].owned.push_back(i % 7);
  }
  columns[0].values = columns[0].owned.data();  // what WriteColumnar writes
  columns[3].values = columns[3].owned.data();
  std::string path = ::testing::TempDir() + "/infer.mlcol";
  ASSERT_OK(WriteColumnar(path, columns, 200));
  auto mapped = Table::ReadFile(path);
  ASSERT_OK(mapped.status());
  auto extra = Csv("id,code,city,bucket,extra\n5000,z,city1,3,1.5\n");
  auto schema = InferSchema({mapped->get(), extra.get()}, {});
  ASSERT_OK(schema.status());
  ASSERT_EQ(schema->features_size(), 5);
  EXPECT_TRUE(schema->features(0).unique());
  EXPECT_EQ(schema->features(1).type(), FeatureSchema::STRING);
  EXPECT_TRUE(schema->features(1).unique());
  EXPECT_EQ(schema->features(2).type(), FeatureSchema::STRING);
  EXPECT_FALSE(schema->features(2).unique());
  EXPECT_EQ(schema->features(3).type(), FeatureSchema::INT);
  EXPECT_FALSE(schema->features(3).unique());
  EXPECT_EQ(schema->features(4).name(), "extra");
  EXPECT_FALSE(schema->features(4).required());  // in one table of two
  EXPECT_TRUE(Check(*schema, {mapped->get(), extra.get()}).empty());

  // --categorical makes a numeric column a category of its values.
  InferOptions options;
  options.categorical = {"bucket"};
  auto categorical = InferSchema({mapped->get()}, options);
  ASSERT_OK(categorical.status());
  EXPECT_EQ(categorical->features(3).type(), FeatureSchema::CATEGORY);
  EXPECT_THAT(categorical->features(3).values(), ElementsAre("0", "1", "2", "3", "4", "5", "6"));
  options.categorical = {"nope"};
  EXPECT_THAT(InferSchema({mapped->get()}, options).status(),
              mlops::testing::StatusIs(absl::StatusCode::kInvalidArgument, "nope"));
}

TEST(ValidatorTest, EveryAnomalyKindWithCountsAndExamples) {
  v1::Schema schema;
  schema.set_min_rows(10);
  schema.add_absent("label");
  auto* id = schema.add_features();
  id->set_name("id");
  id->set_type(FeatureSchema::INT);
  id->set_unique(true);
  auto* age = schema.add_features();
  age->set_name("age");
  age->set_type(FeatureSchema::INT);
  age->set_min(0);
  age->set_max(120);
  auto* plan = schema.add_features();
  plan->set_name("plan");
  plan->set_type(FeatureSchema::CATEGORY);
  plan->add_values("basic");
  plan->add_values("pro");
  auto* income = schema.add_features();
  income->set_name("income");
  income->set_type(FeatureSchema::FLOAT);
  income->set_max_missing(0.25);
  auto* score = schema.add_features();
  score->set_name("score");
  score->set_type(FeatureSchema::FLOAT);
  auto* flag = schema.add_features();
  flag->set_name("flag");
  flag->set_type(FeatureSchema::BOOL);
  auto table =
      Csv("id,age,plan,income,score,flag,label,extra\n"
          "1,30,basic,1.5,0.1,true,1,a\n"
          "2,-3,gold,,0.2,yes,0,b\n"
          "2,250,pro,,n/a,false,1,c\n"
          "4,40.5,silver,2.5,0.4,1,0,d\n");
  uint64_t rows = 0;
  auto anomalies = Check(schema, {table.get()}, &rows);
  EXPECT_EQ(rows, 4u);

  const Anomaly* dup = Find(anomalies, Anomaly::DUPLICATE_VALUES, "id");
  ASSERT_NE(dup, nullptr);
  EXPECT_EQ(dup->rows(), 1u);
  EXPECT_THAT(dup->examples(), ElementsAre("2"));

  const Anomaly* range = Find(anomalies, Anomaly::OUT_OF_RANGE, "age");
  ASSERT_NE(range, nullptr);
  EXPECT_EQ(range->rows(), 2u);
  EXPECT_EQ(range->expected(), "[0, 120]");
  EXPECT_EQ(range->found(), "[-3, 250]");
  EXPECT_THAT(range->examples(), ElementsAre("-3", "250"));
  const Anomaly* not_int = Find(anomalies, Anomaly::WRONG_TYPE, "age");
  ASSERT_NE(not_int, nullptr);
  EXPECT_EQ(not_int->rows(), 1u);
  EXPECT_THAT(not_int->examples(), ElementsAre("40.5"));

  const Anomaly* unseen = Find(anomalies, Anomaly::UNSEEN_CATEGORY, "plan");
  ASSERT_NE(unseen, nullptr);
  EXPECT_EQ(unseen->rows(), 2u);
  EXPECT_THAT(unseen->examples(), ElementsAre("gold", "silver"));
  EXPECT_EQ(unseen->expected(), "one of basic, pro");

  const Anomaly* missing = Find(anomalies, Anomaly::TOO_MANY_MISSING, "income");
  ASSERT_NE(missing, nullptr);
  EXPECT_EQ(missing->rows(), 2u);
  EXPECT_THAT(missing->found(), HasSubstr("50% missing (2 of 4 rows)"));

  const Anomaly* text = Find(anomalies, Anomaly::WRONG_TYPE, "score");
  ASSERT_NE(text, nullptr);
  EXPECT_EQ(text->found(), "text");
  EXPECT_THAT(text->examples(), ElementsAre("n/a"));

  const Anomaly* flag_type = Find(anomalies, Anomaly::WRONG_TYPE, "flag");
  ASSERT_NE(flag_type, nullptr);
  EXPECT_THAT(flag_type->examples(), ElementsAre("yes"));

  const Anomaly* absent = Find(anomalies, Anomaly::UNEXPECTED_COLUMN, "label");
  ASSERT_NE(absent, nullptr);
  EXPECT_EQ(absent->expected(), "absent");
  EXPECT_EQ(absent->file(), "part0.csv");
  EXPECT_NE(Find(anomalies, Anomaly::UNEXPECTED_COLUMN, "extra"), nullptr);

  const Anomaly* count = Find(anomalies, Anomaly::ROW_COUNT, "");
  ASSERT_NE(count, nullptr);
  EXPECT_EQ(count->expected(), "at least 10 rows");
  EXPECT_EQ(count->found(), "4 rows");
  EXPECT_EQ(anomalies.back().kind(), Anomaly::ROW_COUNT);  // last
  EXPECT_EQ(anomalies.size(), 10u);
  for (const Anomaly& a : anomalies) EXPECT_FALSE(a.description().empty());

  // Extra columns allowed, the absent one still refused.
  schema.set_allow_extra_columns(true);
  auto allowed = Check(schema, {table.get()});
  EXPECT_EQ(Find(allowed, Anomaly::UNEXPECTED_COLUMN, "extra"), nullptr);
  EXPECT_NE(Find(allowed, Anomaly::UNEXPECTED_COLUMN, "label"), nullptr);
}

TEST(ValidatorTest, MissingColumnsPerFileOptionalFeaturesAndRowsAcrossTables) {
  v1::Schema schema;
  schema.set_max_rows(3);
  auto* a = schema.add_features();
  a->set_name("a");
  a->set_type(FeatureSchema::FLOAT);
  auto* b = schema.add_features();
  b->set_name("b");
  b->set_type(FeatureSchema::FLOAT);
  b->set_required(false);
  auto first = Csv("a,b\n1,2\n3,4\n");
  auto second = Csv("b\n5\n6\n");
  auto anomalies = Check(schema, {first.get(), second.get()});
  ASSERT_EQ(anomalies.size(), 2u);
  EXPECT_EQ(anomalies[0].kind(), Anomaly::MISSING_COLUMN);
  EXPECT_EQ(anomalies[0].feature(), "a");
  EXPECT_EQ(anomalies[0].file(), "part1.csv");
  EXPECT_EQ(anomalies[1].kind(), Anomaly::ROW_COUNT);
  EXPECT_EQ(anomalies[1].found(), "4 rows");
  // Without b in the first table: optional, so nothing.
  auto only_a = Csv("a\n1\n");
  EXPECT_TRUE(Check(schema, {only_a.get()}).empty());
}

TEST(ValidatorTest, NumbersCompareByValueAndKeysAcrossTablesAndColumnarFiles) {
  v1::Schema schema;
  auto* zip = schema.add_features();
  zip->set_name("zip");
  zip->set_type(FeatureSchema::CATEGORY);
  zip->add_values("1.0");
  zip->add_values("02");
  auto* key = schema.add_features();
  key->set_name("key");
  key->set_type(FeatureSchema::STRING);
  key->set_unique(true);
  // Numeric column: 1 and 2 are in {1.0, 02}, 3 is not; -0 and 0 are the same key.
  auto numeric = Csv("zip,key\n1,k1\n2,k2\n3,k3\n");
  auto text = Csv("zip,key\n01,k4\nx,k1\n");
  auto anomalies = Check(schema, {numeric.get(), text.get()});
  const Anomaly* unseen = Find(anomalies, Anomaly::UNSEEN_CATEGORY, "zip");
  ASSERT_NE(unseen, nullptr);
  EXPECT_EQ(unseen->rows(), 2u);
  EXPECT_THAT(unseen->examples(), ElementsAre("3", "x"));
  const Anomaly* dup = Find(anomalies, Anomaly::DUPLICATE_VALUES, "key");
  ASSERT_NE(dup, nullptr);
  EXPECT_THAT(dup->examples(), ElementsAre("k1"));

  std::vector<Column> columns(1);
  columns[0].name = "zip";
  columns[0].owned = {1, 2, -0.0, std::numeric_limits<double>::quiet_NaN()};
  columns[0].values = columns[0].owned.data();
  std::string path = ::testing::TempDir() + "/zip.mlcol";
  ASSERT_OK(WriteColumnar(path, columns, 4));
  auto mapped = Table::ReadFile(path);
  ASSERT_OK(mapped.status());
  zip->add_values("0");
  zip->set_max_missing(0.25);
  schema.set_allow_extra_columns(true);
  key->set_required(false);
  EXPECT_TRUE(Check(schema, {mapped->get()}).empty());
}

TEST(CheckSchemaTest, RefusesSchemasThatAreNotWellFormed) {
  auto refuse = [](const v1::Schema& schema, const std::string& what) {
    EXPECT_THAT(CheckSchema(schema),
                mlops::testing::StatusIs(absl::StatusCode::kInvalidArgument, what))
        << schema.DebugString();
  };
  v1::Schema schema;
  auto* f = schema.add_features();
  f->set_name("x");
  f->set_type(FeatureSchema::STRING);
  f->set_min(1);
  refuse(schema, "a range needs type int or float");
  f->set_type(FeatureSchema::INT);
  f->set_max(0);
  refuse(schema, "is empty");
  f->clear_min();
  f->clear_max();
  f->add_values("a");
  refuse(schema, "values need type category or string");
  f->clear_values();
  f->set_type(FeatureSchema::CATEGORY);
  refuse(schema, "a category needs its values");
  f->set_type(FeatureSchema::FLOAT);
  f->set_max_missing(1.5);
  refuse(schema, "max_missing 1.5");
  f->set_max_missing(0);
  schema.add_features()->set_name("x");
  refuse(schema, "named twice");
  schema.mutable_features()->RemoveLast();
  schema.add_features();
  refuse(schema, "needs a name");
  schema.mutable_features()->RemoveLast();
  schema.set_min_rows(5);
  schema.set_max_rows(4);
  refuse(schema, "min_rows 5 > max_rows 4");
  schema.clear_max_rows();
  schema.add_absent("x");
  refuse(schema, "absent: x is also a feature");
  schema.clear_absent();
  EXPECT_OK(CheckSchema(schema));
}

TEST(SchemaYamlTest, RoundTripsAndRefusesWhatIsNotASchema) {
  auto table = Csv(kReference);
  auto schema = InferSchema({table.get()}, {});
  ASSERT_OK(schema.status());
  schema->set_name("churn");
  schema->set_max_rows(1000);
  schema->add_absent("label");
  schema->mutable_features(5)->set_required(false);
  schema->mutable_features(3)->add_values("true");  // quoted, so it stays text
  schema->mutable_features(3)->add_values("with space");
  std::string yaml = SchemaToYaml(*schema);
  EXPECT_THAT(yaml, HasSubstr("name: churn\n"));
  EXPECT_THAT(yaml, HasSubstr("{name: age, type: int, min: 29, max: 61}"));
  auto back = SchemaFromYaml(yaml);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << yaml;
  EXPECT_EQ(back->DebugString(), schema->DebugString()) << yaml;

  auto bad = [](std::string_view text, const std::string& what) {
    EXPECT_THAT(SchemaFromYaml(text).status(),
                mlops::testing::StatusIs(absl::StatusCode::kInvalidArgument, what))
        << text;
  };
  bad("features:\n  - {name: a, type: decimal}\n", "line 2, column ");
  bad("features:\n  - {name: a, type: decimal}\n", "type: one of int");
  bad("features:\n  - {name: a, colour: red}\n", "unknown key colour");
  bad("nmae: x\n", "line 1, column 1: unknown key nmae");
  bad("min_rows: -1\n", "min_rows: a row count");
  bad("features: {a: 1}\n", "features: a list");
  bad("features:\n  - {type: int}\n", "a feature needs a name");
  bad("features: [\n", "not valid YAML");
  bad("- a\n", "a schema is a map");
  bad("features:\n  - {name: a, min: ten}\n", "min: a finite number");
  bad("name: \"\\uD800\"\n", "invalid unicode");  // an escape that would make a surrogate
  bad(std::string_view("name: a\0b\n", 10), "no control characters");
  bad("features:\n  - {name: a, type: float, max: .inf}\n", "max: a finite number");
}

TEST(ValidatorTest, ValuesThatAreNotUtf8AreReportedEscaped) {
  // A Latin-1 file: the report (a proto, whose strings must be UTF-8) escapes the bad bytes.
  auto table = Csv("city\nparis\ncaf\xe9\n");
  v1::Schema schema;
  auto* city = schema.add_features();
  city->set_name("city");
  city->set_type(FeatureSchema::CATEGORY);
  city->add_values("paris");
  auto anomalies = Check(schema, {table.get()});
  ASSERT_EQ(anomalies.size(), 1u);
  EXPECT_THAT(anomalies[0].examples(), ElementsAre("caf\\xe9"));
  EXPECT_TRUE(IsUtf8(anomalies[0].description()));
  auto inferred = InferSchema({table.get()}, {});
  ASSERT_OK(inferred.status());
  EXPECT_THAT(inferred->features(0).values(), ElementsAre("caf\\xe9", "paris"));
  EXPECT_THAT(SchemaFromYaml("name: caf\xe9\n").status(),
              mlops::testing::StatusIs(absl::StatusCode::kInvalidArgument, "UTF-8"));
}

}  // namespace
}  // namespace mlops::monitoring
