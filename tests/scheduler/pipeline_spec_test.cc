// Pipeline specs: parsing, every validation error with its line and column, sweeps, templates
// without a shell, the fingerprint that step caching keys on, durations and quantities, and
// metrics.json.
#include "services/scheduler/pipeline_spec.h"

#include "services/scheduler/metrics_file.h"
#include "services/scheduler/yaml_tree.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::ElementsAre;

constexpr char kIris[] = R"(name: iris
params: {lr: 0.1, epochs: 20, seed: 7}
steps:
  - name: train
    needs: [preprocess]
    image: registry/train:1.2
    command: [python3, train.py, --lr, "{{params.lr}}", --data, "{{inputs.train}}", --out, "{{outputs.model}}"]
    inputs: {train: preprocess.outputs.train, labels: "dataset:iris@v1"}
    outputs: {model: model.bin, metrics: metrics.json}
    resources: {cpu: 1, memory: 512Mi, gpu: 0}
    replicas: 1
    retries: {limit: 2, backoff: 5s, factor: 2}
    timeout: 30m
    cache: true
    sweep: {lr: [0.01, 0.1, 1.0]}
  - name: preprocess
    command: [prep, "{{inputs.raw}}", "{{outputs.train}}"]
    inputs: {raw: "dataset:iris"}
    outputs: {train: train.csv}
  - name: evaluate
    needs: [train]
    command: [eval]
)";

TEST(PipelineSpecTest, ParsesTheIssueExampleInTopologicalOrder) {
  auto spec = ParsePipelineSpec(kIris);
  ASSERT_OK(spec.status());
  ASSERT_EQ(spec->steps.size(), 3u);
  EXPECT_EQ(spec->steps[0].name, "preprocess");
  EXPECT_EQ(spec->steps[1].name, "train");
  EXPECT_EQ(spec->steps[2].name, "evaluate");
  const StepSpec& train = spec->steps[1];
  EXPECT_EQ(train.resources.cpu_millis, 1000);
  EXPECT_EQ(train.resources.memory_bytes, 512LL << 20);
  EXPECT_EQ(train.retries.limit, 2);
  EXPECT_EQ(train.retries.backoff_ms, 5000);
  EXPECT_EQ(train.retries.DelayBeforeAttempt(3), 10000);
  EXPECT_EQ(train.timeout_ms, 30 * 60 * 1000);
  EXPECT_EQ(train.inputs.at("labels").kind, InputRef::Kind::kDataset);
  EXPECT_EQ(train.inputs.at("labels").dataset, "iris");
  EXPECT_EQ(train.inputs.at("labels").ref, "v1");
  EXPECT_EQ(train.inputs.at("train").step, "preprocess");
  EXPECT_EQ(train.params.at("lr"), "0.1");
}

