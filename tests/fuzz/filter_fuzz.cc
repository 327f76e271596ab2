// libFuzzer target: the run and lineage filter languages and order_by (services/metadata/filter.h).
// The first byte picks the parser; a filter that parses is evaluated against a fixed record so
// the matcher (LIKE patterns included) runs on whatever the parser accepted.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "services/metadata/filter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using mlops::metadata::FieldValue;
  const uint8_t selector = data[0];
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 3) {
    case 0:
    case 1: {
      auto dialect = selector % 3 == 0 ? mlops::metadata::FilterDialect::kRuns
                                       : mlops::metadata::FilterDialect::kLineage;
      auto expr = mlops::metadata::ParseFilter(text, dialect);
      if (expr.ok() && *expr != nullptr) {
        (void)mlops::metadata::Matches(expr->get(), [&](const auto& leaf) {
          FieldValue value;
          value.present = true;
          value.numeric = leaf.field.numeric();
          value.number = 0.5;
          value.text = "train_Model-v1.%_";
          return value;
        });
      }
      break;
    }
    default:
      (void)mlops::metadata::ParseOrderBy(text);
  }
  return 0;
}
