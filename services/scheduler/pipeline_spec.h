// Pipeline specs: the YAML a user submits, parsed and validated into a DAG of steps, sweeps
// expanded, commands rendered without a shell, and the content fingerprint that step caching keys
// on. Pure functions: no storage, no gRPC, no processes.
//
//   name: iris
//   params: {lr: 0.1, epochs: 20}
//   steps:
//     - name: train
//       needs: [preprocess]
//       image: registry/train:1.2
//       command: [python3, train.py, --lr, "{{params.lr}}", --data, "{{inputs.train}}",
//                 --out, "{{outputs.model}}"]
//       inputs: {train: preprocess.outputs.train, labels: dataset:iris@v1}
//       outputs: {model: model.bin}
//       env: {OMP_NUM_THREADS: "1"}
//       secretEnv: {DB_PASSWORD: {secret: warehouse, key: password}}   # values never stored
//       resources: {cpu: 1, memory: 512Mi, gpu: 0}
//       replicas: 1
//       retries: {limit: 2, backoff: 5s, factor: 2}
//       timeout: 30m
//       cache: true
//       sweep: {lr: [0.01, 0.1, 1.0]}
//       params: [seed]      # params read from the environment (MLOPS_PARAM_SEED) rather than
//                           # named in the command; a step sees no other pipeline param
//       objective: {metric: accuracy, goal: maximize}   # picks the best instance of the sweep
//       checkpoint: ckpt/state.pt   # kept as it changes, restored before a retry
//     - name: check                  # a built-in step: no command, no process
//       validate: {dataset: preprocess.outputs.train, schema: churn@2}  # or dataset:NAME[@REF]
//       kubernetes:         # the Kubernetes executor only (docs/kubernetes.md)
//         service_account: trainer
//         node_selector: {pool: gpu}
//         tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
//         pod: {metadata: {annotations: {team: vision}}, spec: {priorityClassName: high}}
//
// Every error is INVALID_ARGUMENT and starts with "line L, column C:" (1-based) of the offending
// YAML node.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/scheduler/quantities.h"