TEST(PipelineSpecTest, ErrorsNameTheLineAndColumn) {
  struct Case {
    std::string yaml;
    std::string message;
  };
  const std::string head = "name: p\nparams: {lr: 1}\nsteps:\n";
  for (const Case& c : std::vector<Case>{
           {head + "  - name: a\n    command: [x]\n    colour: red\n",
            "line 6, column 5: unknown key 'colour' in step"},
           {head + "  - name: a\n    command: [x]\n    needs: [ghost]\n",
            "line 6, column 13: step a needs 'ghost', which is not a step"},
           {head + "  - name: a\n    command: [x]\n    timeout: soon\n",
            "line 6, column 14: step a: timeout 'soon'"},
           {head + "  - name: a\n    command: [x]\n    resources: {memory: lots}\n",
            "line 6, column 25: step a: memory 'lots'"},
           {head + "  - name: a\n    command: [x]\n    inputs: {d: b.outputs.z}\n  - name: b\n"
                   "    command: [y]\n    outputs: {y: y.txt}\n",
            "line 6, column 17: step a: input d: step b declares no output 'z'"},
           {head + "  - name: a\n    command: [x]\n  - name: a\n    command: [y]\n",
            "line 6, column 11: step 'a' is defined twice"},
           {head + "  - name: a\n    needs: [b]\n    command: [x]\n  - name: b\n    needs: [a]\n"
                   "    command: [y]\n",
            "the steps form a cycle: a -> b -> a"},
           {head + "  - name: a\n    command: [x]\n    sweep: {momentum: [1, 2]}\n",
            "line 6, column 13: step a: sweep over 'momentum', which is not a pipeline param"},
           {head + "  - name: a\n    command: [x]\n    outputs: {m: ../escape}\n", "without '..'"},
           {head + "  - name: a\n", "line 4, column 5: step a: 'command' is required"},
           {head + "  - name: a\n    command: [x]\n    objective: {metric: acc}\n",
            "line 6, column 16: step a: objective: only a step with a sweep has one"},
           {head + "  - name: a\n    command: [x]\n    sweep: {lr: [1, 2]}\n"
                   "    objective: {metric: acc, goal: best}\n",
            "line 7, column 36: step a: objective.goal: maximize or minimize, not 'best'"},
           {head + "  - name: a\n    command: [x]\n    sweep: {lr: [1, 2]}\n"
                   "    objective: {goal: min}\n",
            "line 7, column 16: step a: objective: 'metric' is required"},
           {"name: p\nsteps: [\n", "not valid YAML"},
           {"name: p\nsteps: []\n", "'steps' must be a non-empty list"},
           // Duplicate keys, anywhere; a second document.
           {head + "  - name: a\n    command: [x]\nsteps:\n  - name: b\n    command: [y]\n",
            "line 6, column 1: not valid YAML: duplicate key 'steps' (first at line 3)"},
           {head + "  - name: a\n    command: [x]\n    command: [y]\n",
            "line 6, column 5: not valid YAML: duplicate key 'command' (first at line 5)"},
           {head + "  - name: a\n    command: [x]\n---\nname: q\n",
            "line 7, column 1: not valid YAML: a second YAML document"},
           // Quantities that do not fit, or are not plain decimals.
           {head +
                "  - name: a\n    command: [x]\n    resources: {memory: 9223372036854775807Gi}\n",
            "line 6, column 25: step a: memory '9223372036854775807Gi'"},
           {head + "  - name: a\n    command: [x]\n    resources: {memory: 1e308Gi}\n",
            "memory '1e308Gi'"},
           {head + "  - name: a\n    command: [x]\n    resources: {memory: 0x7fffffffffffffff}\n",
            "memory '0x7fffffffffffffff'"},
           {head + "  - name: a\n    command: [x]\n    resources: {memory: "
                   "99999999999999999999999999}\n",
            "memory '99999999999999999999999999'"},
           {head + "  - name: a\n    command: [x]\n    resources: {cpu: 99999999999999999999m}\n",
            "cpu '99999999999999999999m'"},
           // A sweep value listed twice would make two steps of one name.
           {head + "  - name: a\n    command: [x]\n    sweep: {lr: [1, 2, 1]}\n",
            "line 6, column 24: step a: sweep.lr: the value '1' is listed twice"},
           {"name: p\nparams: {a: 1, b: 1}\nsteps:\n  - name: s\n    command: [x]\n"
            "    sweep: {a: [" +
                [] {
                  std::string v;
                  for (int i = 0; i < 40; ++i) v += (i ? "," : "") + std::to_string(i);
                  return v;
                }() +
                "], b: [" +
                [] {
                  std::string v;
                  for (int i = 0; i < 30; ++i) v += (i ? "," : "") + std::to_string(i);
                  return v;
                }() +
                "]}\n",
            "line 6, column 12: step s: the sweep makes more than 1000 steps"},
       }) {
    EXPECT_THAT(ParsePipelineSpec(c.yaml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.message))
        << c.yaml;
  }
}

TEST(PipelineSpecTest, SweepsExpandIntoOneStepPerValue) {
  auto spec = ParsePipelineSpec(kIris);
  ASSERT_OK(spec.status());
  auto expanded = ExpandSweeps(*spec);
  ASSERT_OK(expanded.status());
  std::vector<std::string> names;
  for (const auto& s : expanded->steps) names.push_back(s.name);
  EXPECT_THAT(names, ElementsAre("preprocess", "train[lr=0.01]", "train[lr=0.1]", "train[lr=1.0]",
                                 "evaluate"));
  EXPECT_EQ(expanded->steps[3].params.at("lr"), "1.0");
  EXPECT_EQ(expanded->steps[3].sweep_of, "train");
  EXPECT_THAT(expanded->steps[4].needs,
              ElementsAre("train[lr=0.01]", "train[lr=0.1]", "train[lr=1.0]"));
}

