// libFuzzer target: dataset schemas as YAML (services/monitoring/schema_yaml.h), which `mlops
// schema put` and `mlops validate --schema FILE` read, and the validator they then drive. A schema
// that parses and is well-formed must print as YAML that parses back to the same schema, and
// validate a small table of every column kind without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "services/monitoring/schema_yaml.h"
#include "services/monitoring/table.h"
#include "services/monitoring/validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto schema = mlops::monitoring::SchemaFromYaml(text);
  if (!schema.ok() || !mlops::monitoring::CheckSchema(*schema).ok()) return 0;
  auto again = mlops::monitoring::SchemaFromYaml(mlops::monitoring::SchemaToYaml(*schema));
  if (!again.ok() || again->SerializeAsString() != schema->SerializeAsString()) std::abort();
  static const auto* table =
      mlops::monitoring::Table::ParseCsv("a,b,c,d\n1,x,2.5,true\n,y,,no\n3,x,1e9,1\n", {})
          ->release();
  mlops::monitoring::Validator validator(*schema);
  validator.Add(*table, "fuzz.csv");
  validator.Finish();
  return 0;
}
