#include "services/monitoring/validation.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "services/common/strings.h"
#include "services/monitoring/profile.h"

namespace mlops::monitoring {
namespace {

using v1::Anomaly;
using v1::FeatureSchema;

constexpr uint64_t kMinRowsForUnique = 100;  // fewer distinct values prove nothing of a key

// -0 and 0 are one value in a domain or a key.
double Canonical(double v) { return v == 0 ? 0.0 : v; }

bool IsTrueOrFalse(std::string_view text) {
  return EqualsIgnoreCase(text, "true") || EqualsIgnoreCase(text, "false") || text == "0" ||
         text == "1";
}

// The whole of `text` as a number.
bool ParseWholeNumber(const std::string& text, double* value) {
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size();
}

std::string Percent(double fraction) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g%%", fraction * 100);
  return buffer;
}

// 1234567 -> "1,234,567".
std::string Count(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// "1 row", "2 rows".
std::string RowCount(uint64_t n) { return Count(n) + (n == 1 ? " row" : " rows"); }

const char* TypeName(FeatureSchema::Type type) {
  switch (type) {
    case FeatureSchema::INT:
      return "int";
    case FeatureSchema::FLOAT:
      return "float";
    case FeatureSchema::STRING:
      return "string";
    case FeatureSchema::BOOL:
      return "bool";
    case FeatureSchema::CATEGORY:
      return "category";
    default:
      return "any";
  }
}

std::string RangeText(const FeatureSchema& f) {
  if (f.has_min() && f.has_max()) {
    return StrCat("[", FormatDouble(f.min()), ", ", FormatDouble(f.max()), "]");
  }
  if (f.has_min()) return ">= " + FormatDouble(f.min());
  return "<= " + FormatDouble(f.max());
}

std::string DomainText(const FeatureSchema& f) {
  if (f.values_size() > 8) return StrCat("one of ", Count(f.values_size()), " values");
  std::string out = "one of ";
  for (int i = 0; i < f.values_size(); ++i) out += (i ? ", " : "") + f.values(i);
  return out;
}

// Rows with one kind of anomaly and the first few distinct offending values.
struct Offenders {
  uint64_t rows = 0;
  std::vector<std::string> examples;
  void Add(std::string_view value) {
    ++rows;
    if (examples.size() < kMaxExamples &&
        std::find(examples.begin(), examples.end(), value) == examples.end()) {
      examples.emplace_back(value);
    }
  }
  void Add(double value) {
    ++rows;
    if (examples.size() < kMaxExamples) {
      std::string text = FormatDouble(value);
      if (std::find(examples.begin(), examples.end(), text) == examples.end()) {
        examples.push_back(std::move(text));
      }
    }
  }
};

Anomaly MakeAnomaly(Anomaly::Kind kind, std::string_view feature, std::string expected,
                    std::string found, uint64_t rows, std::vector<std::string> examples,
                    std::string description) {
  Anomaly a;
  a.set_kind(kind);
  a.set_feature(std::string(feature));
  a.set_expected(std::move(expected));
  a.set_found(std::move(found));
  a.set_rows(rows);
  for (auto& e : examples) a.add_examples(std::move(e));
  a.set_description(std::move(description));
  return a;
}

std::string ExamplesSuffix(const std::vector<std::string>& examples) {
  if (examples.empty()) return "";
  std::string out = " (e.g. ";
  for (size_t i = 0; i < examples.size(); ++i) {
    out += (i ? ", " : "") + examples[i].substr(0, 60);
  }
  return out + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Inference

namespace {

// What inference learns of one column across the tables.
struct ColumnFacts {
  std::string name;
  int tables = 0;
  bool numeric = true;  // in every table
  bool categorical = false;
  uint64_t rows = 0, missing = 0;
  bool integral = true;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  bool bool_like = true;
  // Distinct values, while there are at most max_categories of them.
  absl::flat_hash_set<std::string> distinct;
  bool too_many = false;
  // Uniqueness: numbers to sort, or text seen so far (views into the tables) until a repeat.
  std::vector<double> numbers;
  absl::flat_hash_set<std::string_view> texts;
  bool repeated = false;
};

}  // namespace

absl::StatusOr<v1::Schema> InferSchema(const std::vector<const Table*>& tables,
                                       const InferOptions& options) {
  if (tables.empty()) return absl::InvalidArgumentError("no table to infer a schema from");
  const size_t max_categories = options.max_categories > 0 ? options.max_categories : 100;
  std::vector<ColumnFacts> facts;
  std::map<std::string, size_t, std::less<>> index;
  for (const std::string& name : options.categorical) {
    bool found = false;
    for (const Table* t : tables) found = found || t->Find(name) != nullptr;
    if (!found) return absl::InvalidArgumentError("categorical: no column " + name);
  }
  auto is_categorical = [&](std::string_view name) {
    return std::find(options.categorical.begin(), options.categorical.end(), name) !=
           options.categorical.end();
  };
  for (const Table* table : tables) {
    for (const Column& column : table->columns()) {
      auto [it, inserted] = index.try_emplace(column.name, facts.size());
      if (inserted) {
        facts.emplace_back();
        facts.back().name = column.name;
        facts.back().categorical = is_categorical(column.name);
      }
      ColumnFacts& f = facts[it->second];
      ++f.tables;
      f.rows += table->rows();
      auto note_distinct = [&](std::string value) {
        if (f.too_many) return;
        f.distinct.insert(std::move(value));
        if (f.distinct.size() > max_categories) {
          f.too_many = true;
          f.distinct.clear();
        }
      };
      if (column.numeric) {
        const double* values = column.values != nullptr ? column.values : column.owned.data();
        for (uint64_t i = 0; i < table->rows(); ++i) {
          double v = values[i];
          if (std::isnan(v)) {
            ++f.missing;
            continue;
          }
          f.min = std::min(f.min, v);
          f.max = std::max(f.max, v);
          if (v != std::trunc(v)) f.integral = false;
          if (v != 0 && v != 1) f.bool_like = false;
          if (f.categorical) note_distinct(FormatDouble(Canonical(v)));
        }
        if (f.integral && f.numeric) {
          for (uint64_t i = 0; i < table->rows(); ++i) {
            if (!std::isnan(values[i])) f.numbers.push_back(Canonical(values[i]));
          }
        }
      } else {
        f.numeric = false;
        for (const std::string& v : column.strings) {
          if (v.empty()) {
            ++f.missing;
            continue;
          }
          if (f.bool_like && !IsTrueOrFalse(v)) f.bool_like = false;
          if (!f.too_many) note_distinct(CanonicalCategory(v));
          if (!f.repeated && !f.texts.insert(v).second) {
            f.repeated = true;
            f.texts.clear();
          }
        }
      }
    }
  }
  v1::Schema schema;
  schema.set_min_rows(1);
  for (ColumnFacts& f : facts) {
    FeatureSchema* out = schema.add_features();
    out->set_name(Utf8Safe(f.name));
    if (f.tables < static_cast<int>(tables.size())) out->set_required(false);
    const uint64_t present = f.rows - f.missing;
    if (f.missing > 0) {
      double fraction = static_cast<double>(f.missing) / static_cast<double>(f.rows);
      out->set_max_missing(std::min(1.0, std::ceil(fraction * 100 - 1e-9) / 100));
    }
    bool unique = false;
    if (f.numeric && !f.categorical) {
      out->set_type(f.integral ? FeatureSchema::INT : FeatureSchema::FLOAT);
      // Whole numbers keep their observed range (ages, counts, codes: a value beyond it is
      // news); continuous values of another sample fall outside a sample's extremes by chance,
      // so a float gets no range unless a person writes one.
      if (present > 0 && f.integral) {
        out->set_min(f.min);
        out->set_max(f.max);
      }
      if (f.integral && present >= kMinRowsForUnique) {
        std::sort(f.numbers.begin(), f.numbers.end());
        unique = std::adjacent_find(f.numbers.begin(), f.numbers.end()) == f.numbers.end();
      }
    } else if (!f.numeric && f.bool_like && present > 0) {
      out->set_type(FeatureSchema::BOOL);
    } else if (!f.too_many && present > 0) {
      out->set_type(FeatureSchema::CATEGORY);
      std::vector<std::string> values(f.distinct.begin(), f.distinct.end());
      std::sort(values.begin(), values.end());
      for (auto& v : values) out->add_values(Utf8Safe(v));
    } else if (f.numeric) {  // asked to be categorical, but too many values: a number after all
      out->set_type(f.integral ? FeatureSchema::INT : FeatureSchema::FLOAT);
    } else {
      out->set_type(FeatureSchema::STRING);
      unique = !f.repeated && present >= kMinRowsForUnique;
    }
    if (unique) out->set_unique(true);
  }
  return schema;
}

absl::Status CheckSchema(const v1::Schema& schema) {
  absl::flat_hash_set<std::string_view> names;
  for (int i = 0; i < schema.features_size(); ++i) {
    const FeatureSchema& f = schema.features(i);
    const std::string where = StrCat("features[", std::to_string(i), "]");
    if (f.name().empty()) return absl::InvalidArgumentError(where + ": a feature needs a name");
    if (!names.insert(f.name()).second) {
      return absl::InvalidArgumentError(StrCat(where, ": feature ", f.name(), " named twice"));
    }
    if (!FeatureSchema::Type_IsValid(f.type())) {
      return absl::InvalidArgumentError(StrCat(where, " (", f.name(), "): unknown type"));
    }
    const bool number = f.type() == FeatureSchema::INT || f.type() == FeatureSchema::FLOAT;
    if ((f.has_min() || f.has_max()) && !number) {
      return absl::InvalidArgumentError(StrCat(where, " (", f.name(), "): a range needs type ",
                                               "int or float, not ", TypeName(f.type())));
    }
    if ((f.has_min() && std::isnan(f.min())) || (f.has_max() && std::isnan(f.max())) ||
        (f.has_min() && f.has_max() && f.min() > f.max())) {
      return absl::InvalidArgumentError(
          StrCat(where, " (", f.name(), "): the range ", RangeText(f), " is empty"));
    }
    if (f.values_size() > 0 && f.type() != FeatureSchema::CATEGORY &&
        f.type() != FeatureSchema::STRING) {
      return absl::InvalidArgumentError(StrCat(where, " (", f.name(), "): values need type ",
                                               "category or string, not ", TypeName(f.type())));
    }
    if (f.type() == FeatureSchema::CATEGORY && f.values_size() == 0) {
      return absl::InvalidArgumentError(
          StrCat(where, " (", f.name(), "): a category needs its values"));
    }
    if (!(f.max_missing() >= 0 && f.max_missing() <= 1)) {
      return absl::InvalidArgumentError(StrCat(where, " (", f.name(), "): max_missing ",
                                               FormatDouble(f.max_missing()),
                                               " is not a fraction in [0, 1]"));
    }
  }
  if (schema.has_min_rows() && schema.has_max_rows() && schema.min_rows() > schema.max_rows()) {
    return absl::InvalidArgumentError(StrCat("min_rows ", std::to_string(schema.min_rows()),
                                             " > max_rows ", std::to_string(schema.max_rows())));
  }
  for (const std::string& absent : schema.absent()) {
    if (names.contains(absent)) {
      return absl::InvalidArgumentError("absent: " + absent + " is also a feature");
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Validator::Feature {
  const FeatureSchema* schema;
  FeatureSchema::Type type;
  bool has_min, has_max;
  double min, max;
  bool has_domain;
  absl::flat_hash_set<std::string> text_values;  // canonical forms
  absl::flat_hash_set<double> number_values;     // the domain's values that are numbers
  uint64_t rows = 0, missing = 0;
  double found_min = std::numeric_limits<double>::infinity();
  double found_max = -std::numeric_limits<double>::infinity();
  bool found_text = false;  // a value that is not a number (for WRONG_TYPE's "found")
  Offenders wrong_type, out_of_range, unseen;
  std::vector<double> numbers;            // unique: every value
  std::vector<std::string_view> texts;    // unique: every value (views into the tables)
  std::vector<std::string> missing_from;  // required, and not in these files
};

Validator::Validator(const v1::Schema& schema, ValidatorOptions options)
    : schema_(schema), options_(options) {
  for (const FeatureSchema& f : schema.features()) {
    auto feature = std::make_unique<Feature>();
    feature->schema = &f;
    feature->type = f.type();
    feature->has_min = f.has_min();
    feature->has_max = f.has_max();
    feature->min = f.min();
    feature->max = f.max();
    feature->has_domain = f.values_size() > 0;
    for (const std::string& v : f.values()) {
      feature->text_values.insert(CanonicalCategory(v));
      double number;
      if (ParseWholeNumber(v, &number) && std::isfinite(number)) {
        feature->number_values.insert(Canonical(number));
      }
    }
    features_.push_back(std::move(feature));
  }
}

Validator::~Validator() = default;

void Validator::Add(const Table& table, std::string_view file) {
  rows_ += table.rows();
  for (auto& feature : features_) {
    const Column* column = table.Find(feature->schema->name());
    if (column == nullptr) {
      if ((!feature->schema->has_required() || feature->schema->required()) &&
          std::find(feature->missing_from.begin(), feature->missing_from.end(), file) ==
              feature->missing_from.end()) {
        feature->missing_from.emplace_back(file);
      }
      continue;
    }
    feature->rows += table.rows();
    if (column->numeric) {
      AddNumeric(*feature, column->values != nullptr ? column->values : column->owned.data(),
                 table.rows());
    } else {
      AddText(*feature, column->strings);
    }
  }
  for (const Column& column : table.columns()) {
    const bool absent = std::find(schema_.absent().begin(), schema_.absent().end(), column.name) !=
                        schema_.absent().end();
    bool named = false;
    for (const auto& f : schema_.features()) named = named || f.name() == column.name;
    if (absent || (!named && !schema_.allow_extra_columns())) {
      Anomaly anomaly = MakeAnomaly(Anomaly::UNEXPECTED_COLUMN, column.name,
                                    absent ? "absent" : "no such column", "a column", 0, {},
                                    StrCat(column.name, ": ",
                                           absent ? "a column the schema says must be absent"
                                                  : "a column the schema does not name",
                                           ", in ", file));
      anomaly.set_file(std::string(file));
      AddColumnAnomaly(std::move(anomaly));
    }
  }
}

void Validator::AddColumnAnomaly(Anomaly anomaly) {
  for (const Anomaly& a : column_anomalies_) {
    if (a.kind() == anomaly.kind() && a.feature() == anomaly.feature() &&
        a.file() == anomaly.file()) {
      return;
    }
  }
  column_anomalies_.push_back(std::move(anomaly));
}

namespace {

void SaveOffenders(const Offenders& from, internal::Offenders* to) {
  to->set_rows(from.rows);
  for (const std::string& e : from.examples) to->add_examples(e);
}

void LoadOffenders(const internal::Offenders& from, Offenders* to) {
  to->rows = from.rows();
  to->examples.assign(from.examples().begin(), from.examples().end());
}

}  // namespace

internal::ValidationState Validator::Save() const {
  internal::ValidationState state;
  state.set_rows(rows_);
  for (const auto& f : features_) {
    internal::FeatureValidation* out = state.add_features();
    out->set_rows(f->rows);
    out->set_missing(f->missing);
    out->set_found_min(f->found_min);
    out->set_found_max(f->found_max);
    out->set_found_text(f->found_text);
    SaveOffenders(f->wrong_type, out->mutable_wrong_type());
    SaveOffenders(f->out_of_range, out->mutable_out_of_range());
    SaveOffenders(f->unseen, out->mutable_unseen());
    for (const std::string& file : f->missing_from) out->add_missing_from(file);
  }
  for (const Anomaly& a : column_anomalies_) *state.add_column_anomalies() = a;
  return state;
}

void Validator::Load(const internal::ValidationState& state) {
  rows_ = state.rows();
  for (size_t i = 0; i < features_.size() && i < static_cast<size_t>(state.features_size()); ++i) {
    const internal::FeatureValidation& in = state.features(static_cast<int>(i));
    Feature& f = *features_[i];
    f.rows = in.rows();
    f.missing = in.missing();
    f.found_min = in.found_min();
    f.found_max = in.found_max();
    f.found_text = in.found_text();
    LoadOffenders(in.wrong_type(), &f.wrong_type);
    LoadOffenders(in.out_of_range(), &f.out_of_range);
    LoadOffenders(in.unseen(), &f.unseen);
    f.missing_from.assign(in.missing_from().begin(), in.missing_from().end());
  }
  column_anomalies_.assign(state.column_anomalies().begin(), state.column_anomalies().end());
}

void Validator::AddNumeric(Feature& f, const double* values, uint64_t n) {
  const bool check_int = f.type == FeatureSchema::INT;
  const bool check_bool = f.type == FeatureSchema::BOOL;
  const double lo = f.has_min ? f.min : -std::numeric_limits<double>::infinity();
  const double hi = f.has_max ? f.max : std::numeric_limits<double>::infinity();
  const bool unique = f.schema->unique() && options_.keys;
  double found_min = f.found_min, found_max = f.found_max;
  uint64_t missing = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double v = values[i];
    if (std::isnan(v)) {
      ++missing;
      continue;
    }
    found_min = std::min(found_min, v);
    found_max = std::max(found_max, v);
    if (v < lo || v > hi) f.out_of_range.Add(v);
    if (check_int && v != std::trunc(v)) f.wrong_type.Add(v);
    if (check_bool && v != 0 && v != 1) f.wrong_type.Add(v);
    if (f.has_domain && !f.number_values.contains(Canonical(v))) f.unseen.Add(v);
    if (unique) f.numbers.push_back(Canonical(v));
  }
  f.missing += missing;
  f.found_min = found_min;
  f.found_max = found_max;
}

void Validator::AddText(Feature& f, const std::vector<std::string>& values) {
  const bool number = f.type == FeatureSchema::INT || f.type == FeatureSchema::FLOAT;
  const bool unique = f.schema->unique() && options_.keys;
  for (const std::string& v : values) {
    if (v.empty()) {
      ++f.missing;
      continue;
    }
    if (number) {
      double x;
      if (!ParseWholeNumber(v, &x)) {
        f.found_text = true;
        f.wrong_type.Add(v);
      } else {
        f.found_min = std::min(f.found_min, x);
        f.found_max = std::max(f.found_max, x);
        if ((f.has_min && x < f.min) || (f.has_max && x > f.max)) f.out_of_range.Add(v);
        if (f.type == FeatureSchema::INT && x != std::trunc(x)) f.wrong_type.Add(v);
      }
    } else if (f.type == FeatureSchema::BOOL && !IsTrueOrFalse(v)) {
      f.wrong_type.Add(v);
    }
    if (f.has_domain && !f.text_values.contains(v) &&
        !f.text_values.contains(CanonicalCategory(v))) {
      f.unseen.Add(v);
    }
    if (unique) f.texts.push_back(v);
  }
}

std::vector<Anomaly> Validator::Finish() {
  std::vector<Anomaly> out;
  for (auto& fp : features_) {
    Feature& f = *fp;
    const FeatureSchema& s = *f.schema;
    const std::string& name = s.name();
    for (const std::string& file : f.missing_from) {
      out.push_back(MakeAnomaly(Anomaly::MISSING_COLUMN, name, "a column", "none", 0, {},
                                StrCat(name, ": required, but ", file, " has no such column")));
      out.back().set_file(file);
    }
    if (f.wrong_type.rows > 0) {
      std::string found = f.found_text                    ? "text"
                          : f.type == FeatureSchema::BOOL ? "other values"
                                                          : "float";
      out.push_back(MakeAnomaly(Anomaly::WRONG_TYPE, name, TypeName(f.type), found,
                                f.wrong_type.rows, f.wrong_type.examples,
                                StrCat(name, ": ", Count(f.wrong_type.rows), " values are not ",
                                       TypeName(f.type), ExamplesSuffix(f.wrong_type.examples))));
    }
    if (f.out_of_range.rows > 0) {
      std::string found =
          StrCat("[", FormatDouble(f.found_min), ", ", FormatDouble(f.found_max), "]");
      out.push_back(MakeAnomaly(
          Anomaly::OUT_OF_RANGE, name, RangeText(s), found, f.out_of_range.rows,
          f.out_of_range.examples,
          StrCat(name, ": ", Count(f.out_of_range.rows), " values outside ", RangeText(s),
                 "; found ", found, ExamplesSuffix(f.out_of_range.examples))));
    }
    if (f.unseen.rows > 0) {
      out.push_back(MakeAnomaly(
          Anomaly::UNSEEN_CATEGORY, name, DomainText(s),
          StrCat(RowCount(f.unseen.rows), " with other values"), f.unseen.rows, f.unseen.examples,
          StrCat(name, ": ", Count(f.unseen.rows), " values not in the schema's ",
                 Count(s.values_size()), ExamplesSuffix(f.unseen.examples))));
    }
    if (f.rows > 0) {
      double fraction = static_cast<double>(f.missing) / static_cast<double>(f.rows);
      if (fraction > s.max_missing()) {
        std::string expected = s.max_missing() == 0
                                   ? "no missing value"
                                   : "at most " + Percent(s.max_missing()) + " missing";
        std::string found = StrCat(Percent(fraction), " missing (", Count(f.missing), " of ",
                                   Count(f.rows), " rows)");
        out.push_back(MakeAnomaly(Anomaly::TOO_MANY_MISSING, name, expected, found, f.missing, {},
                                  StrCat(name, ": ", found, ", expected ", expected)));
      }
    }
    if (s.unique() && options_.keys) {
      Offenders repeats;
      auto count_repeats = [&](auto& values, auto example) {
        std::sort(values.begin(), values.end());
        for (size_t i = 1; i < values.size(); ++i) {
          if (values[i] == values[i - 1]) repeats.Add(example(values[i]));
        }
        values = {};
      };
      count_repeats(f.numbers, [](double v) { return FormatDouble(v); });
      count_repeats(f.texts, [](std::string_view v) { return std::string(v); });
      if (repeats.rows > 0) {
        out.push_back(MakeAnomaly(
            Anomaly::DUPLICATE_VALUES, name, "unique values",
            StrCat(RowCount(repeats.rows), repeats.rows == 1 ? " repeats" : " repeat", " a value"),
            repeats.rows, repeats.examples,
            StrCat(name, ": ", RowCount(repeats.rows), repeats.rows == 1 ? " repeats" : " repeat",
                   " a value of a unique feature", ExamplesSuffix(repeats.examples))));
      }
    }
  }
  for (Anomaly& a : column_anomalies_) out.push_back(std::move(a));
  column_anomalies_.clear();
  // Names and values come from the data, which need not be UTF-8; a proto string must be.
  for (Anomaly& a : out) {
    a.set_feature(Utf8Safe(a.feature()));
    a.set_found(Utf8Safe(a.found()));
    a.set_expected(Utf8Safe(a.expected()));
    a.set_description(Utf8Safe(a.description()));
    a.set_file(Utf8Safe(a.file()));
    for (std::string& e : *a.mutable_examples()) e = Utf8Safe(e);
  }
  if (options_.row_count && ((schema_.has_min_rows() && rows_ < schema_.min_rows()) ||
                             (schema_.has_max_rows() && rows_ > schema_.max_rows()))) {
    std::string expected =
        schema_.has_min_rows() && schema_.has_max_rows()
            ? StrCat("[", Count(schema_.min_rows()), ", ", Count(schema_.max_rows()), "] rows")
        : schema_.has_min_rows() ? "at least " + Count(schema_.min_rows()) + " rows"
                                 : "at most " + Count(schema_.max_rows()) + " rows";
    std::string found = Count(rows_) + " rows";
    out.push_back(MakeAnomaly(Anomaly::ROW_COUNT, "", expected, found, 0, {},
                              StrCat("the dataset has ", found, ", expected ", expected)));
  }
  return out;
}

std::vector<Anomaly> ValidateTables(const v1::Schema& schema,
                                    const std::vector<const Table*>& tables,
                                    const std::vector<std::string>& files, uint64_t* rows) {
  Validator validator(schema);
  for (size_t i = 0; i < tables.size(); ++i) {
    validator.Add(*tables[i], i < files.size() ? files[i] : "table " + std::to_string(i + 1));
  }
  auto anomalies = validator.Finish();
  if (rows != nullptr) *rows = validator.rows();
  return anomalies;
}

}  // namespace mlops::monitoring
