// Pipelines on the real single-node cluster of tools/k8s (label k8s: tools/test.sh's Kubernetes
// stage, with DIR/env sourced and the step image of docker/step/build.sh loaded): a real
// mlops-server with --executor=kubernetes runs each step as a Job of the busybox image, under
// `mlops step run` copied in from the step image. Its pods reach the server on the host's bridge
// address. A step reads a dataset and writes an output that the next step reads by digest, with
// metrics and logs; a second run is all CACHED; an output not written fails the step with the
// wrapper's reason; a checkpoint saved by a failing pod is restored in its retry's pod; the server
// killed with -9 while a pod runs is restarted and the run completes with the attempt re-attached
// (the pod's report waits for the scheduler to be back). With Kueue's controller manager running
// in the cluster (tools/k8s/kueue.sh): a queue mapped to a LocalQueue leaves admission to Kueue,
// and an attempt that Kueue preempts is retried. Service-account tokens authenticate against the
// cluster's JWKS. A step's secretEnv comes from the namespace's Secrets and is redacted from its
// logs.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "mlops/scheduler/v1/scheduler.grpc.pb.h"
#include "services/common/digest.h"
#include "services/common/ids.h"
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
    // Pods reach this server across the node's bridge: beyond loopback, without authentication.
    args_ = {"--host=0.0.0.0",
             "--insecure_allow_unauthenticated",
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

  static v1::PipelineRun Submit(v1::SchedulerService::Stub* stub, const std::string& yaml,
                                const std::string& queue = "") {
    v1::SubmitPipelineRequest request;
    request.set_spec_yaml(yaml);
    request.set_queue(queue);
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

  // Waits (at most 60 s) until a pod of the namespace runs.
  bool PodRuns() {
    for (int i = 0; i < 600; ++i) {
      auto pods = admin_->Request("GET", StrCat("/api/v1/namespaces/", namespace_, "/pods"));
      if (pods.ok() && pods->body.find("\"phase\":\"Running\"") != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
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
  // The image ran by tag; the attempt says which one it was, as the kubelet resolved it.
  EXPECT_THAT(train.attempts(0).image_id(), HasSubstr("sha256:"));
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

TEST_F(KubernetesPipelineTest, SecretEnvComesFromTheNamespacesSecretsAndIsRedacted) {
  const std::string password = StrCat("pw-", ::getpid(), "-", NowMs(), "-k8s");
  auto created = admin_->Request(
      "POST", StrCat("/api/v1/namespaces/", namespace_, "/secrets"),
      StrCat(R"({"apiVersion":"v1","kind":"Secret","metadata":{"name":"warehouse"},)",
             R"("stringData":{"password":")", password, R"("}})"));
  ASSERT_TRUE(created.ok() && created->http_code == 201) << created.status();
  auto server = StartServer();
  auto stub = Connect(*server);
  constexpr char kSecretPipeline[] = R"(name: secret
steps:
  - name: use
    secretEnv: {PW: {secret: warehouse, key: password}}
    outputs: {hash: hash.txt}
    command: [/bin/sh, -c, 'printf %s "$PW" | sha256sum | cut -c1-64 > {{outputs.hash}}; echo "pw $PW"']
)";
  v1::PipelineRun run = WaitForEnd(stub.get(), Submit(stub.get(), kSecretPipeline).id());
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  // The pod had the value (through the Job's secretKeyRef: the scheduler never wrote it there).
  EXPECT_EQ(run.steps(0).output_digests().at("hash"),
            DigestHex(Sha256Of(DigestHex(Sha256Of(password)) + "\n")));
  auto logs = Cli({"pipeline", "logs", run.id(), "use"}, *server);
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("pw [redacted: PW]"));
  EXPECT_THAT(logs.out, ::testing::Not(HasSubstr(password)));
  // A Secret the namespace does not have: the step fails naming it.
  std::string missing = kSecretPipeline;
  missing.replace(missing.find("secret: warehouse"), 17, "secret: nope");
  v1::PipelineRun failed = WaitForEnd(stub.get(), Submit(stub.get(), missing).id());
  ASSERT_EQ(failed.state(), v1::FAILED);
  EXPECT_THAT(failed.steps(0).message(), HasSubstr("secret nope is not in Kubernetes Secrets in "
                                                   "namespace " +
                                                   namespace_));
  server.reset();
  std::ifstream log(dir_.path() + "/data.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_THAT(text.str(), ::testing::Not(HasSubstr(password)));
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
  ASSERT_TRUE(PodRuns()) << "no pod ran within 60 s";
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

// The Kueue test's objects: cluster-scoped ones named after the test's namespace.
constexpr char kKueueApi[] = "/apis/kueue.x-k8s.io/v1beta2";

TEST_F(KubernetesPipelineTest, KueueAdmitsAQueuesStepsAndAPreemptedAttemptIsRetried) {
  if (Env("MLOPS_K8S_KUEUE").empty()) {
    GTEST_SKIP() << "needs Kueue in the cluster: tools/k8s/kueue.sh DIR, then source DIR/env";
  }
  const std::string cq = namespace_;
  auto post = [&](const std::string& path, const std::string& body) {
    auto created = admin_->Request("POST", path, body);
    ASSERT_TRUE(created.ok()) << created.status();
    ASSERT_EQ(created->http_code, 201) << path << ": " << created->body;
  };
  post(StrCat(kKueueApi, "/resourceflavors"),
       StrCat(R"({"apiVersion":"kueue.x-k8s.io/v1beta2","kind":"ResourceFlavor",)",
              R"("metadata":{"name":")", cq, R"("}})"));
  // One cpu of quota: one step at a time; a lower priority gives way to a higher one.
  post(StrCat(kKueueApi, "/clusterqueues"),
       StrCat(R"({"apiVersion":"kueue.x-k8s.io/v1beta2","kind":"ClusterQueue",)",
              R"("metadata":{"name":")", cq, R"("},"spec":{"namespaceSelector":{},)",
              R"("preemption":{"withinClusterQueue":"LowerPriority"},)",
              R"("resourceGroups":[{"coveredResources":["cpu"],"flavors":[{"name":")", cq,
              R"(","resources":[{"name":"cpu","nominalQuota":"1"}]}]}]}})"));
  post(StrCat(kKueueApi, "/namespaces/", namespace_, "/localqueues"),
       StrCat(R"({"apiVersion":"kueue.x-k8s.io/v1beta2","kind":"LocalQueue",)",
              R"("metadata":{"name":"train"},"spec":{"clusterQueue":")", cq, R"("}})"));
  post(StrCat(kKueueApi, "/workloadpriorityclasses"),
       StrCat(R"({"apiVersion":"kueue.x-k8s.io/v1beta2","kind":"WorkloadPriorityClass",)",
              R"("metadata":{"name":")", cq, R"("},"value":1000})"));
  struct Cleanup {
    std::shared_ptr<scheduler::k8s::KubeClient> admin;
    std::string cq;
    ~Cleanup() {
      for (const char* kind : {"workloadpriorityclasses", "clusterqueues", "resourceflavors"}) {
        (void)admin->Request("DELETE", StrCat(kKueueApi, "/", kind, "/", cq));
      }
    }
  } cleanup{admin_, cq};

  auto server = StartServer();
  auto stub = Connect(*server);
  // mlops's own limits of this queue would hold one of the two steps back (and refuse a step of
  // 1 cpu outright): with Kueue they do not apply.
  auto put =
      Cli({"queues", "put", "teams", "--max-concurrency", "1", "--cpu", "500m", "--kueue", "train"},
          *server);
  ASSERT_EQ(put.exit_code, 0) << put.err;
  auto listed = Cli({"queues", "list"}, *server);
  EXPECT_THAT(listed.out, HasSubstr("train"));

  const std::string pair = Submit(stub.get(), R"(name: pair
steps:
  - name: a
    resources: {cpu: 1}
    command: [/bin/sh, -c, 'sleep 3']
  - name: b
    resources: {cpu: 1}
    command: [/bin/sh, -c, 'sleep 3']
)",
                                  "teams")
                               .id();
  // Both Jobs exist at once: Kueue, not mlops, holds the second one (suspended) back.
  int most = 0;
  for (int i = 0; i < 600 && most < 2; ++i) {
    most = std::max(most, JobCount());
    if (most < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(most, 2);
  v1::PipelineRun run = WaitForEnd(stub.get(), pair);
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  const v1::Attempt& a = run.steps(0).attempts(0);
  const v1::Attempt& b = run.steps(1).attempts(0);
  // One cpu of quota: Kueue ran them one after the other (start times are the Jobs' own).
  EXPECT_TRUE(a.end_time_ms() <= b.start_time_ms() + 1000 ||
              b.end_time_ms() <= a.start_time_ms() + 1000)
      << "a: " << a.DebugString() << "b: " << b.DebugString();

  // Preemption: a step runs; a Job of a higher priority comes to the same ClusterQueue; Kueue
  // suspends the step's Job to make room. The attempt is LOST (not the step's failure) and the
  // retry runs once the other Job is done.
  const std::string id = Submit(stub.get(), R"(name: preempted
steps:
  - name: victim
    resources: {cpu: 1}
    retries: {limit: 0}
    outputs: {o: o.txt}
    command: [/bin/sh, -c, 'echo started; sleep 6; echo done > {{outputs.o}}']
)",
                                "teams")
                             .id();
  ASSERT_TRUE(PodRuns()) << "no pod ran within 60 s";
  post(StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs"),
       StrCat(R"({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"urgent","labels":{)",
              R"("kueue.x-k8s.io/queue-name":"train","kueue.x-k8s.io/priority-class":")", cq,
              R"("}},"spec":{"suspend":true,"backoffLimit":0,"template":{"spec":{)",
              R"("restartPolicy":"Never","containers":[{"name":"main",)",
              R"("image":"docker.io/mlops-k8s/busybox:1","imagePullPolicy":"Never",)",
              R"("command":["/bin/sh","-c","sleep 2"],)",
              R"("resources":{"requests":{"cpu":"1"},"limits":{"cpu":"1"}}}]}}}})"));
  run = WaitForEnd(stub.get(), id, 180);
  ASSERT_EQ(run.state(), v1::SUCCEEDED) << run.DebugString();
  const v1::StepRun& victim = run.steps(0);
  ASSERT_EQ(victim.attempts_size(), 2) << victim.DebugString();
  EXPECT_EQ(victim.attempts(0).outcome(), "LOST");
  std::cout << "kueue: attempt 1 " << victim.attempts(0).message() << "\n";
  EXPECT_THAT(victim.attempts(0).message(),
              HasSubstr("preempted: Kueue suspended the running Job"));
  EXPECT_THAT(victim.attempts(0).message(), HasSubstr("Preempted"))
      << "the Workload's eviction reason";
  EXPECT_EQ(victim.attempts(1).outcome(), "SUCCEEDED");
  EXPECT_EQ(victim.output_digests().at("o"), DigestHex(Sha256Of("done\n")));
  auto urgent =
      admin_->Request("GET", StrCat("/apis/batch/v1/namespaces/", namespace_, "/jobs/urgent"));
  ASSERT_TRUE(urgent.ok());
  EXPECT_THAT(urgent->body, HasSubstr("\"type\":\"Complete\""));
  // The retry started after the urgent Job had its turn.
  EXPECT_GE(victim.attempts(1).start_time_ms(), victim.attempts(0).end_time_ms());
}

