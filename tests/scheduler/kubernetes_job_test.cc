// What the Kubernetes executor sends and how it reads answers, without a cluster: the Job of an
// attempt as JSON (names, labels, backoffLimit 0 written out, deadline, requests = limits, ranks
// of an Indexed Job, the pod template override, Kueue's label and suspension), API errors mapped
// to codes, kubeconfig files.
#include <google/protobuf/util/json_util.h>

#include <fstream>

#include "services/common/status.h"
#include "services/scheduler/kubernetes/kube_client.h"
#include "services/scheduler/kubernetes/kubernetes_executor.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler::k8s {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::HasSubstr;

LaunchSpec Spec() {
  LaunchSpec spec;
  spec.attempt_id = "0123abcd/train step/2";
  spec.argv = {"python", "train.py", "--lr", "0.1"};
  spec.env = {{"MLOPS_PIPELINE_RUN_ID", "0123abcd"}, {"MLOPS_STEP", "train step"}};
  spec.image = "registry.example/train@sha256:00ff";
  spec.resources.cpu_millis = 1500;
  spec.resources.memory_bytes = 1 << 30;
  spec.resources.gpus = 1;
  spec.timeout_ms = 90500;
  return spec;
}

// The Job as the API server would read it (fields mlops does not model are dropped).
absl::StatusOr<Job> Built(const LaunchSpec& spec, const KubernetesOptions& options) {
  ASSIGN_OR_RETURN(std::string json, BuildJob(spec, options, "ml"));
  Job job;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &job, parse).ok()) {
    return absl::InternalError("not a Job: " + json);
  }
  return job;
}

TEST(KubernetesJobTest, AnAttemptIsOneJobNamedByItsId) {
  KubernetesOptions options;
  options.wrap_steps = false;
  auto job = Built(Spec(), options);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->metadata().name(), JobName("0123abcd/train step/2"));
  EXPECT_EQ(job->metadata().name().size(), 46u);
  EXPECT_NE(JobName("0123abcd/train step/3"), job->metadata().name());
  EXPECT_EQ(job->metadata().namespace_(), "ml");
  EXPECT_EQ(job->metadata().labels().at("mlops.dev/scheduler"), "mlops");
  EXPECT_EQ(job->metadata().labels().at("mlops.dev/pipeline-run"), "0123abcd");
  EXPECT_EQ(job->metadata().labels().at("mlops.dev/project"), "default");
  // A run of another project: its id within the project, and the project, as labels (a label
  // value holds no '/').
  LaunchSpec in_vision = Spec();
  in_vision.env["MLOPS_PIPELINE_RUN_ID"] = "projects/vision/0123abcd";
  auto vision_job = Built(in_vision, options);
  ASSERT_TRUE(vision_job.ok()) << vision_job.status();
  EXPECT_EQ(vision_job->metadata().labels().at("mlops.dev/pipeline-run"), "0123abcd");
  EXPECT_EQ(vision_job->metadata().labels().at("mlops.dev/project"), "vision");
  EXPECT_EQ(vision_job->metadata().annotations().at("mlops.dev/pipeline-run-id"),
            "projects/vision/0123abcd");
  // "train step" is no label value: it is only in the annotations.
  EXPECT_FALSE(job->metadata().labels().contains("mlops.dev/step"));
  EXPECT_EQ(job->metadata().annotations().at("mlops.dev/step-name"), "train step");
  EXPECT_EQ(job->metadata().annotations().at("mlops.dev/attempt-id"), "0123abcd/train step/2");
  const std::string json = *BuildJob(Spec(), options, "ml");
  EXPECT_THAT(json, HasSubstr("\"backoffLimit\":0"));            // written although it is zero
  EXPECT_THAT(json, HasSubstr("\"activeDeadlineSeconds\":91"));  // a number, rounded up
  EXPECT_THAT(json, HasSubstr("\"ttlSecondsAfterFinished\":86400"));
  EXPECT_THAT(json, HasSubstr("\"restartPolicy\":\"Never\""));
  const Container& main = job->spec().template_().spec().containers(0);
  EXPECT_EQ(main.image(), "registry.example/train@sha256:00ff");
  EXPECT_EQ(main.command(0), "python");
  EXPECT_EQ(main.args_size(), 3);
  for (const auto* side : {&main.resources().requests(), &main.resources().limits()}) {
    EXPECT_EQ(side->at("cpu"), "1500m");
    EXPECT_EQ(side->at("memory"), "1073741824");
    EXPECT_EQ(side->at("nvidia.com/gpu"), "1");
  }
  EXPECT_EQ(job->spec().template_().metadata().labels().at("mlops.dev/attempt"),
            job->metadata().name().substr(6));
  EXPECT_FALSE(job->spec().has_completions());
}

