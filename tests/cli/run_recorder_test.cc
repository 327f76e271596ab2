// The run recorder against real metadata and artifact services in this process: a run records
// its code, params, inputs, outputs, logs, metrics and lineage; a reproduction from the recorded
// code and data comes out identical; failures of the command or of a service are reported as
// outcomes or statuses (the process never exits), and a run whose recording broke off is FAILED.
#include "tools/cli/run_recorder.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "services/artifact/artifact_component.h"
#include "services/common/subprocess.h"
#include "services/metadata/metadata_component.h"
#include "tests/testing/testing.h"

namespace mlops::cli {
namespace {

namespace mv1 = ::mlops::metadata::v1;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

void Git(const std::string& dir, std::vector<std::string> args) {
  SpawnOptions options;
  options.argv = {"git", "-c", "user.name=t", "-c", "user.email=t@example.com"};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.cwd = dir;
  auto output = RunAndCapture(options);
  ASSERT_TRUE(output.ok() && output->exit_code == 0) << "git " << args[0] << ": " << output->err;
}

class RunRecorderTest : public ::testing::Test {
 protected:
  RunRecorderTest()
      : server_({metadata::OpenMetadataComponent, artifact::OpenArtifactComponent},
                /*metrics=*/false),
        repo_(dir_.path() + "/repo") {
    endpoints_.metadata = endpoints_.artifact = server_.address();
  }

  void SetUp() override {
    fs::create_directories(repo_ + "/train");
    // The model depends on the param, the input and the script; the metric on the param.
    Write(repo_ + "/train/train.sh",
          "#!/bin/sh\nset -e\necho \"training lr=$MLOPS_PARAM_LR\"\n"
          "cat \"$MLOPS_INPUT_DATA/rows.csv\" model.txt > model.bin\n"
          "echo \"lr=$MLOPS_PARAM_LR\" >> model.bin\n"
          "echo \"{\\\"loss\\\": $MLOPS_PARAM_LR}\" > metrics.json\n");
    fs::permissions(repo_ + "/train/train.sh", fs::perms::owner_all, fs::perm_options::add);
    Write(repo_ + "/train/model.txt", "model v1\n");
    Write(repo_ + "/train/requirements.txt", "numpy==1.26.4\n");
    Git(repo_, {"init", "-q", "-b", "main"});
    Git(repo_, {"add", "."});
    Git(repo_, {"commit", "-q", "-m", "first"});
    // The input dataset, version v1.
    fs::create_directories(dir_.path() + "/rows");
    Write(dir_.path() + "/rows/rows.csv", "a,b\n1,2\n");
    artifact::ArtifactClient artifacts(server_.NewChannel());
    ASSERT_TRUE(artifacts.Push(dir_.path() + "/rows", "rows", {"v1"}, "rows", nullptr).ok());
  }

  RunPlan Plan() {
    RunPlan plan;
    plan.experiment = "recorder";
    plan.name = "train";
    plan.params = {{"lr", "0.5"}};
    plan.inputs = {{"data", "rows@v1"}};
    plan.outputs = {"model.bin"};
    plan.command = {"./train.sh"};
    plan.work_dir = fs::canonical(repo_ + "/train").string();
    return plan;
  }

  RunRecorder Recorder() {
    return RunRecorder(server_.NewChannel(), server_.NewChannel(), endpoints_, log_);
  }

