// Data validation: a schema inferred from the tables of a dataset version, and the anomalies the
// tables of another version have against a schema (docs/validation.md). Each feature costs one
// pass over its column in memory (plus, for a unique feature, a sort or a hash set of its values);
// nothing is copied out of a mapped .mlcol file. Pure functions over tables: no storage, no gRPC.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "mlops/monitoring/internal/storage.pb.h"
#include "mlops/monitoring/v1/monitoring.pb.h"
#include "services/monitoring/table.h"

namespace mlops::monitoring {

inline constexpr int kMaxExamples = 5;  // offending values kept per anomaly

struct InferOptions {
  std::vector<std::string> categorical;  // columns to treat as categories even when numeric
  int max_categories = 100;              // <= 0: the default
};

// The schema `tables` satisfy (name, version, source and time left for the caller): per column,
// its type (INT when every number is whole, FLOAT, BOOL for true/false text, CATEGORY for text
// with at most max_categories distinct values, listed, else STRING), its observed range (INT
// only: another sample of a continuous value falls outside a sample's extremes by chance),
// required when every table has it, max_missing the observed missing fraction rounded up
// to the next 0.01, unique for an INT or STRING column of at least 100 values, all distinct; and
// min_rows 1. INVALID_ARGUMENT when `categorical` names a column no table has, or there is no
// table.
absl::StatusOr<v1::Schema> InferSchema(const std::vector<const Table*>& tables,
                                       const InferOptions& options);

// OK, or INVALID_ARGUMENT naming what is wrong: a feature without a name or named twice, a range
// on a type other than INT / FLOAT (or min > max), values on a type other than CATEGORY / STRING,
// max_missing outside [0, 1], min_rows > max_rows, a column both a feature and absent.
absl::Status CheckSchema(const v1::Schema& schema);

struct ValidatorOptions {
  // Whether unique features are checked (their values are kept until Finish, as views into the
  // tables) and the dataset's row count. A stream of windows checks neither.
  bool keys = true;
  bool row_count = true;
};

// Checks tables against a (checked) schema, which must outlive it; with `keys`, the tables must
// outlive Finish. A column anomaly found again (the same kind, feature and file) counts once.
class Validator {
 public:
  explicit Validator(const v1::Schema& schema, ValidatorOptions options = {});
  ~Validator();
  Validator(const Validator&) = delete;
  Validator& operator=(const Validator&) = delete;

  // One table of the dataset; `file` names it in the anomalies of its columns.
  void Add(const Table& table, std::string_view file);
  // The anomalies of every table added, one per feature and kind (column anomalies once per
  // file), in the schema's order; row count last.
  std::vector<v1::Anomaly> Finish();
  uint64_t rows() const { return rows_; }

  // What has been counted, to keep across restarts (keys, when checked, are not saved), and back.
  // Load ignores features the schema no longer has at the same position.
  internal::ValidationState Save() const;
  void Load(const internal::ValidationState& state);

 private:
  struct Feature;
  void AddNumeric(Feature& feature, const double* values, uint64_t n);
  void AddText(Feature& feature, const std::vector<std::string>& values);

  // Adds a column anomaly unless it is there already.
  void AddColumnAnomaly(v1::Anomaly anomaly);

  const v1::Schema& schema_;
  ValidatorOptions options_;
  std::vector<std::unique_ptr<Feature>> features_;
  std::vector<v1::Anomaly> column_anomalies_;  // missing, unexpected and absent columns
  uint64_t rows_ = 0;
};

// The anomalies of `tables` (named by `files`) against `schema`: Validator over each table.
std::vector<v1::Anomaly> ValidateTables(const v1::Schema& schema,
                                        const std::vector<const Table*>& tables,
                                        const std::vector<std::string>& files, uint64_t* rows);

}  // namespace mlops::monitoring
