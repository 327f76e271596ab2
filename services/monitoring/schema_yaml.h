// A dataset schema (mlops.monitoring.v1.Schema) as the YAML a person reads and edits
// (docs/validation.md), and back: what `mlops schema infer` prints and `mlops schema put` and
// `mlops validate --schema FILE` read.
//
//   name: churn                # the dataset
//   min_rows: 1
//   max_rows: 10000000
//   absent: [label]            # columns that must not be there
//   allow_extra_columns: false
//   features:
//     - {name: age, type: int, min: 0, max: 120, max_missing: 0.01}
//     - {name: plan, type: category, values: [basic, pro]}
//     - {name: id, type: string, unique: true}
//     - {name: note, type: string, required: false}
//
// version, source and create time are the server's: written as a comment, never read.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "mlops/monitoring/v1/monitoring.pb.h"

namespace mlops::monitoring {

std::string SchemaToYaml(const v1::Schema& schema);
// INVALID_ARGUMENT "line L, column C: ..." for YAML that is not a schema: not valid YAML, unknown
// keys, a value of the wrong kind, an unknown type name.
absl::StatusOr<v1::Schema> SchemaFromYaml(std::string_view yaml);

}  // namespace mlops::monitoring