TEST(PipelineSpecTest, OnlySweepsWithAnObjectiveFeedTheirOutputsOn) {
  const std::string head = R"(name: tune
params: {lr: 0.1}
steps:
  - name: train
    command: [x, "{{outputs.model}}"]
    outputs: {model: model.bin}
    sweep: {lr: [0.01, 0.1]}
)";
  const std::string consumer = R"(  - name: register
    command: [y, "{{inputs.model}}"]
    inputs: {model: train.outputs.model}
)";
  auto without = ParsePipelineSpec(head + consumer);
  ASSERT_OK(without.status());
  EXPECT_THAT(ExpandSweeps(*without).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 8: step register takes input model from train, which is swept without "
                       "an objective"));
  auto with = ParsePipelineSpec(head + "    objective: {metric: accuracy, goal: min}\n" + consumer);
  ASSERT_OK(with.status());
  auto expanded = ExpandSweeps(*with);
  ASSERT_OK(expanded.status());
  ASSERT_EQ(expanded->steps.size(), 3u);
  EXPECT_EQ(expanded->steps[0].objective_metric, "accuracy");
  EXPECT_FALSE(expanded->steps[1].maximize);
  const InputRef& ref = expanded->steps[2].inputs.at("model");
  EXPECT_TRUE(ref.best_of);
  EXPECT_EQ(ref.step, "train");
  EXPECT_THAT(expanded->steps[2].needs, ElementsAre("train[lr=0.01]", "train[lr=0.1]"));
}