TEST(KubernetesJobTest, SecretEnvIsASecretKeyRefNeverAValue) {
  LaunchSpec spec = Spec();
  spec.secret_env = {{"DB_PASSWORD", {"warehouse", "password"}}};
  auto job = Built(spec, KubernetesOptions());
  ASSERT_TRUE(job.ok()) << job.status();
  const Container& main = job->spec().template_().spec().containers(0);
  const EnvVar* found = nullptr;
  for (const EnvVar& var : main.env()) {
    if (var.name() == "DB_PASSWORD") found = &var;
  }
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->value(), "");
  EXPECT_EQ(found->value_from().secret_key_ref().name(), "warehouse");
  EXPECT_EQ(found->value_from().secret_key_ref().key(), "password");
  EXPECT_THAT(*BuildJob(spec, KubernetesOptions(), "ml"),
              HasSubstr(R"("valueFrom":{"secretKeyRef":{)"));
}

TEST(KubernetesJobTest, ReplicasAreAnIndexedJobWithTorchrunRanks) {
  LaunchSpec spec = Spec();
  spec.replicas = 3;
  KubernetesOptions options;
  auto job = Built(spec, options);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->spec().completion_mode(), "Indexed");
  EXPECT_EQ(job->spec().completions(), 3);
  EXPECT_EQ(job->spec().parallelism(), 3);
  EXPECT_EQ(job->spec().template_().spec().subdomain(), job->metadata().name());
  std::map<std::string, const EnvVar*> env;
  for (const EnvVar& var : job->spec().template_().spec().containers(0).env())
    env[var.name()] = &var;
  EXPECT_EQ(env.at("WORLD_SIZE")->value(), "3");
  EXPECT_EQ(env.at("MASTER_PORT")->value(), "29500");
  EXPECT_EQ(env.at("MASTER_ADDR")->value(),
            job->metadata().name() + "-0." + job->metadata().name() + ".ml.svc.cluster.local");
  EXPECT_THAT(env.at("RANK")->value_from().field_ref().field_path(),
              HasSubstr("job-completion-index"));
}

TEST(KubernetesJobTest, AKueueQueuesJobIsCreatedSuspendedWithItsLocalQueue) {
  KubernetesOptions options;
  auto plain = Built(Spec(), options);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->spec().has_suspend());
  EXPECT_FALSE(plain->metadata().labels().contains("kueue.x-k8s.io/queue-name"));
  LaunchSpec spec = Spec();
  spec.kueue_local_queue = "team-a";
  auto job = Built(spec, options);
  ASSERT_TRUE(job.ok());
  EXPECT_TRUE(job->spec().suspend());
  EXPECT_EQ(job->metadata().labels().at("kueue.x-k8s.io/queue-name"), "team-a");
  // On the Job only: Kueue's pod integration must not take its pods for plain pods of its own.
  EXPECT_FALSE(job->spec().template_().metadata().labels().contains("kueue.x-k8s.io/queue-name"));
  // Kueue accounts quota by the pods' requests: they are there, equal to the limits.
  EXPECT_EQ(job->spec().template_().spec().containers(0).resources().requests().at("cpu"), "1500m");
}

