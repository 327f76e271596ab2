// Private to the metadata store: how runs are laid out in the run_index column family and how a
// filter field reads its value from a run.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mlops/metadata/v1/metadata.pb.h"
#include "services/metadata/filter.h"

namespace mlops::metadata::internal {

inline constexpr size_t kIdLength = 32;       // a run id as text (runs and metrics keys)
inline constexpr size_t kIndexIdLength = 16;  // a run id as 16 bytes, ending run_index keys

// Hex id <-> its 16 bytes (run_index keys are shorter, and scans faster, with binary ids; the
// byte order of the binary form equals the order of the hex form).
void AppendBinaryId(std::string* out, std::string_view hex_id);
std::string BinaryToHexId(std::string_view binary);

// The value of one field of one run.
FieldValue GetFieldValue(const v1::Run& run, const Field& field);

// The index prefix of a field: kind byte, then the ordered key (metric, param or tag key, or the
// attribute name).
std::string IndexPrefix(const Field& field);
// Appends the ordered encoding of a value of `field` (numeric or text as the field requires).
void AppendIndexValue(std::string* out, const Field& field, const FieldValue& value);
// Decodes the value part of an index key (without prefix and run id); false when malformed.
bool DecodeIndexValue(std::string_view encoded, const Field& field, FieldValue* value);

// Every index key of a run (sorted, unique).
std::vector<std::string> IndexKeys(const v1::Run& run);

// The fields (other than metrics, params and tags) that every run is indexed on.
const std::vector<Field>& AttributeFields();
Field AttributeField(Attribute attribute);

// True when the run satisfies the expression (nullptr matches everything).
bool Matches(const Expr* expr, const v1::Run& run);

}  // namespace mlops::metadata::internal