TEST(PipelineSpecTest, CommandsRenderWithoutAShell) {
  auto spec = ParsePipelineSpec(kIris);
  ASSERT_OK(spec.status());
  ASSERT_OK(ApplyParams(&*spec, {{"lr", "0.5; rm -rf / $(whoami)"}}));
  const StepSpec& train = spec->steps[1];
  auto command = RenderCommand(train, {{"train", "/w/in/train.csv"}, {"labels", "/w/in/labels"}},
                               {{"model", "/w/out/model.bin"}, {"metrics", "/w/out/metrics.json"}});
  ASSERT_OK(command.status());
  EXPECT_THAT(*command, ElementsAre("python3", "train.py", "--lr", "0.5; rm -rf / $(whoami)",
                                    "--data", "/w/in/train.csv", "--out", "/w/out/model.bin"));
  StepSpec bad = train;
  bad.command = {"x", "{{secrets.token}}"};
  EXPECT_THAT(
      RenderCommand(bad, {}, {}).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "unknown placeholder {{secrets.token}}"));
  EXPECT_THAT(ApplyParams(&*spec, {{"momentum", "1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "momentum"));
}

TEST(PipelineSpecTest, FingerprintsChangeWithContentAndNothingElse) {
  auto spec = ParsePipelineSpec(kIris);
  ASSERT_OK(spec.status());
  const StepSpec& train = spec->steps[1];
  std::map<std::string, std::string> inputs = {{"train", std::string(64, 'a')},
                                               {"labels", std::string(64, 'b')}};
  std::string base = StepFingerprint(train, inputs);
  EXPECT_EQ(base.size(), 64u);
  EXPECT_EQ(StepFingerprint(train, inputs), base);
  auto changed_input = inputs;
  changed_input["train"][63] = 'c';  // one byte of one input's content
  EXPECT_NE(StepFingerprint(train, changed_input), base);
  StepSpec other = train;
  other.params["lr"] = "0.2";
  EXPECT_NE(StepFingerprint(other, inputs), base);
  other = train;
  other.image = "registry/train:1.3";
  EXPECT_NE(StepFingerprint(other, inputs), base);
  other = train;
  other.env["X"] = "1";
  EXPECT_NE(StepFingerprint(other, inputs), base);
  // Fields that do not change what is computed leave it alone.
  other = train;
  other.retries.limit = 9;
  other.timeout_ms = 1;
  other.name = "renamed";
  EXPECT_EQ(StepFingerprint(other, inputs), base);
  // Length-prefixed: ["ab", "c"] and ["a", "bc"] differ.
  other = train;
  other.command = {"ab", "c"};
  StepSpec split = train;
  split.command = {"a", "bc"};
  EXPECT_NE(StepFingerprint(other, inputs), StepFingerprint(split, inputs));
}

TEST(PipelineSpecTest, KubernetesSettingsAreAPodTemplateAndPartOfTheKey) {
  auto spec = ParsePipelineSpec(R"(name: k
steps:
  - name: train
    command: [train]
    kubernetes:
      service_account: trainer
      node_selector: {pool: gpu, "n": 1}
      tolerations: [{key: gpu, operator: Exists, effect: NoSchedule, tolerationSeconds: 30}]
      pod:
        metadata: {annotations: {team: vision, "quoted": "true"}}
        spec:
          hostNetwork: true
          priorityClassName: high
          terminationGracePeriodSeconds: 5
          dnsPolicy: ~
          containers: [{volumeMounts: [{name: data, mountPath: /data, readOnly: false}]}]
          volumes: [{name: data, hostPath: {path: "/srv/data\n"}}]
  - name: plain
    command: [train]
)");
  ASSERT_OK(spec.status());
  const StepSpec& train = spec->steps[1].name == "train" ? spec->steps[1] : spec->steps[0];
  const StepSpec& plain = spec->steps[1].name == "plain" ? spec->steps[1] : spec->steps[0];
  EXPECT_EQ(
      train.pod_template_json,
      R"({"metadata":{"annotations":{"team":"vision","quoted":"true"}},)"
      R"("spec":{"hostNetwork":true,"priorityClassName":"high",)"
      R"("terminationGracePeriodSeconds":5,"dnsPolicy":null,)"
      R"("containers":[{"volumeMounts":[{"name":"data","mountPath":"/data","readOnly":false}]}],)"
      R"("volumes":[{"name":"data","hostPath":{"path":"/srv/data\n"}}],)"
      R"("serviceAccountName":"trainer","nodeSelector":{"n":"1","pool":"gpu"},)"
      R"("tolerations":[{"key":"gpu","operator":"Exists","effect":"NoSchedule",)"
      R"("tolerationSeconds":30}]}})");
  EXPECT_EQ(plain.pod_template_json, "");
  // The pod template and the executor's own settings are part of the key; a step without them
  // keeps the key it had before either existed (recorded: the cache of older runs stays valid).
  StepSpec without = train;
  without.pod_template_json.clear();
  EXPECT_NE(StepFingerprint(train, {}), StepFingerprint(without, {}));
  EXPECT_NE(StepFingerprint(plain, {}, "kubernetes\nbusybox:1\n"), StepFingerprint(plain, {}));
  EXPECT_EQ(StepFingerprint(plain, {}),
            "a83656e2094f7db3525bea7e891ed46efaa7f7ff524153dd5ebc5b4f475cab5a");

  for (const auto& [yaml, message] : std::vector<std::pair<std::string, std::string>>{
           {"kubernetes: {nodeSelector: {a: b}}",
            "unknown key 'nodeSelector' in step t: kubernetes"},
           {"kubernetes: {pod: {spec: {nodeSelector: {a: b}}}, node_selector: {a: c}}",
            "kubernetes.node_selector and kubernetes.pod.spec.nodeSelector both given"},
           {"kubernetes: {pod: {containers: []}}",
            "unknown key 'containers' in step t: kubernetes.pod"},
           {"kubernetes: {pod: [1]}", "kubernetes.pod (a PodTemplateSpec): expected a mapping"},
           {"kubernetes: {tolerations: {a: b}}", "kubernetes.tolerations: expected a list"},
           {"checkpoint: /abs", "checkpoint path '/abs' must be relative"},
           {"checkpoint: a/../b", "without '..'"},
           {"kubernetes: {pod: {spec: {x: {[1]: 2}}}}", "a key must be a single value"},
       }) {
    EXPECT_THAT(
        ParsePipelineSpec("name: p\nsteps:\n  - name: t\n    command: [x]\n    " + yaml).status(),
        StatusIs(absl::StatusCode::kInvalidArgument, message))
        << yaml;
  }
}

TEST(PipelineSpecTest, SpecsAreBoundedInBytesAndParams) {
  std::string params = "name: many\nparams:\n";
  for (int i = 0; i < 10001; ++i) params += "  p" + std::to_string(i) + ": x\n";
  params += "steps:\n  - name: s\n    command: [x]\n";
  EXPECT_THAT(ParsePipelineSpec(params).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 3, column 3: params: 10001 given, at most 10000 per pipeline"));
  std::string huge = "name: huge\ndescription: \"" + std::string(33 << 20, 'x') + "\"\n";
  EXPECT_THAT(ParsePipelineSpec(huge).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "at most 33554432 (32 MiB)"));
}

TEST(PipelineSpecTest, ALongCycleIsNamedByItsFirstStepsAndItsLength) {
  std::string yaml = "name: ring\nsteps:\n";
  const int kSteps = 2000;
  for (int i = 0; i < kSteps; ++i) {
    yaml += "  - name: s" + std::to_string(i) + "\n    needs: [s" +
            std::to_string((i + 1) % kSteps) + "]\n    command: [x]\n";
  }
  absl::Status status = ParsePipelineSpec(yaml).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, "(2000 steps in all)"));
  EXPECT_LT(status.message().size(), 300u);
}

TEST(PipelineSpecTest, TheStepNameInACommandIsPartOfTheFingerprint) {
  auto spec = ParsePipelineSpec(R"(name: names
steps:
  - name: a
    command: [echo, "{{step.name}}"]
  - name: b
    command: [echo, "{{ step.name }}"]
)");
  ASSERT_OK(spec.status());
  ASSERT_EQ(spec->steps.size(), 2u);
  EXPECT_NE(StepFingerprint(spec->steps[0], {}), StepFingerprint(spec->steps[1], {}));
  // Input and output placeholders stand for their content, not their per-attempt paths.
  StepSpec same = spec->steps[0];
  same.command = {"cat", "{{inputs.x}}"};
  StepSpec spaced = same;
  spaced.command = {"cat", "{{ inputs.x }}"};
  EXPECT_EQ(StepFingerprint(same, {{"x", std::string(64, 'a')}}),
            StepFingerprint(spaced, {{"x", std::string(64, 'a')}}));
}

TEST(PipelineSpecTest, AStepSeesAndIsKeyedOnOnlyTheParamsItUses) {
  constexpr char kSpec[] = R"(name: narrow
params: {lr: "0.1", seed: "7", unused: "x", batch: "32"}
steps:
  - name: prep
    command: [prep]
  - name: train
    command: [train, --lr, "{{params.lr}}"]
    params: [seed]
  - name: tune
    command: [tune]
    sweep: {batch: ["16", "32"]}
)";
  auto parsed = ParsePipelineSpec(kSpec);
  ASSERT_OK(parsed.status());
  auto by_name = [](const PipelineSpec& spec, const std::string& name) {
    for (const StepSpec& s : spec.steps) {
      if (s.name == name) return s;
    }
    return StepSpec();
  };
  EXPECT_TRUE(by_name(*parsed, "prep").params.empty());
  EXPECT_EQ(by_name(*parsed, "train").params,
            (std::map<std::string, std::string>{{"lr", "0.1"}, {"seed", "7"}}));
  EXPECT_EQ(by_name(*parsed, "tune").params, (std::map<std::string, std::string>{{"batch", "32"}}));
  std::string prep = StepFingerprint(by_name(*parsed, "prep"), {});
  std::string train = StepFingerprint(by_name(*parsed, "train"), {});
  // A new value of a param only train uses changes train's fingerprint, not prep's.
  auto changed = ParsePipelineSpec(kSpec);
  ASSERT_OK(changed.status());
  ASSERT_OK(ApplyParams(&*changed, {{"seed", "8"}, {"unused", "y"}}));
  EXPECT_EQ(StepFingerprint(by_name(*changed, "prep"), {}), prep);
  EXPECT_NE(StepFingerprint(by_name(*changed, "train"), {}), train);
  EXPECT_EQ(by_name(*changed, "train").params.at("seed"), "8");
  EXPECT_FALSE(by_name(*changed, "prep").params.contains("unused"));
}

