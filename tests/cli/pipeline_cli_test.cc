// `mlops pipeline` and `mlops queues` (the built CLI) against a child mlops-server: submit with
// --watch, status with the DAG, metrics and the sweep comparison, logs, list, cancel, retry,
// queues, and bad specs named by line and column.
#include <fstream>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;

class PipelineCliTest : public testing::ServerSuite {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_->path() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

constexpr char kTune[] = R"(name: tune
params: {lr: "0.1", greeting: hello}
steps:
  - name: prepare
    command: [/bin/sh, -c, "echo {{params.greeting}}; echo {{params.greeting}} > {{outputs.data}}"]
    outputs: {data: data.txt}
  - name: train
    command:
      - /bin/sh
      - -c
      - |
        case {{params.lr}} in 0.01) a=0.5;; 0.1) a=0.9;; *) a=0.2;; esac
        echo "{\"accuracy\": $a, \"loss\": 1}" > metrics.json
        cat {{inputs.data}} > {{outputs.model}}
    inputs: {data: prepare.outputs.data}
    outputs: {model: model.bin}
    sweep: {lr: ["0.01", "0.1", "1.0"]}
    objective: {metric: accuracy, goal: maximize}
  - name: register
    command: [/bin/sh, -c, "cp {{inputs.model}} {{outputs.chosen}}"]
    inputs: {model: train.outputs.model}
    outputs: {chosen: chosen.bin}
)";

TEST_F(PipelineCliTest, SubmitWatchStatusLogsListAndCacheHits) {
  std::string spec = Write("tune.yaml", kTune);
  auto submit = Mlops({"pipeline", "submit", spec, "--param", "greeting=bonjour", "--watch"});
  ASSERT_EQ(submit.exit_code, 0) << submit.out << submit.err;
  EXPECT_THAT(submit.err, HasSubstr("register: SUCCEEDED"));
  EXPECT_THAT(submit.err, HasSubstr(": SUCCEEDED"));
  std::string id = submit.out.substr(0, submit.out.find('\n'));
  ASSERT_EQ(id.size(), 32u) << submit.out;

  auto status = Mlops({"pipeline", "status", id});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("state:    SUCCEEDED"));
  EXPECT_THAT(status.out, HasSubstr("accuracy=0.9 loss=1"));
  EXPECT_THAT(status.out, HasSubstr("<- prepare"));
  EXPECT_THAT(status.out, HasSubstr("sweep train: maximize accuracy, best train[lr=0.1]"));

  auto logs = Mlops({"pipeline", "logs", id, "prepare"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "bonjour\n");

  // The same spec and params again: every step is a cache hit.
  auto again = Mlops({"pipeline", "submit", spec, "--param", "greeting=bonjour", "--watch"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  std::string again_id = again.out.substr(0, again.out.find('\n'));
  auto cached = Mlops({"pipeline", "status", again_id});
  EXPECT_THAT(cached.out, HasSubstr("cache hit: " + id + "/prepare"));
  EXPECT_THAT(cached.out, HasSubstr("sweep train: maximize accuracy, best train[lr=0.1]"));
  // The logs of a cached step are those of the attempt that produced it, and it says so.
  auto cached_logs = Mlops({"pipeline", "logs", again_id, "prepare"});
  ASSERT_EQ(cached_logs.exit_code, 0) << cached_logs.err;
  EXPECT_EQ(cached_logs.out, "bonjour\n");
  EXPECT_THAT(cached_logs.err, HasSubstr("was CACHED"));
  EXPECT_THAT(cached_logs.err, HasSubstr(id + "/prepare/1"));
  auto cached_attempt = Mlops({"pipeline", "logs", again_id, "prepare", "--attempt", "1"});
  EXPECT_EQ(cached_attempt.exit_code, 1);
  EXPECT_THAT(cached_attempt.err, HasSubstr("no attempts of its own"));

  auto list = Mlops({"pipeline", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(id));
  EXPECT_THAT(list.out, HasSubstr(again_id + "  tune"));

  auto json = Mlops({"--output", "json", "pipeline", "status", id});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"best\": \"train[lr=0.1]\""));
}

TEST_F(PipelineCliTest, QueuesCancelRetryAndBadSpecs) {
  auto put = Mlops({"queues", "put", "slow", "--max-concurrency", "1", "--cpu", "2"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  auto queues = Mlops({"queues", "list"});
  EXPECT_THAT(queues.out, HasSubstr("slow"));
  EXPECT_THAT(queues.out, HasSubstr("default"));

  std::string sleepy = Write("sleepy.yaml", R"(name: sleepy
steps:
  - name: nap
    command: [sleep, "60"]
)");
  auto submit = Mlops({"pipeline", "submit", sleepy, "--queue", "slow"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  std::string id = submit.out.substr(0, submit.out.find('\n'));
  auto cancel = Mlops({"pipeline", "cancel", id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  std::string state;
  for (int i = 0; i < 100 && state.find("CANCELED") == std::string::npos; ++i) {
    state = Mlops({"pipeline", "status", id}).out;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(state, HasSubstr("state:    CANCELED"));
  // A finished run can be retried: a new run.
  auto retry = Mlops({"pipeline", "retry", id});
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  Mlops({"pipeline", "cancel", retry.out.substr(retry.out.rfind(' ') + 1)});

  std::string bad = Write("bad.yaml",
                          "name: bad\nsteps:\n  - name: a\n    command: [x]\n"
                          "    colour: red\n");
  auto refused = Mlops({"pipeline", "submit", bad});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("INVALID_ARGUMENT: line 5, column 5: unknown key 'colour'"));
  auto unknown = Mlops({"pipeline", "submit", sleepy, "--queue", "nowhere"});
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("NOT_FOUND"));
  auto missing = Mlops({"pipeline", "status", "0123456789abcdef0123456789abcdef"});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace mlops
