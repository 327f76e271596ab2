// The run search filter language.
//
//   filter     := or_expr
//   or_expr    := and_expr ("or" and_expr)*
//   and_expr   := primary ("and" primary)*
//   primary    := "(" or_expr ")" | comparison
//   comparison := field op value | field ["not"] "in" "(" value ("," value)* ")"
//               | field ["not"] ("like" | "ilike") string
//   op         := "=" | "!=" | "<" | "<=" | ">" | ">="
//   field      := ("metrics" | "params" | "tags") "." key | ["attributes" "."] attribute
//   key        := [A-Za-z0-9_./:-]+ | `any text` | "any text"
//   attribute  := status | start_time | end_time | name | run_id | experiment_id
//   value      := 'text' | "text" | number
//
// The lineage dialect (artifacts, executions, contexts) uses the same grammar with
//   field      := ("properties" | "custom_properties") "." key | attribute
//   attribute  := type | name | uri | digest | state | run_id | id | create_time | kind
// where id and create_time compare as numbers, properties as numbers when both the stored value
// and the literal are numbers (strings otherwise), and kind is "artifact" or "execution".
//
// Keywords are case-insensitive. Metrics, start_time and end_time compare as numbers; params, tags
// and the other attributes as strings (byte order). `like` takes SQL patterns (% any run, _ one
// character); `ilike` ignores ASCII case. A comparison on a key that a run lacks is false (also for
// != and not in). NaN metric values match no comparison but `!=`.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mlops::metadata {

enum class FieldKind { kMetric, kParam, kTag, kAttribute, kProperty, kCustomProperty };

enum class FilterDialect { kRuns, kLineage };

// Attributes of a run that filters and order_by can name.
enum class Attribute {
  kNone,
  kStatus,
  kStartTime,
  kEndTime,
  kName,
  kRunId,
  kExperimentId,
  kLifecycle,  // internal: not accepted in filters, used for the view type.
  // Lineage dialect.
  kType,
  kUri,
  kDigest,
  kState,
  kNodeId,
  kCreateTime,
  kKind,
};

struct Field {
  FieldKind kind = FieldKind::kAttribute;
  std::string key;  // the metric, param or tag key; the attribute's canonical name.
  Attribute attribute = Attribute::kNone;
  // True when values of this field compare as numbers.
  bool numeric() const {
    return kind == FieldKind::kMetric || attribute == Attribute::kStartTime ||
           attribute == Attribute::kEndTime || attribute == Attribute::kNodeId ||
           attribute == Attribute::kCreateTime;
  }
  std::string ToString() const;
};

enum class CompareOp {
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kIn,
  kNotIn,
  kLike,
  kNotLike,
  kILike,
  kNotILike
};

struct Value {
  bool is_number = false;
  double number = 0;
  std::string text;
};

struct Expr {
  enum class Type { kAnd, kOr, kCompare };
  Type type = Type::kCompare;
  std::vector<std::unique_ptr<Expr>> children;  // kAnd, kOr
  Field field;                                  // kCompare
  CompareOp op = CompareOp::kEq;
  std::vector<Value> values;  // one, except for kIn / kNotIn
};

// Parses a filter; an empty or all-blank filter gives nullptr (everything matches). Errors are
// INVALID_ARGUMENT "filter: at position N: ..." with N the 1-based character position.
absl::StatusOr<std::unique_ptr<Expr>> ParseFilter(std::string_view text,
                                                  FilterDialect dialect = FilterDialect::kRuns);

struct OrderBy {
  Field field;
  bool descending = false;
};
// Parses "metrics.acc DESC", "params.lr", "start_time asc", ... INVALID_ARGUMENT naming the
// problem otherwise.
absl::StatusOr<OrderBy> ParseOrderBy(std::string_view text);

// A field's value in one record (a run, a lineage node), as a filter sees it.
struct FieldValue {
  bool present = false;  // absent values match no comparison, not even !=
  bool numeric = false;
  double number = 0;
  std::string text;
};

// True when `value` satisfies the comparison leaf `expr`.
bool MatchesLeaf(const Expr& expr, const FieldValue& value);

// True when a record satisfies `expr` (nullptr matches everything): the one evaluator of runs and
// lineage filters. `value_of(leaf)` gives the record's FieldValue for a comparison leaf.
template <typename ValueOf>
bool Matches(const Expr* expr, const ValueOf& value_of) {
  if (expr == nullptr) return true;
  switch (expr->type) {
    case Expr::Type::kAnd:
      for (const auto& child : expr->children) {
        if (!Matches(child.get(), value_of)) return false;
      }
      return true;
    case Expr::Type::kOr:
      for (const auto& child : expr->children) {
        if (Matches(child.get(), value_of)) return true;
      }
      return false;
    case Expr::Type::kCompare:
      return MatchesLeaf(*expr, value_of(*expr));
  }
  return false;
}

// SQL LIKE matching (% and _; a backslash escapes the next character).
bool LikeMatch(std::string_view text, std::string_view pattern, bool ignore_case);

}  // namespace mlops::metadata