TEST(PipelineSpecTest, PlaceholdersAreCheckedAtSubmission) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"name: p\nsteps:\n  - name: a\n    command: [echo, \"{{params.nope}}\"]\n",
            "line 4, column 21: step a: {{params.nope}}: 'nope' is not a pipeline param"},
           {"name: p\nsteps:\n  - name: a\n    command: [echo, \"{{params.x\"]\n",
            "line 4, column 21: step a: unclosed '{{'"},
           {"name: p\nsteps:\n  - name: a\n    command: [cat, \"{{inputs.data}}\"]\n",
            "step a: {{inputs.data}}: the step has no input 'data'"},
           {"name: p\nsteps:\n  - name: a\n    command: [cp, x, \"{{outputs.o}}\"]\n",
            "step a: {{outputs.o}}: the step has no output 'o'"},
           {"name: p\nsteps:\n  - name: a\n    command: [echo, \"{{secrets.t}}\"]\n",
            "unknown placeholder {{secrets.t}}"},
           {"name: p\nparams: {a: 1}\nsteps:\n  - name: s\n    command: [x]\n    params: [b]\n",
            "line 6, column 14: step s: params: 'b' is not a pipeline param"},
       }) {
    EXPECT_THAT(ParsePipelineSpec(c.yaml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.error))
        << c.yaml;
  }
}