TEST(KubernetesJobTest, PodTemplatesAreLaidUnderWhatMlopsSets) {
  KubernetesOptions options;
  options.wrap_steps = false;
  options.service_account = "trainer";
  options.pod_template_json =
      R"({"spec": {"nodeSelector": {"pool": "gpu"}, "hostNetwork": true,
          "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
          "affinity": {"nodeAffinity": {"x": 1}},
          "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "corpus"}}],
          "containers": [{"imagePullPolicy": "Never",
                          "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                          "env": [{"name": "A", "value": "from-scheduler"},
                                  {"name": "MLOPS_STEP", "value": "overridden?"}],
                          "resources": {"limits": {"cpu": "64", "example.com/fpga": "1"}}},
                         {"name": "sidecar", "image": "proxy:1"}]}})";
  LaunchSpec spec = Spec();
  spec.pod_template_json =
      R"({"metadata": {"annotations": {"team": "vision"}},
          "spec": {"nodeSelector": {"zone": "b"}, "priorityClassName": "high",
                   "containers": [{"name": "step", "env": [{"name": "A", "value": "from-step"}]}]}})";
  spec.queue_pod_template_json =
      R"({"spec": {"nodeSelector": {"pool": "queue-pool", "q": "1"}, "priorityClassName": "low"}})";
  auto job = Built(spec, options);
  ASSERT_TRUE(job.ok()) << job.status();
  const PodSpec& pod = job->spec().template_().spec();
  EXPECT_EQ(pod.node_selector().at("pool"), "queue-pool") << "the queue's over the scheduler's";
  EXPECT_EQ(pod.node_selector().at("q"), "1");
  EXPECT_EQ(pod.node_selector().at("zone"), "b");
  EXPECT_TRUE(pod.host_network());
  EXPECT_EQ(pod.service_account_name(), "trainer");
  EXPECT_EQ(pod.tolerations(0).key(), "gpu");
  EXPECT_EQ(pod.restart_policy(), "Never");
  ASSERT_EQ(pod.containers_size(), 2);
  const Container& main = pod.containers(0);
  EXPECT_EQ(main.name(), "step");
  EXPECT_EQ(main.image_pull_policy(), "Never");
  EXPECT_EQ(main.image(), "registry.example/train@sha256:00ff");
  EXPECT_EQ(main.command(0), "python");
  EXPECT_EQ(main.volume_mounts(0).mount_path(), "/data");
  std::map<std::string, std::string> env;
  for (const EnvVar& var : main.env()) env[var.name()] = var.value();
  EXPECT_EQ(env.at("A"), "from-step");
  EXPECT_EQ(env.at("MLOPS_STEP"), "train step") << "what mlops sets wins";
  EXPECT_EQ(main.resources().limits().at("cpu"), "1500m");
  EXPECT_EQ(main.resources().limits().at("example.com/fpga"), "1");
  EXPECT_EQ(pod.containers(1).name(), "sidecar");
  EXPECT_EQ(job->spec().template_().metadata().annotations().at("team"), "vision");
  EXPECT_EQ(job->spec().template_().metadata().labels().at("mlops.dev/scheduler"), "mlops");
  // Fields mlops does not model pass through to the API server.
  const std::string json = *BuildJob(spec, options, "ml");
  EXPECT_THAT(json, HasSubstr("\"persistentVolumeClaim\":{\"claimName\":\"corpus\"}"));
  EXPECT_THAT(json, HasSubstr("\"priorityClassName\":\"high\"")) << "the step's over the queue's";
  EXPECT_THAT(json, HasSubstr("\"nodeAffinity\""));
  EXPECT_THAT(json, HasSubstr("\"backoffLimit\":0"));

  options.pod_template_json = R"({"spec": {"nodeSelector": 3}})";
  EXPECT_THAT(BuildJob(Spec(), options, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--k8s_pod_template"));
  options.pod_template_json = "[1]";
  EXPECT_THAT(BuildJob(Spec(), options, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--k8s_pod_template"));
  options.pod_template_json.clear();
  spec.queue_pod_template_json = R"({"spec": {"nodeSelector": ["pool"]}})";
  EXPECT_THAT(BuildJob(spec, options, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "the queue's pod template"));
  spec.queue_pod_template_json.clear();
  spec.pod_template_json = R"({"spec": {"containers": [{"name": "step", "env": "A=1"}]}})";
  EXPECT_THAT(BuildJob(spec, options, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "the step's pod template"));
  LaunchSpec no_image = Spec();
  no_image.image.clear();
  EXPECT_THAT(BuildJob(no_image, KubernetesOptions{}, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no image"));
  LaunchSpec no_command = Spec();
  no_command.argv.clear();
  EXPECT_THAT(BuildJob(no_command, KubernetesOptions{}, "ml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no command"));
}

TEST(KubernetesJobTest, StepsRunUnderMlopsStepRunFromTheStepImage) {
  KubernetesOptions options;
  options.step_image = "mlops/step:1";
  auto job = Built(Spec(), options);
  ASSERT_TRUE(job.ok()) << job.status();
  const PodSpec& pod = job->spec().template_().spec();
  const Container& main = pod.containers(0);
  // Through the step image's own loader and libraries: the user's image needs none of them.
  EXPECT_THAT(std::vector<std::string>(main.command().begin(), main.command().end()),
              ::testing::ElementsAre("/mlops-tools/lib/ld-linux-x86-64.so.2", "--library-path",
                                     "/mlops-tools/lib", "/mlops-tools/bin/mlops"));
  EXPECT_THAT(std::vector<std::string>(main.args().begin(), main.args().end()),
              ::testing::ElementsAre("step", "run", "--", "python", "train.py", "--lr", "0.1"));
  EXPECT_EQ(main.image(), "registry.example/train@sha256:00ff");
  EXPECT_EQ(main.working_dir(), kRemoteWorkDir);
  ASSERT_EQ(pod.init_containers_size(), 1);
  EXPECT_EQ(pod.init_containers(0).image(), "mlops/step:1");
  ASSERT_EQ(pod.volumes_size(), 2);
  EXPECT_TRUE(pod.volumes(0).has_empty_dir());
  std::map<std::string, std::string> mounts;
  for (const VolumeMount& mount : main.volume_mounts()) mounts[mount.name()] = mount.mount_path();
  EXPECT_EQ(mounts.at("mlops-work"), kRemoteWorkDir);
  EXPECT_EQ(mounts.at("mlops-tools"), pod.init_containers(0).volume_mounts(0).mount_path());
  // Without a step image, the step's image brings mlops on its PATH.
  options.step_image.clear();
  job = Built(Spec(), options);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->spec().template_().spec().containers(0).command(0), "mlops");
  EXPECT_EQ(job->spec().template_().spec().init_containers_size(), 0);
}

TEST(KubernetesJobTest, ApiErrorsMapToCodes) {
  auto status = [](int code, const std::string& reason) {
    return StatusFromResponse(
        {code, R"({"kind":"Status","status":"Failure","message":"jobs \"x\" is bad","reason":")" +
                   reason + R"(","code":)" + std::to_string(code) + "}"},
        "POST jobs");
  };
  EXPECT_THAT(status(404, "NotFound"), StatusIs(absl::StatusCode::kNotFound, "jobs \"x\" is bad"));
  EXPECT_THAT(status(409, "AlreadyExists"), StatusIs(absl::StatusCode::kAlreadyExists, ""));
  EXPECT_THAT(status(409, "Conflict"), StatusIs(absl::StatusCode::kAborted, ""));
  EXPECT_THAT(status(403, "Forbidden"), StatusIs(absl::StatusCode::kPermissionDenied, ""));
  EXPECT_THAT(status(401, "Unauthorized"), StatusIs(absl::StatusCode::kUnauthenticated, ""));
  EXPECT_THAT(status(410, "Expired"), StatusIs(absl::StatusCode::kOutOfRange, ""));
  EXPECT_THAT(status(422, "Invalid"), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(status(429, "TooManyRequests"), StatusIs(absl::StatusCode::kResourceExhausted, ""));
  EXPECT_THAT(status(503, "ServiceUnavailable"), StatusIs(absl::StatusCode::kUnavailable, ""));
  EXPECT_THAT(StatusFromResponse({500, "not json"}, "GET x"),
              StatusIs(absl::StatusCode::kUnavailable, "not json"));
  EXPECT_TRUE(StatusFromResponse({201, "{}"}, "POST").ok());
}

TEST(KubernetesJobTest, KubeconfigCurrentContextAndInCluster) {
  testing::TempDir dir;
  std::ofstream(dir.path() + "/config") << R"(apiVersion: v1
kind: Config
current-context: b
clusters:
- name: one
  cluster: {server: "https://10.0.0.1:6443", certificate-authority: ca.crt}
users:
- name: alice
  user: {tokenFile: /run/token}
contexts:
- name: a
  context: {cluster: nowhere, user: nobody}
- name: b
  context: {cluster: one, user: alice, namespace: ml}
)";
  auto config = LoadKubeconfig(dir.path() + "/config");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server, "https://10.0.0.1:6443");
  EXPECT_EQ(config->ca_file, dir.path() + "/ca.crt");  // relative to the kubeconfig
  EXPECT_EQ(config->token_file, "/run/token");
  EXPECT_EQ(config->namespace_name, "ml");
  std::ofstream(dir.path() + "/broken") << "current-context: a\ncontexts: []\n";
  EXPECT_THAT(LoadKubeconfig(dir.path() + "/broken").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "context a is not defined"));
  EXPECT_THAT(LoadKubeconfig(dir.path() + "/missing").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, ""));
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THAT(InClusterConfig(dir.path()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "not in a Kubernetes pod"));
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  std::ofstream(dir.path() + "/token") << "abc\n";
  std::ofstream(dir.path() + "/namespace") << "team-a";
  auto in_cluster = InClusterConfig(dir.path());
  ASSERT_TRUE(in_cluster.ok()) << in_cluster.status();
  EXPECT_EQ(in_cluster->server, "https://10.96.0.1:443");
  EXPECT_EQ(in_cluster->namespace_name, "team-a");
  EXPECT_EQ(in_cluster->ca_file, dir.path() + "/ca.crt");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
}

}  // namespace
}  // namespace mlops::scheduler::k8s
