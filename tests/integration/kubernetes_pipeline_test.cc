// Pipelines on the real single-node cluster of tools/k8s (label k8s: tools/test.sh's Kubernetes
// stage, with DIR/env sourced and the step image of docker/step/build.sh loaded): a real
// mlops-server with --executor=kubernetes runs each step as a Job of the busybox image, under
// `mlops step run` copied in from the step image. Its pods reach the server on the host's bridge
// address. A step reads a dataset and writes an output that the next step reads by digest, with
// metrics and logs; a second run is all CACHED; an output not written fails the step with the
// wrapper's reason; a checkpoint saved by a failing pod is restored in its retry's pod; the server
// killed with -9 while a pod runs is restarted and the run completes with the attempt re-attached
// (the pod's report waits for the scheduler to be back).
#include <filesystem>
#include <fstream>
#include <thread>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/common/digest.h"
#include "services/common/strings.h"
#include "services/scheduler/kubernetes/kube_client.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

namespace v1 = ::mlops::scheduler::v1;
using ::testing::HasSubstr;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

class KubernetesPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Env("MLOPS_K8S_API").empty()) {
      GTEST_SKIP() << "needs a cluster: tools/k8s/up.sh DIR, then source DIR/env";
    }
    scheduler::k8s::KubeConfig config;
    config.server = Env("MLOPS_K8S_API");
    config.ca_file = Env("MLOPS_K8S_CA");
    config.token = Env("MLOPS_K8S_ADMIN_TOKEN");
    admin_ = std::make_shared<scheduler::k8s::KubeClient>(config);
    namespace_ = StrCat("mlops-pipe-", ::getpid(), "-", counter_++);
    auto created =
        admin_->Request("POST", "/api/v1/namespaces",
                        StrCat(R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":")",
                               namespace_, R"("}})"));
    ASSERT_TRUE(created.ok() && created->http_code == 201) << created.status();
    for (int i = 0; i < 100; ++i) {  // pods need the namespace's default service account
      auto sa = admin_->Request(
          "GET", StrCat("/api/v1/namespaces/", namespace_, "/serviceaccounts/default"));
      if (sa.ok() && sa->http_code == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    port_ = testing::FreePort();
    args_ = {"--host=0.0.0.0",
             StrCat("--port=", port_),
             "--advertise_host=" + Env("MLOPS_K8S_GATEWAY"),
             "--executor=kubernetes",
             "--k8s_kubeconfig=" + Env("KUBECONFIG"),
             "--k8s_namespace=" + namespace_,
             "--k8s_scheduler_id=" + namespace_,
             "--k8s_step_image=docker.io/mlops/step:dev",
             "--k8s_default_image=docker.io/mlops-k8s/busybox:1",
             "--k8s_image_pull_policy=Never"};
  }

  void TearDown() override {
    if (admin_ != nullptr) (void)admin_->Request("DELETE", "/api/v1/namespaces/" + namespace_);
  }

  std::unique_ptr<testing::ChildServer> StartServer() {
    auto server =
        std::make_unique<testing::ChildServer>(MLOPS_SERVER_BIN, dir_.path() + "/data", args_);
    server->Start();
    return server;
  }

  static std::unique_ptr<v1::SchedulerService::Stub> Connect(const testing::ChildServer& server) {
    return v1::SchedulerService::NewStub(
        grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  }

  static v1::PipelineRun Submit(v1::SchedulerService::Stub* stub, const std::string& yaml) {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(yaml);
    v1::PipelineRun run;
    grpc::ClientContext context;
    grpc::Status status = stub->SubmitPipeline(&context, request, &run);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return run;
  }

  static v1::PipelineRun Get(v1::SchedulerService::Stub* stub, const std::string& id) {
    v1::GetPipelineRunRequest request;
    request.set_id(id);
    v1::PipelineRun run;
    for (int i = 0; i < 200; ++i) {  // UNAVAILABLE while a restarted scheduler starts
      grpc::ClientContext context;
      if (stub->GetPipelineRun(&context, request, &run).ok()) return run;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "GetPipelineRun kept failing";
    return run;
  }

  static v1::PipelineRun WaitForEnd(v1::SchedulerService::Stub* stub, const std::string& id,
                                    int seconds = 120) {
    v1::PipelineRun run;
    for (int i = 0; i < seconds * 10; ++i) {
      run = Get(stub, id);
      if (run.state() == v1::SUCCEEDED || run.state() == v1::FAILED) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return run;
  }

  // Jobs in the namespace (each carries the attempt-id annotation once).
  int JobCount() {
    auto jobs = admin_->Request("GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs"));
    if (!jobs.ok()) return -1;
    int count = 0;
    for (size_t at = 0; (at = jobs->body.find("\"mlops.dev/attempt-id\"", at)) != std::string::npos;
         ++at) {
      ++count;
    }
    return count;
  }

  testing::CommandResult Cli(std::vector<std::string> args, const testing::ChildServer& server) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server.address()});
    return testing::RunCommand(args, {});
  }

  static inline int counter_ = 0;
  testing::TempDir dir_;
  std::shared_ptr<scheduler::k8s::KubeClient> admin_;
  std::string namespace_;
  int port_ = 0;
  std::vector<std::string> args_;
};