TEST(PipelineSpecTest, SecretEnvHoldsReferencesAndItsVersionsAreInTheKey) {
  auto spec = ParsePipelineSpec(R"(name: s
steps:
  - name: load
    command: [load]
    env: {MODE: fast}
    secretEnv:
      DB_PASSWORD: {secret: warehouse, key: password}
      TOKEN: {secret: mlops-token.v1, key: token}
)");
  ASSERT_OK(spec.status());
  const StepSpec& load = spec->steps[0];
  ASSERT_EQ(load.secret_env.size(), 2u);
  EXPECT_EQ(load.secret_env.at("DB_PASSWORD"), (SecretRef{"warehouse", "password"}));
  EXPECT_EQ(load.secret_env.at("TOKEN"), (SecretRef{"mlops-token.v1", "token"}));
  EXPECT_FALSE(load.env.contains("TOKEN"));
  // The key moves with a secret's version (its value rotated) and its reference, never needs the
  // value; a step without secrets keeps the key it had before secretEnv existed.
  std::map<std::string, std::string> versions = {{"DB_PASSWORD", "v1"}, {"TOKEN", "7"}};
  const std::string base = StepFingerprint(load, {}, "", versions);
  EXPECT_EQ(StepFingerprint(load, {}, "", versions), base);
  auto rotated = versions;
  rotated["TOKEN"] = "8";
  EXPECT_NE(StepFingerprint(load, {}, "", rotated), base);
  StepSpec other = load;
  other.secret_env["TOKEN"].key = "other";
  EXPECT_NE(StepFingerprint(other, {}, "", versions), base);
  other = load;
  other.secret_env.clear();
  StepSpec plain = load;
  plain.secret_env.clear();
  EXPECT_EQ(StepFingerprint(other, {}, "", versions), StepFingerprint(plain, {}));
  EXPECT_NE(StepFingerprint(other, {}), base);

  struct Case {
    const char* secret_env;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"{A: plain}", "secretEnv.A: expected a mapping"},
           {"{A: {secret: s}}", "secretEnv.A: expected {secret: NAME, key: KEY}"},
           {"{A: {secret: s, key: k, value: v}}", "unknown key 'value' in step a: secretEnv.A"},
           {"{A: {secret: Upper, key: k}}", "secretEnv.A.secret 'Upper' must be a Secret's name"},
           {"{A: {secret: -s, key: k}}", "secretEnv.A.secret '-s' must be a Secret's name"},
           {R"({A: {secret: s, key: "a/b"}})", "secretEnv.A.key 'a/b' must match"},
           {R"({A: {secret: s, key: "..\n"}})", "secretEnv.A.key"},
           {"{1A: {secret: s, key: k}}", "secretEnv: variable '1A' must match"},
           {R"({"A=B": {secret: s, key: k}})", "secretEnv: variable 'A=B' must match"},
           {"{MODE: {secret: s, key: k}}", "secretEnv: variable 'MODE' is in env too"},
           {"{MLOPS_TOKEN: {secret: s, key: k}}", "MLOPS_ variables are the scheduler's"},
       }) {
    std::string yaml = std::string("name: p\nsteps:\n  - name: a\n    command: [x]\n") +
                       "    env: {MODE: fast}\n    secretEnv: " + c.secret_env + "\n";
    EXPECT_THAT(ParsePipelineSpec(yaml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, c.error))
        << yaml;
  }
}