// Kubernetes service-account tokens are JWTs: the cluster's own JWKS (/openid/v1/jwks) and issuer
// (its OpenID discovery document) are all a server needs to accept them, with grants bound to the
// account's subject. A token requested for another audience is refused.
TEST_F(KubernetesPipelineTest, ServiceAccountTokensAuthenticateAgainstTheClustersJwks) {
  auto json_field = [](const std::string& json, const std::vector<std::string>& path) {
    google::protobuf::Struct object;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &object).ok()) << json;
    const google::protobuf::Value* value = nullptr;
    for (const std::string& key : path) {
      const auto& fields = value == nullptr ? object.fields() : value->struct_value().fields();
      auto it = fields.find(key);
      if (it == fields.end()) return std::string();
      value = &it->second;
    }
    return value == nullptr ? std::string() : value->string_value();
  };
  auto sa = admin_->Request("POST", StrCat("/api/v1/namespaces/", namespace_, "/serviceaccounts"),
                            R"({"metadata": {"name": "trainer"}})");
  ASSERT_TRUE(sa.ok() && sa->http_code == 201) << sa.status();
  auto token_for = [&](const std::string& audience) {
    auto response = admin_->Request(
        "POST", StrCat("/api/v1/namespaces/", namespace_, "/serviceaccounts/trainer/token"),
        StrCat(R"({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",)",
               R"( "spec": {"audiences": [")", audience, R"("], "expirationSeconds": 600}})"));
    EXPECT_TRUE(response.ok() && response->http_code == 201) << response.status();
    return response.ok() ? json_field(response->body, {"status", "token"}) : "";
  };
  std::string token = token_for("mlops"), elsewhere = token_for("elsewhere");
  ASSERT_FALSE(token.empty());
  // As docs/security.md tells operators to (the API server answers this path only to an Accept
  // of application/jwk-set+json, which kubectl sends).
  auto jwks =
      testing::RunCommand({Env("MLOPS_K8S_BIN") + "/kubectl", "get", "--raw", "/openid/v1/jwks"},
                          {"KUBECONFIG=" + Env("KUBECONFIG")});
  ASSERT_EQ(jwks.exit_code, 0) << jwks.err;
  auto discovery = admin_->Request("GET", "/.well-known/openid-configuration");
  ASSERT_TRUE(discovery.ok() && discovery->http_code == 200) << discovery.status();
  std::string issuer = json_field(discovery->body, {"issuer"});
  ASSERT_FALSE(issuer.empty()) << discovery->body;
  std::ofstream(dir_.path() + "/jwks.json") << jwks.out;
  std::ofstream(dir_.path() + "/bindings.yaml")
      << "bindings:\n  - subject: system:serviceaccount:" << namespace_
      << ":trainer\n    grants: {default: editor}\n";

  testing::ChildServer server(
      MLOPS_SERVER_BIN, dir_.path() + "/data",
      {"--oidc_jwks=" + dir_.path() + "/jwks.json", "--oidc_issuer=" + issuer,
       "--oidc_audience=mlops", "--auth_bindings_file=" + dir_.path() + "/bindings.yaml"});
  server.Start();
  auto as = [&](const std::string& bearer, std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server.address()});
    return testing::RunCommand(args, {"MLOPS_TOKEN=" + bearer});
  };
  auto created = as(token, {"experiments", "create", "from-a-pod"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  auto refused = as(elsewhere, {"experiments", "list"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("not for audience \"mlops\""));
}

}  // namespace
}  // namespace mlops
