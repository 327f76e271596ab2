// libFuzzer target: pipeline specs (services/scheduler/pipeline_spec.h): the YAML reader, the
// validation, sweep expansion and, for every step of a spec that expands, its command rendering
// and fingerprint.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "services/scheduler/pipeline_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = mlops::scheduler::ParsePipelineSpec(text);
  if (!spec.ok()) return 0;
  auto expanded = mlops::scheduler::ExpandSweeps(*std::move(spec));
  if (!expanded.ok()) return 0;
  for (const auto& step : expanded->steps) {
    std::map<std::string, std::string> inputs, outputs;
    for (const auto& [name, ref] : step.inputs) inputs[name] = "/in/" + name;
    for (const auto& [name, path] : step.outputs) outputs[name] = "/out/" + path;
    (void)mlops::scheduler::RenderCommand(step, inputs, outputs);
    (void)mlops::scheduler::StepFingerprint(step, {});
  }
  return 0;
}