TEST(PipelineSpecTest, DurationsAndQuantities) {
  int64_t v = 0;
  EXPECT_TRUE(ParseDuration("1h30m", &v));
  EXPECT_EQ(v, 5400000);
  EXPECT_TRUE(ParseDuration("250ms", &v));
  EXPECT_EQ(v, 250);
  EXPECT_TRUE(ParseDuration("2", &v));
  EXPECT_EQ(v, 2000);
  EXPECT_FALSE(ParseDuration("5 minutes", &v));
  EXPECT_FALSE(ParseDuration("", &v));
  // Beyond 100 years, alone or added up: refused, never cast past int64 (fuzzing found these).
  EXPECT_TRUE(ParseDuration("36500d", &v));
  EXPECT_EQ(v, 36500LL * 86400000);
  EXPECT_FALSE(ParseDuration("999999999999d", &v));
  EXPECT_FALSE(ParseDuration("36600d1h", &v));
  EXPECT_FALSE(ParseDuration("1h9999999999d", &v));
  EXPECT_TRUE(ParseCpu("500m", &v));
  EXPECT_EQ(v, 500);
  EXPECT_TRUE(ParseCpu("0.25", &v));
  EXPECT_EQ(v, 250);
  EXPECT_FALSE(ParseCpu("-1", &v));
  EXPECT_TRUE(ParseMemory("2Gi", &v));
  EXPECT_EQ(v, 2LL << 30);
  EXPECT_TRUE(ParseMemory("1G", &v));
  EXPECT_EQ(v, 1000000000);
  EXPECT_FALSE(ParseMemory("1Gb", &v));
}

TEST(MetricsJsonTest, BothShapesParseAndStepsMustBeIntegers) {
  auto flat = ParseMetricsJson(R"({"accuracy": 0.93})");
  ASSERT_OK(flat.status());
  ASSERT_EQ(flat->size(), 1u);
  EXPECT_EQ((*flat)[0].value, 0.93);
  auto points = ParseMetricsJson(
      R"([{"key": "loss", "value": 0.5, "step": 2}, {"key": "loss", "value": 0.7, "step": 1}])");
  ASSERT_OK(points.status());
  EXPECT_EQ(FinalMetrics(*points).at("loss"), 0.5);
  // Steps beyond int64, fractional or not numbers: refused (the cast of 1e300 was undefined;
  // fuzzing found it).
  for (const char* step : {"1e300", "-1e19", "1.5", "\"x\""}) {
    EXPECT_THAT(ParseMetricsJson(std::string(R"([{"key": "a", "value": 1, "step": )") + step + "}]")
                    .status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "step"))
        << step;
  }
  EXPECT_THAT(ParseMetricsJson("{").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON"));
}