  testing::TempDir dir_;
  testing::InProcessServer server_;
  const std::string repo_;
  Endpoints endpoints_;
  std::ostringstream log_;
};

TEST_F(RunRecorderTest, RecordsEverythingAndAReproductionOfADirtyTreeIsIdentical) {
  // An uncommitted change that matters: the reproduction must apply it to come out the same.
  Write(repo_ + "/train/model.txt", "model v2\n");
  RunRecorder recorder = Recorder();
  auto outcome = recorder.Execute(Plan());
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0) << outcome->message;
  const mv1::Run& run = outcome->run;
  EXPECT_EQ(run.status(), mv1::FINISHED);
  EXPECT_EQ(run.params().at("lr"), "0.5");
  EXPECT_TRUE(run.source().code().dirty());
  EXPECT_FALSE(run.source().code().diff_digest().empty());
  EXPECT_EQ(run.source().code().commit().size(), 40u);
  EXPECT_EQ(run.tags().at("mlops.repo_path"), "train");
  EXPECT_EQ(run.tags().at("mlops.outputs"), "model.bin");
  EXPECT_EQ(run.tags().at("mlops.exit_code"), "0");
  EXPECT_THAT(run.tags().at("mlops.input.data"), HasSubstr("rows@"));
  EXPECT_TRUE(run.source().dependency_digests().contains("train/requirements.txt"));
  ASSERT_EQ(run.source().inputs_size(), 1);
  EXPECT_EQ(run.source().inputs(0).name(), "rows");
  EXPECT_EQ(outcome->metrics.at("loss"), 0.5);
  ASSERT_TRUE(outcome->outputs.contains("model.bin"));
  EXPECT_EQ(run.tags().at("mlops.output.model.bin"), outcome->outputs.at("model.bin"));
  // The logs are blobs holding what the command printed.
  artifact::ArtifactClient artifacts(server_.NewChannel());
  auto stdout_log = artifacts.DownloadBytes(run.tags().at("mlops.stdout"));
  ASSERT_TRUE(stdout_log.ok()) << stdout_log.status();
  EXPECT_EQ(*stdout_log, "training lr=0.5\n");
  EXPECT_THAT(log_.str(), HasSubstr("mlops: run " + run.id()));
  EXPECT_THAT(log_.str(), HasSubstr("the working tree is dirty"));
  // The lineage execution links the dataset to the output.
  auto lineage = mv1::LineageService::NewStub(server_.NewChannel());
  mv1::GetNodeRequest get;
  get.set_external_id("run/" + run.id());
  mv1::Execution execution;
  grpc::ClientContext context;
  ASSERT_TRUE(lineage->GetExecution(&context, get, &execution).ok());
  EXPECT_EQ(execution.run_id(), run.id());
  EXPECT_EQ(execution.state(), mv1::Execution::COMPLETE);

  // Reproduced from the recorded commit plus the recorded change, with the recorded input.
  Write(repo_ + "/train/model.txt", "model v3\n");  // what is here now does not matter
  auto again = recorder.Reproduce(run, fs::canonical(repo_).string(), 1e-6, /*keep=*/false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->verdict.verdict, "identical");
  EXPECT_EQ(again->again.outputs.at("model.bin"), outcome->outputs.at("model.bin"));
  EXPECT_EQ(again->again.run.tags().at("mlops.reproduction_of"), run.id());
  auto original = recorder.GetRun(run.id());
  ASSERT_TRUE(original.ok());
  EXPECT_EQ(original->tags().at("mlops.reproduced"), "identical");
  EXPECT_EQ(original->tags().at("mlops.reproduced_by"), again->again.run.id());
  auto reproduction = recorder.GetRun(again->again.run.id());
  ASSERT_TRUE(reproduction.ok());
  EXPECT_EQ(reproduction->tags().at("mlops.verdict"), "identical");
  // The scratch worktree is gone.
  EXPECT_FALSE(fs::exists(fs::temp_directory_path() / ("mlops-reproduce-" + run.id())));
}

TEST_F(RunRecorderTest, AFailingCommandIsAnOutcomeNotAnError) {
  RunPlan plan = Plan();
  plan.command = {"/bin/sh", "-c", "echo oops >&2; exit 3"};
  auto outcome = Recorder().Execute(plan);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 3);
  EXPECT_EQ(outcome->message, "exit code 3");
  EXPECT_EQ(outcome->run.status(), mv1::FAILED);
  EXPECT_EQ(outcome->run.tags().at("mlops.exit_code"), "3");
  EXPECT_EQ(outcome->run.tags().at("mlops.message"), "exit code 3");
  // A command that does not exist: 127, the reason kept in its stderr log.
  plan.command = {"./no-such-program"};
  auto missing = Recorder().Execute(plan);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->exit_code, 127);
  EXPECT_EQ(missing->run.status(), mv1::FAILED);
  // A declared output that was not written fails the run.
  plan.command = {"/bin/true"};
  plan.outputs = {"nothing.bin"};
  auto unwritten = Recorder().Execute(plan);
  ASSERT_TRUE(unwritten.ok()) << unwritten.status();
  EXPECT_EQ(unwritten->exit_code, 1);
  EXPECT_EQ(unwritten->run.tags().at("mlops.message"),
            "declared output nothing.bin was not written");
}