namespace mlops::scheduler {

// Where a step input comes from: another step's declared output, or a dataset version.
struct InputRef {
  enum class Kind { kStepOutput, kDataset };
  Kind kind = Kind::kStepOutput;
  std::string step;     // kStepOutput
  std::string output;   // kStepOutput
  std::string dataset;  // kDataset
  std::string ref;      // kDataset: tag, digest or prefix ("" = latest)
  // After expansion: `step` is swept with an objective; the input is the output of its best
  // instance (all instances are needed).
  bool best_of = false;
};

// A variable of a step's environment whose value is a key of a secret: a key of an entry of the
// scheduler's secrets file on one machine, of a Kubernetes Secret in the Jobs' namespace on a
// cluster (docs/pipelines.md, "Secrets"). Specs, records and fingerprints hold only the reference.
struct SecretRef {
  std::string secret;  // [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most 253 bytes (a Secret's name)
  std::string key;     // [A-Za-z0-9_.-]{1,253} (a Secret's data key)
  bool operator==(const SecretRef&) const = default;
};

// A secret's name as Kubernetes takes it (a lower-case DNS subdomain, at most 253 bytes) and a key
// of its data ([A-Za-z0-9_.-]{1,253}): the rules of secretEnv and of the secrets file.
bool ValidSecretName(std::string_view name);
bool ValidSecretKey(std::string_view key);

struct Resources {
  int64_t cpu_millis = 0;    // "1" = 1000, "500m" = 500
  int64_t memory_bytes = 0;  // "512Mi", "1G", plain bytes
  int64_t gpus = 0;
};

struct RetryPolicy {
  int limit = 0;
  int64_t backoff_ms = 0;
  double factor = 2.0;
  // The delay before attempt `attempt` (2, 3, ...): backoff * factor^(attempt - 2).
  int64_t DelayBeforeAttempt(int attempt) const;
};

struct StepSpec {
  std::string name;
  std::vector<std::string> needs;  // explicit and implied by inputs, sorted, unique
  std::string image;
  std::vector<std::string> command;  // templates
  std::map<std::string, InputRef> inputs;
  std::map<std::string, std::string> outputs;  // name -> relative path in the work dir
  std::map<std::string, std::string> env;
  // Variable name -> secret reference; no name is in `env` too.
  std::map<std::string, SecretRef> secret_env;
  Resources resources;
  int replicas = 1;
  RetryPolicy retries;
  int64_t timeout_ms = 0;  // 0: none
  bool cache = true;
  std::map<std::string, std::vector<std::string>> sweep;
  // The params this step uses, with their values (the sweep's for a swept key): those its command
  // names ({{params.K}}), those it declares (`params: [seed]`) and those it sweeps. Only these
  // reach its environment (MLOPS_PARAM_<K>) and its fingerprint.
  std::map<std::string, std::string> params;
  std::string sweep_of;  // after expansion: the step it was expanded from
  // With a sweep: the metrics.json key that picks the best instance, and which way.
  std::string objective_metric;
  bool maximize = true;
  // `kubernetes:` as the JSON of a PodTemplateSpec laid under what mlops sets ("" when absent).
  std::string pod_template_json;
  // `checkpoint: PATH` (relative to the work dir): kept when it changes while the step runs and
  // restored before a retry; not part of the fingerprint (it changes how, not what, a step
  // computes).
  std::string checkpoint;
  // A built-in validation step (`validate: {dataset: REF, schema: NAME[@VERSION]}`): no command
  // and no process; its one input, "data", is checked against the stored schema through the
  // monitoring service (docs/validation.md) and any anomaly fails it. Never cached.
  bool validate = false;
  std::string validate_schema;          // "" = the input dataset's own name
  int64_t validate_schema_version = 0;  // 0 = the latest when it runs
  int line = 0;                         // of the step in the YAML (1-based)
};

struct PipelineSpec {
  std::string name;
  std::map<std::string, std::string> params;
  std::vector<StepSpec> steps;  // in topological order (ties by position in the file)
};

// Parses and validates: unknown keys, wrong types, bad names, durations and quantities, duplicate
// steps, references to missing steps or outputs, and cycles (naming the cycle). Bounded: at most
// 32 MiB of YAML, 100,000 steps and 10,000 params (INVALID_ARGUMENT beyond); the work is linear in
// the size of the spec.
absl::StatusOr<PipelineSpec> ParsePipelineSpec(std::string_view yaml);

// Overrides params (--param k=v); INVALID_ARGUMENT for a key the spec does not declare.
absl::Status ApplyParams(PipelineSpec* spec, const std::map<std::string, std::string>& params);

// Replaces each step that has a sweep by one step per combination of the swept values, named
// "train[lr=0.01]" (several keys: "train[lr=0.01,seed=1]", keys sorted), with those params set.
// Steps that needed the swept step need every instance. A step may take inputs from a swept
// step's outputs only when it has an objective: the input is then the best instance's output
// (InputRef::best_of); otherwise INVALID_ARGUMENT. At most 1,000 instances per step.
absl::StatusOr<PipelineSpec> ExpandSweeps(PipelineSpec spec);

// Renders a step's command: {{params.K}}, {{inputs.K}}, {{outputs.K}} and {{step.name}} replaced
// by values; every other {{...}} is INVALID_ARGUMENT. No shell is involved: each template stays one
// argument whatever the values hold.
absl::StatusOr<std::vector<std::string>> RenderCommand(
    const StepSpec& step, const std::map<std::string, std::string>& input_paths,
    const std::map<std::string, std::string>& output_paths);

// The cache key of a step: SHA-256 (hex) over a canonical, length-prefixed encoding of its command
// as rendered (params and the step name substituted; input and output placeholders kept), image,
// env, the params it uses, replicas, declared outputs, its pod template, the content digests of its
// inputs (input name -> digest), its secret references with the version of each secret's value
// (`secret_versions`: variable name -> version; never a value) and what the executor adds to every
// step (`executor_settings`: the Kubernetes executor's default image and pod template). Equal
// fingerprints mean the step would compute the same thing.
std::string StepFingerprint(const StepSpec& step,
                            const std::map<std::string, std::string>& input_digests,
                            std::string_view executor_settings = "",
                            const std::map<std::string, std::string>& secret_versions = {});

}  // namespace mlops::scheduler