TEST(YamlTreeTest, NodesKeepKindsMarksOrderAnchorsAndNulls) {
  auto doc = YamlDocument::Parse(R"(a: 1
b: [x, "y z", {c: ~}]
base: &base {k: v}
copy: *base
empty:
)");
  ASSERT_TRUE(doc.ok()) << doc.status();
  YamlNode root = (*doc)->root();
  ASSERT_TRUE(root.IsMap());
  EXPECT_EQ(root.size(), 5u);
  EXPECT_EQ(root.key(1).Scalar(), "b");
  EXPECT_EQ(root["a"].Scalar(), "1");
  YamlNode b = root["b"];
  ASSERT_TRUE(b.IsSequence());
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(b[1].Scalar(), "y z");
  EXPECT_EQ(b[1].Mark().line, 1);
  EXPECT_EQ(b[1].Mark().column, 7);
  EXPECT_TRUE(b[2]["c"].IsNull());
  EXPECT_TRUE(static_cast<bool>(b[2]["c"]));  // null, but present
  EXPECT_FALSE(static_cast<bool>(b[3]));
  EXPECT_FALSE(static_cast<bool>(root["missing"]));
  EXPECT_FALSE(static_cast<bool>(root["missing"]["deeper"]));
  EXPECT_EQ(root["copy"]["k"].Scalar(), "v");
  EXPECT_TRUE(root["empty"].IsNull());
  EXPECT_EQ(root["a"].Scalar(), "1");
  EXPECT_EQ(root["b"].Scalar(), "");  // not a scalar

  auto empty = YamlDocument::Parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE((*empty)->root().IsNull());
  EXPECT_THAT(YamlDocument::Parse("a: [1, 2\nb: 3\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid YAML"));
  EXPECT_THAT(YamlDocument::Parse("a: *nowhere\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "line 1"));
  // A repeated key is an error (yaml-cpp alone keeps the first), in nested maps too; so is a
  // second document.
  EXPECT_THAT(YamlDocument::Parse("a: 1\nb: 2\na: again\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 3, column 1: not valid YAML: duplicate key 'a' (first at line 1)"));
  EXPECT_THAT(YamlDocument::Parse("m: {x: 1, x: 2}\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "duplicate key 'x'"));
  EXPECT_THAT(YamlDocument::Parse("a: 1\n---\nb: 2\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "a second YAML document"));
  EXPECT_TRUE(YamlDocument::Parse("---\na: 1\n...\n").ok());  // one document, marked
}

TEST(PipelineSpecTest, ParsesOneHundredThousandSteps) {
  std::string yaml = "name: big\nsteps:\n";
  for (int i = 0; i < 100000; ++i) {
    yaml += "  - name: s" + std::to_string(i) + "\n    command: [sleep, \"600\"]\n";
  }
  auto spec = ParsePipelineSpec(yaml);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->steps.size(), 100000u);
  EXPECT_EQ(spec->steps[99999].line, 2 + 2 * 99999 + 1);
  yaml += "  - name: one_too_many\n    command: [true]\n";
  EXPECT_THAT(ParsePipelineSpec(yaml).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "100000"));
}

TEST(PipelineSpecTest, ValidateStepsAreBuiltInAndTakeNothingAProcessWould) {
  auto spec = ParsePipelineSpec(R"(name: v
steps:
  - name: prep
    command: [prep, "{{outputs.train}}"]
    outputs: {train: train.csv}
  - name: check
    validate: {dataset: prep.outputs.train, schema: churn@3}
    retries: {limit: 1}
  - name: raw
    validate: {dataset: "dataset:churn@v2"}
)");
  ASSERT_OK(spec.status());
  ASSERT_EQ(spec->steps.size(), 3u);
  const StepSpec& check = spec->steps[1];
  EXPECT_TRUE(check.validate);
  EXPECT_TRUE(check.command.empty());
  EXPECT_FALSE(check.cache);
  EXPECT_EQ(check.validate_schema, "churn");
  EXPECT_EQ(check.validate_schema_version, 3);
  EXPECT_THAT(check.needs, ElementsAre("prep"));  // implied by its input
  EXPECT_EQ(check.inputs.at("data").step, "prep");
  EXPECT_EQ(check.retries.limit, 1);
  EXPECT_EQ(check.retries.backoff_ms, 2000);
  const StepSpec& raw = spec->steps[2];
  EXPECT_EQ(raw.validate_schema, "");  // the dataset's own
  EXPECT_EQ(raw.inputs.at("data").dataset, "churn");
  EXPECT_EQ(raw.inputs.at("data").ref, "v2");
  // The schema is part of the step's fingerprint.
  StepSpec other = check;
  other.validate_schema_version = 4;
  EXPECT_NE(StepFingerprint(check, {{"data", "abc"}}, ""),
            StepFingerprint(other, {{"data", "abc"}}, ""));

  const std::string head = "name: p\nsteps:\n";
  for (const auto& [yaml, message] : std::vector<std::pair<std::string, std::string>>{
           {head + "  - name: a\n    validate: {dataset: \"dataset:d\"}\n    command: [x]\n",
            "step a: a validate step runs no process: it takes no 'command'"},
           {head + "  - name: a\n    validate: {schema: s}\n",
            "line 4, column 15: step a: validate: 'dataset' is required"},
           {head + "  - name: a\n    validate: {dataset: \"dataset:d\", colour: red}\n",
            "unknown key 'colour' in step a: validate"},
           {head + "  - name: b\n    command: [x]\n    outputs: {o: o.csv}\n"
                   "  - name: a\n    validate: {dataset: b.outputs.o}\n",
            "step a: validate: a step's output is checked against a named schema"},
           {head + "  - name: a\n    validate: {dataset: \"dataset:d\", schema: s@x}\n",
            "validate.schema 's@x': expected NAME or NAME@VERSION"},
           {head + "  - name: a\n    validate: {dataset: \"dataset:d\", schema: \"a/b\"}\n",
            "validate.schema 'a/b': a dataset's name"},
           {head + "  - name: a\n    validate: {dataset: \"dataset:d\"}\n    cache: true\n",
            "it takes no 'cache'"},
           {head + "  - name: a\n    image: x\n",
            "step a: 'command' is required (or 'validate', a built-in step)"},
       }) {
    EXPECT_THAT(ParsePipelineSpec(yaml).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, message))
        << yaml;
  }
}

}  // namespace
}  // namespace mlops::scheduler