constexpr char kPipeline[] = R"(name: k8s
steps:
  - name: prepare
    inputs: {raw: "dataset:k8s-raw"}
    outputs: {count: count.txt}
    command: [/bin/sh, -c, 'wc -l < {{inputs.raw}}/rows.csv > {{outputs.count}}; echo prepared $(cat {{outputs.count}})']
  - name: train
    inputs: {count: prepare.outputs.count}
    outputs: {model: model.bin}
    command: [/bin/sh, -c, 'echo model-$(cat {{inputs.count}}) > {{outputs.model}}; echo "{\"accuracy\": 0.93}" > metrics.json']
)";

TEST_F(KubernetesPipelineTest, StepsRunAsJobsPassDataByDigestAndAreCachedTheSecondTime) {
  auto server = StartServer();
  auto stub = Connect(*server);
  std::filesystem::create_directories(dir_.path() + "/raw");
  std::ofstream(dir_.path() + "/raw/rows.csv") << "a,1\nb,2\nc,3\n";
  auto pushed = Cli({"data", "push", dir_.path() + "/raw", "--dataset", "k8s-raw"}, *server);
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;

  const auto t0 = std::chrono::steady_clock::now();
  v1::PipelineRun run = WaitForEnd(stub.get(), Submit(stub.get(), kPipeline).id());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  std::map<std::string, const v1::StepRun*> steps;
  for (const auto& step : run.steps()) steps[step.name()] = &step;
  const v1::StepRun& train = *steps.at("train");
  EXPECT_EQ(train.output_digests().at("model"), DigestHex(Sha256Of("model-3\n")))
      << "the output of prepare reached train by digest, and train's output came back";
  EXPECT_DOUBLE_EQ(train.metrics().at("accuracy"), 0.93);
  EXPECT_EQ(steps.at("prepare")->attempts_size(), 1);
  auto logs = Cli({"pipeline", "logs", run.id(), "prepare"}, *server);
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("prepared 3"));
  std::cout << "k8s pipeline: 2 steps in " << seconds << " s\n";
  // Collected Jobs are deleted.
  for (int i = 0; i < 100 && JobCount() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(JobCount(), 0);

  v1::PipelineRun again = WaitForEnd(stub.get(), Submit(stub.get(), kPipeline).id());
  ASSERT_EQ(again.state(), v1::SUCCEEDED);
  for (const auto& step : again.steps()) EXPECT_EQ(step.state(), v1::CACHED) << step.name();
  EXPECT_EQ(JobCount(), 0) << "a cached step starts no Job";

  // The wrapper's own failure is the step's message.
  v1::PipelineRun broken = WaitForEnd(stub.get(), Submit(stub.get(), R"(name: broken
steps:
  - name: forgets
    outputs: {m: m.txt}
    command: [/bin/sh, -c, 'echo no output']
)")
                                                      .id());
  ASSERT_EQ(broken.state(), v1::FAILED);
  EXPECT_THAT(broken.steps(0).message(),
              HasSubstr("declared output m (/mlops-work/outputs/m.txt) was not written"));
}

TEST_F(KubernetesPipelineTest, APodsCheckpointIsKeptAndTheRetryStartsFromIt) {
  auto server = StartServer();
  auto stub = Connect(*server);
  // The first attempt saves progress while it runs (kept by the wrapper within its 1 s interval:
  // the pod is still running), then fails; the retry, a new pod, finds it restored.
  v1::PipelineRun run = WaitForEnd(stub.get(), Submit(stub.get(), R"(name: ckpt
steps:
  - name: long
    checkpoint: ckpt/state
    retries: {limit: 1}
    env: {MLOPS_CHECKPOINT_INTERVAL_MS: "1000"}
    outputs: {o: o.txt}
    command: [/bin/sh, -c, 'if [ -f ckpt/state ]; then cat ckpt/state > {{outputs.o}}; else echo epoch-7 > ckpt/state; sleep 3; exit 1; fi']
)")
                                                   .id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  EXPECT_EQ(run.steps(0).attempts_size(), 2);
  EXPECT_EQ(run.steps(0).output_digests().at("o"), DigestHex(Sha256Of("epoch-7\n")));
}

TEST_F(KubernetesPipelineTest, AServerKilledWhilePodsRunIsRestartedAndTheRunCompletes) {
  auto server = StartServer();
  auto stub = Connect(*server);
  const std::string id = Submit(stub.get(), R"(name: survive
steps:
  - name: slow
    outputs: {x: x.txt}
    command: [/bin/sh, -c, 'echo started; sleep 8; echo done > {{outputs.x}}']
)")
                             .id();
  // Until the pod runs.
  bool running = false;
  for (int i = 0; i < 600 && !running; ++i) {
    auto pods = admin_->Request("GET", StrCat("/api/v1/namespaces/", namespace_, "/pods"));
    running = pods.ok() && pods->body.find("\"phase\":\"Running\"") != std::string::npos;
    if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(running);
  server->Kill();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto restarted = StartServer();
  auto again = Connect(*restarted);
  v1::PipelineRun run = WaitForEnd(again.get(), id);
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  const v1::StepRun& slow = run.steps(0);
  EXPECT_EQ(slow.attempts_size(), 1) << "re-attached, not run again";
  EXPECT_EQ(slow.output_digests().at("x"), DigestHex(Sha256Of("done\n")));
  auto logs = Cli({"pipeline", "logs", id, "slow"}, *restarted);
  EXPECT_EQ(logs.out, "started\n");
  for (int i = 0; i < 100 && JobCount() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(JobCount(), 0);
}

}  // namespace
}  // namespace mlops