TEST_F(RunRecorderTest, AnInputThatDoesNotResolveRecordsNothing) {
  RunPlan plan = Plan();
  plan.inputs = {{"data", "nowhere@v1"}};
  auto outcome = Recorder().Execute(plan);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound) << outcome.status();
  EXPECT_THAT(outcome.status().message(), HasSubstr("input data (nowhere@v1)"));
  EXPECT_THAT(log_.str(), ::testing::Not(HasSubstr("mlops: run ")));
  plan.inputs = {{"data", "rows@v9"}};
  EXPECT_EQ(Recorder().Execute(plan).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RunRecorderTest, AServiceThatIsGoneIsAStatusAndABrokenRecordingFailsTheRun) {
  // Nothing listens: UNAVAILABLE, returned (the process goes on).
  int port = testing::FreePort();
  auto nowhere =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  RunRecorder unreachable(nowhere, nowhere, endpoints_, log_);
  RunPlan plan = Plan();
  plan.inputs.clear();
  auto outcome = unreachable.Execute(plan);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kUnavailable) << outcome.status();

  // The artifact service is missing once the run exists (a clean tree outside git, no lockfile,
  // no input: the logs are the first upload): the run is FAILED with the reason, not RUNNING.
  testing::InProcessServer metadata_only({metadata::OpenMetadataComponent}, /*metrics=*/false);
  RunRecorder broken(metadata_only.NewChannel(), metadata_only.NewChannel(), endpoints_, log_);
  fs::create_directories(dir_.path() + "/loose");
  plan.work_dir = fs::canonical(dir_.path() + "/loose").string();
  plan.outputs.clear();
  plan.command = {"/bin/true"};
  auto failed = broken.Execute(plan);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnimplemented) << failed.status();
  EXPECT_THAT(log_.str(), HasSubstr("not in a git repository"));
  auto runs = mv1::MetadataService::NewStub(metadata_only.NewChannel());
  mv1::GetExperimentByNameRequest by_name;
  by_name.set_name("recorder");
  mv1::Experiment experiment;
  grpc::ClientContext get_context;
  ASSERT_TRUE(runs->GetExperimentByName(&get_context, by_name, &experiment).ok());
  mv1::SearchRunsRequest search;
  search.add_experiment_ids(experiment.id());
  mv1::SearchRunsResponse found;
  grpc::ClientContext context;
  ASSERT_TRUE(runs->SearchRuns(&context, search, &found).ok());
  ASSERT_EQ(found.runs_size(), 1);
  EXPECT_EQ(found.runs(0).status(), mv1::FAILED);
  EXPECT_THAT(found.runs(0).tags().at("mlops.message"), HasSubstr("storing the stdout log"));
}

TEST_F(RunRecorderTest, AReproductionNeedsTheRecordedCommitInThisClone) {
  mv1::Run run;
  run.set_id("r1");
  EXPECT_THAT(ReproductionClone(run).status().message(), HasSubstr("recorded no command"));
  run.mutable_source()->add_command("./train.sh");
  EXPECT_THAT(ReproductionClone(run).status().message(), HasSubstr("recorded no git commit"));
  run.mutable_source()->mutable_code()->set_commit(std::string(40, 'a'));
  const fs::path cwd = fs::current_path();
  fs::current_path(repo_);
  auto missing = ReproductionClone(run);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("is not in this clone"));
  fs::current_path(dir_.path());
  EXPECT_THAT(ReproductionClone(run).status().message(), HasSubstr("inside a clone"));
  fs::current_path(cwd);
}

}  // namespace
}  // namespace mlops::cli
