// Authentication end to end with the built programs: `mlops auth token create` writes the token
// file a real mlops-server reads; the CLI presents tokens (MLOPS_TOKEN, --token-file) and each is
// held to its role; the server's own in-process calls (a pipeline's steps recorded in metadata,
// outputs stored in artifact) pass; a server listening beyond loopback needs authentication or
// --insecure_allow_unauthenticated; JWTs signed by a JWKS's keys authenticate with the grants of a
// bindings file.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "absl/time/clock.h"
#include "tests/testing/jwt_testing.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Trim(const std::string& text) {
  size_t end = text.find_last_not_of("\n ");
  return end == std::string::npos ? "" : text.substr(0, end + 1);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class AuthCliTest : public ::testing::Test {
 protected:
  testing::CommandResult Create(const std::vector<std::string>& more) {
    std::vector<std::string> argv = {MLOPS_CLI_BIN,       "auth", "token", "create",
                                     "--auth-token-file", tokens_};
    argv.insert(argv.end(), more.begin(), more.end());
    return testing::RunCommand(argv);
  }
  testing::CommandResult Mlops(const std::string& address, std::vector<std::string> args,
                               const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", address});
    return testing::RunCommand(args, env);
  }

  // A new token for `subject` with `grant`, as the environment entry that presents it.
  std::string TokenEnv(const std::string& subject, const std::string& grant) {
    auto created = Create({"--subject", subject, "--grant", grant});
    EXPECT_EQ(created.exit_code, 0) << created.err;
    return "MLOPS_TOKEN=" + Trim(created.out);
  }
  // `mlops` against `server` as `who` (a TokenEnv), with more environment.
  testing::CommandResult As(const testing::ChildServer& server, const std::string& who,
                            std::vector<std::string> args, std::vector<std::string> env = {}) {
    env.push_back(who);
    return Mlops(server.address(), std::move(args), env);
  }

  testing::TempDir dir_;
  std::string tokens_ = dir_.path() + "/tokens.yaml";
};

TEST_F(AuthCliTest, TokensOpenTheServerToTheirRolesOnly) {
  auto editor = Create({"--subject", "ed", "--grant", "default=editor"});
  ASSERT_EQ(editor.exit_code, 0) << editor.err;
  std::string editor_token = Trim(editor.out);
  ASSERT_EQ(editor_token.rfind("mlops_", 0), 0u) << editor.out;
  EXPECT_THAT(editor.err, HasSubstr("shown once"));
  // --output is a global flag: anywhere on the line.
  auto viewer = Create({"--subject", "vi", "--grant", "default=viewer", "--output", "json"});
  ASSERT_EQ(viewer.exit_code, 0) << viewer.err;
  size_t at = viewer.out.find("\"token\":\"") + 9;
  std::string viewer_token = viewer.out.substr(at, viewer.out.find('"', at) - at);
  EXPECT_THAT(viewer.out, HasSubstr("\"subject\":\"vi\""));
  auto admin = Create({"--subject", "boss", "--grant", "default=admin"});
  ASSERT_EQ(admin.exit_code, 0) << admin.err;
  std::string admin_token = Trim(admin.out);
  std::string file = ReadAll(tokens_);
  EXPECT_THAT(file, Not(HasSubstr(editor_token)));
  EXPECT_THAT(file, Not(HasSubstr(viewer_token)));

  testing::ChildServer server(MLOPS_SERVER_BIN, dir_.path() + "/data",
                              {"--auth_token_file=" + tokens_});
  server.Start();
  auto none = Mlops(server.address(), {"experiments", "create", "e1"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_THAT(none.err, HasSubstr("UNAUTHENTICATED"));
  auto denied =
      Mlops(server.address(), {"experiments", "create", "e1"}, {"MLOPS_TOKEN=" + viewer_token});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(denied.err, HasSubstr("vi may not call"));
  auto created =
      Mlops(server.address(), {"experiments", "create", "e1"}, {"MLOPS_TOKEN=" + editor_token});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  std::ofstream(dir_.path() + "/viewer.token") << viewer_token << "\n";
  auto listed = Mlops(server.address(),
                      {"--token-file", dir_.path() + "/viewer.token", "experiments", "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("e1"));
  EXPECT_EQ(
      Mlops(server.address(), {"--token-file", dir_.path() + "/missing", "experiments", "list"})
          .exit_code,
      2);

  // A pipeline: the scheduler records its steps in metadata and stores their outputs in
  // artifact through the server's own in-process calls, which carry its internal identity.
  std::string spec = dir_.path() + "/hello.yaml";
  std::ofstream(spec) << "name: hello\nsteps:\n  - name: say\n    command: [/bin/sh, -c, \"echo "
                         "hi > {{outputs.out}}\"]\n    outputs: {out: out.txt}\n";
  auto run = Mlops(server.address(), {"pipeline", "submit", spec, "--watch"},
                   {"MLOPS_TOKEN=" + editor_token});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_THAT(run.out + run.err, HasSubstr("SUCCEEDED"));
  auto runs = Mlops(server.address(), {"experiments", "list"}, {"MLOPS_TOKEN=" + viewer_token});
  EXPECT_THAT(runs.out, HasSubstr("hello"));

  // The audit log of the session: who changed what, refusals included; the pipeline's own
  // records made by the server itself; reads absent.
  auto audit =
      Mlops(server.address(), {"audit", "list", "--max", "1000"}, {"MLOPS_TOKEN=" + admin_token});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("CreateExperiment"));
  EXPECT_THAT(audit.out, ::testing::ContainsRegex("ed +CreateExperiment +default +name=e1 +OK"));
  EXPECT_THAT(audit.out, ::testing::ContainsRegex(
                             "vi +CreateExperiment +default +name=e1 +PERMISSION_DENIED"));
  EXPECT_THAT(audit.out,
              ::testing::ContainsRegex("- +CreateExperiment +default +name=e1 +UNAUTHENTICATED"));
  EXPECT_THAT(audit.out, ::testing::ContainsRegex("ed +SubmitPipeline"));
  EXPECT_THAT(audit.out, ::testing::ContainsRegex("mlops-internal +CreateRun"));
  EXPECT_THAT(audit.out, Not(HasSubstr("ListExperiments")));
  for (const std::string& token : {editor_token, viewer_token, admin_token}) {
    EXPECT_THAT(audit.out, Not(HasSubstr(token)));
  }
  auto since = Mlops(server.address(), {"audit", "list", "--subject", "vi", "--output", "json"},
                     {"MLOPS_TOKEN=" + admin_token});
  ASSERT_EQ(since.exit_code, 0) << since.err;
  EXPECT_THAT(since.out, HasSubstr("\"subject\": \"vi\""));
  EXPECT_THAT(since.out, Not(HasSubstr("\"subject\": \"ed\"")));
  auto refused = Mlops(server.address(), {"audit", "list"}, {"MLOPS_TOKEN=" + viewer_token});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("PERMISSION_DENIED"));
}

// The value of the first `"key": "..."` in JSON output.
std::string JsonField(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\": \"");
  if (at == std::string::npos) return "";
  at += key.size() + 5;
  return json.substr(at, json.find('"', at) - at);
}

// Projects end to end (docs/api.md, "Projects"): the same names in two projects are two
// resources; ids of project vision carry it; --project and MLOPS_PROJECT put bare names and ids
// in a project; a member of one project neither reads nor finds (NOT_FOUND, as if absent) the
// other's experiments, runs and models; lists and the audit log show one project.
TEST_F(AuthCliTest, ProjectsKeepEachOnesExperimentsRunsAndModelsApart) {
  std::string vis = TokenEnv("vis", "vision=editor");
  std::string def = TokenEnv("def", "default=editor");
  std::string boss = TokenEnv("boss", "vision=admin");
  testing::ChildServer server(MLOPS_SERVER_BIN, dir_.path() + "/data",
                              {"--auth_token_file=" + tokens_});
  server.Start();
  auto as = [&](const std::string& who, std::vector<std::string> args,
                std::vector<std::string> env = {}) { return As(server, who, args, env); };

  auto theirs =
      as(vis, {"--project", "vision", "--output", "json", "experiments", "create", "churn"});
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  std::string their_experiment = JsonField(theirs.out, "id");
  EXPECT_THAT(their_experiment, ::testing::StartsWith("projects/vision/"));
  EXPECT_EQ(JsonField(theirs.out, "name"), "projects/vision/churn");
  auto ours = as(def, {"--output", "json", "experiments", "create", "churn"});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;  // the same name in another project
  std::string our_experiment = JsonField(ours.out, "id");
  EXPECT_EQ(our_experiment.size(), 32u) << ours.out;

  auto run =
      as(vis, {"--output", "json", "runs", "create", "--experiment", "churn", "--param", "lr=0.1"},
         {"MLOPS_PROJECT=vision"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::string run_id = JsonField(run.out, "id");
  ASSERT_THAT(run_id, ::testing::StartsWith("projects/vision/"));
  std::string bare_run = run_id.substr(std::string("projects/vision/").size());
  EXPECT_EQ(JsonField(run.out, "experiment_id"), their_experiment);
  // A bare id with --project is put in the project.
  auto logged = as(vis, {"--project", "vision", "runs", "log", bare_run, "--metric", "acc=0.9"});
  EXPECT_EQ(logged.exit_code, 0) << logged.err;
  auto shown = as(vis, {"runs", "show", run_id});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("acc"));
  auto found = as(vis, {"--project", "vision", "runs", "search", "--experiment", "churn"});
  ASSERT_EQ(found.exit_code, 0) << found.err;
  EXPECT_THAT(found.out, HasSubstr(bare_run));

  // The other project's member: denied by name, not found by the bare id.
  auto denied = as(def, {"runs", "show", run_id});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(denied.err, HasSubstr("in project vision"));
  auto absent = as(def, {"runs", "show", bare_run});
  EXPECT_EQ(absent.exit_code, 1);
  EXPECT_THAT(absent.err, HasSubstr("NOT_FOUND"));
  auto no_log = as(def, {"runs", "log", bare_run, "--metric", "acc=0.1"});
  EXPECT_EQ(no_log.exit_code, 1);
  EXPECT_THAT(no_log.err, HasSubstr("NOT_FOUND"));
  auto no_search = as(def, {"runs", "search", "--experiment",
                            their_experiment.substr(std::string("projects/vision/").size())});
  EXPECT_EQ(no_search.exit_code, 1);
  EXPECT_THAT(no_search.err, HasSubstr("NOT_FOUND"));
  auto list_theirs = as(def, {"--project", "vision", "experiments", "list"});
  EXPECT_EQ(list_theirs.exit_code, 1);
  EXPECT_THAT(list_theirs.err, HasSubstr("PERMISSION_DENIED"));
  // Each project's list holds its own.
  auto our_list = as(def, {"experiments", "list"});
  ASSERT_EQ(our_list.exit_code, 0) << our_list.err;
  EXPECT_THAT(our_list.out, HasSubstr(our_experiment));
  EXPECT_THAT(our_list.out, Not(HasSubstr("projects/vision")));
  auto their_list = as(vis, {"--project", "vision", "experiments", "list"});
  ASSERT_EQ(their_list.exit_code, 0) << their_list.err;
  EXPECT_THAT(their_list.out, HasSubstr(their_experiment));
  EXPECT_THAT(their_list.out, Not(HasSubstr(our_experiment)));

  // Models: the same name twice, each project listing its own.
  ASSERT_EQ(as(vis, {"--project", "vision", "models", "create", "m"}).exit_code, 0);
  ASSERT_EQ(as(def, {"models", "create", "m"}).exit_code, 0);
  auto our_models = as(def, {"models", "list"});
  ASSERT_EQ(our_models.exit_code, 0) << our_models.err;
  EXPECT_THAT(our_models.out, ::testing::ContainsRegex("\nm +0"));
  EXPECT_THAT(our_models.out, Not(HasSubstr("projects/vision/m")));
  auto their_models = as(vis, {"--project", "vision", "models", "list"});
  ASSERT_EQ(their_models.exit_code, 0) << their_models.err;
  EXPECT_THAT(their_models.out, HasSubstr("projects/vision/m"));
  EXPECT_THAT(their_models.out, Not(::testing::ContainsRegex("\nm +0")));
  auto their_model = as(def, {"models", "show", "projects/vision/m"});
  EXPECT_EQ(their_model.exit_code, 1);

  // Content is stored once but seen per project: vision's file is not found from default until
  // default uploads it too (and then its client sends every byte: nothing tells it the server
  // had them).
  std::string secret = dir_.path() + "/secret.txt";
  std::ofstream(secret) << std::string(300000, 's') << "only vision has this\n";
  auto put = as(vis, {"--project", "vision", "artifact", "put", secret});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  std::string digest = Trim(put.out);
  ASSERT_EQ(digest.size(), 64u) << put.out;
  ASSERT_EQ(as(vis, {"--project", "vision", "artifact", "stat", digest}).exit_code, 0);
  auto unseen = as(def, {"artifact", "stat", digest});
  EXPECT_EQ(unseen.exit_code, 1);
  EXPECT_THAT(unseen.err, HasSubstr("NOT_FOUND"));
  auto unread = as(def, {"artifact", "get", digest, dir_.path() + "/stolen.txt"});
  EXPECT_EQ(unread.exit_code, 1);
  EXPECT_THAT(unread.err, HasSubstr("NOT_FOUND"));
  std::string data_dir = dir_.path() + "/ds";
  std::filesystem::create_directories(data_dir);
  std::filesystem::copy_file(secret, data_dir + "/a.txt");
  auto pushed = as(vis, {"--project", "vision", "data", "push", data_dir, "--dataset", "d"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  auto ours_pushed = as(def, {"data", "push", data_dir, "--dataset", "d"});
  ASSERT_EQ(ours_pushed.exit_code, 0) << ours_pushed.err;
  // "sent X in N of M chunks": default had never uploaded the file, so every chunk is sent.
  size_t of = ours_pushed.out.find(" chunks (");
  ASSERT_NE(of, std::string::npos) << ours_pushed.out;
  size_t in = ours_pushed.out.rfind(" in ", of);
  std::string counts = ours_pushed.out.substr(in + 4, of - in - 4);  // "N of M"
  size_t space = counts.find(" of ");
  ASSERT_NE(space, std::string::npos) << ours_pushed.out;
  EXPECT_EQ(counts.substr(0, space), counts.substr(space + 4)) << ours_pushed.out;
  EXPECT_NE(counts.substr(0, space), "0") << ours_pushed.out;
  EXPECT_EQ(as(def, {"artifact", "stat", digest}).exit_code, 0) << "now default has it too";
  auto our_data = as(def, {"data", "list"});
  ASSERT_EQ(our_data.exit_code, 0) << our_data.err;
  EXPECT_THAT(our_data.out, Not(HasSubstr("projects/vision")));
  auto their_data = as(vis, {"--project", "vision", "data", "list"});
  ASSERT_EQ(their_data.exit_code, 0) << their_data.err;
  EXPECT_THAT(their_data.out, HasSubstr("projects/vision/d"));
  auto no_pull = as(def, {"data", "pull", "projects/vision/d", dir_.path() + "/pulled"});
  EXPECT_EQ(no_pull.exit_code, 1);
  EXPECT_THAT(no_pull.err, HasSubstr("PERMISSION_DENIED"));

  // `mlops run` in project vision with a token for vision only: the run, its output and its
  // lineage are all recorded there; default finds none of them.
  std::string work = dir_.path() + "/work";
  std::filesystem::create_directories(work);
  auto run_here = [&](const std::string& who, const std::string& project,
                      const std::vector<std::string>& args) {
    std::string line =
        "cd '" + work + "' && exec " + std::string(MLOPS_CLI_BIN) + " --server " + server.address();
    for (const std::string& arg : args) line += " '" + arg + "'";
    return testing::RunCommand({"/bin/sh", "-c", line}, {who, "MLOPS_PROJECT=" + project});
  };
  auto recorded = run_here(vis, "vision",
                           {"run", "--experiment", "churn", "--output", "model.bin", "--",
                            "/bin/sh", "-c", "echo weights > model.bin"});
  ASSERT_EQ(recorded.exit_code, 0) << recorded.err;
  size_t at = recorded.err.find("mlops: run projects/vision/");
  ASSERT_NE(at, std::string::npos) << recorded.err;
  std::string recorded_run = recorded.err.substr(at + 11, 16 + 32);
  auto lineage = run_here(vis, "vision", {"lineage", recorded_run, "--downstream"});
  ASSERT_EQ(lineage.exit_code, 0) << lineage.err;
  EXPECT_THAT(lineage.out, HasSubstr("model.bin"));
  auto their_lineage = run_here(def, "default", {"lineage", recorded_run});
  EXPECT_EQ(their_lineage.exit_code, 1);
  EXPECT_THAT(their_lineage.err, HasSubstr("PERMISSION_DENIED"));
  auto no_lineage = run_here(def, "default", {"lineage", recorded_run.substr(16)});
  EXPECT_EQ(no_lineage.exit_code, 1) << no_lineage.out;

  // The audit log of project vision: its calls only, for its admin only.
  auto audit = as(boss, {"--project", "vision", "audit", "list", "--max", "1000"});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, ::testing::ContainsRegex("vis +CreateExperiment +vision"));
  EXPECT_THAT(audit.out,
              ::testing::ContainsRegex("vis +LogBatch +vision +run_id=projects/vision/"));
  // def's calls were reads (not audited) or acted in project default (its refused LogBatch).
  EXPECT_THAT(audit.out, Not(::testing::ContainsRegex(" def +[A-Z][a-z]")));
  auto audit_default = as(boss, {"audit", "list"});
  EXPECT_EQ(audit_default.exit_code, 1);
  EXPECT_THAT(audit_default.err, HasSubstr("PERMISSION_DENIED"));
}

// A pipeline submitted in project vision runs there: its steps read vision's dataset (default's
// of the same name differs), see MLOPS_PROJECT=vision, store outputs vision sees, are recorded as
// tracking runs and lineage in vision, and reuse only vision's step cache; default's members see
// none of it, and its own run of the same pipeline runs every step. Schedules too belong to a
// project.
TEST_F(AuthCliTest, PipelinesRunInTheirProjectAndReuseOnlyItsCache) {
  std::string vis = TokenEnv("vis", "vision=editor");
  std::string def = TokenEnv("def", "default=editor");
  std::string ops = TokenEnv("ops", "*=viewer");
  auto op = Create({"--subject", "op", "--operator"});
  ASSERT_EQ(op.exit_code, 0) << op.err;
  std::string operator_env = "MLOPS_TOKEN=" + Trim(op.out);
  testing::ChildServer server(MLOPS_SERVER_BIN, dir_.path() + "/data",
                              {"--auth_token_file=" + tokens_});
  server.Start();
  auto as = [&](const std::string& who, std::vector<std::string> args,
                std::vector<std::string> env = {}) { return As(server, who, args, env); };
  // Dataset d in each project, with different contents.
  for (const auto& [who, project, text] :
       {std::tuple{vis, "vision", "vision's rows"}, std::tuple{def, "default", "default's rows"}}) {
    std::string data = dir_.path() + "/d-" + project;
    std::filesystem::create_directories(data);
    std::ofstream(data + "/a.txt") << text << "\n";
    auto pushed =
        as(who, {"--project", project, "data", "push", data, "--dataset", "d", "--tag", "v1"});
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  }
  std::string spec = dir_.path() + "/copy.yaml";
  std::ofstream(spec) << R"(name: copy
steps:
  - name: read
    command: [/bin/sh, -c, "echo project=$MLOPS_PROJECT; cat {{inputs.data}}/a.txt > {{outputs.copy}}; echo '{\"rows\": 1}' > metrics.json"]
    inputs: {data: "dataset:d@v1"}
    outputs: {copy: copy.txt}
)";
  auto submit = [&](const std::string& who, const std::string& project) {
    auto submitted = as(who, {"--project", project, "pipeline", "submit", spec, "--watch"});
    EXPECT_EQ(submitted.exit_code, 0) << submitted.out << submitted.err;
    return Trim(submitted.out.substr(0, submitted.out.find('\n')));
  };
  std::string theirs = submit(vis, "vision");
  ASSERT_THAT(theirs, ::testing::StartsWith("projects/vision/"));
  std::string bare = theirs.substr(std::string("projects/vision/").size());
  ASSERT_EQ(bare.size(), 32u) << theirs;
  auto logs = as(vis, {"--project", "vision", "pipeline", "logs", bare, "read"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "project=vision\n");
  auto status = as(vis, {"--output", "json", "pipeline", "status", theirs});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  std::string output = JsonField(status.out, "copy");
  ASSERT_EQ(output.size(), 64u) << status.out;
  std::string got = dir_.path() + "/got.txt";
  ASSERT_EQ(as(vis, {"--project", "vision", "artifact", "get", output, got}).exit_code, 0);
  EXPECT_EQ(ReadAll(got), "vision's rows\n");
  // The step's tracking run is in vision's experiment for the pipeline, its lineage there too.
  auto experiments = as(vis, {"--project", "vision", "experiments", "list"});
  ASSERT_EQ(experiments.exit_code, 0) << experiments.err;
  EXPECT_THAT(experiments.out, HasSubstr("projects/vision/pipeline-copy"));
  std::string tracking = JsonField(status.out, "tracking_run_id");
  ASSERT_THAT(tracking, ::testing::StartsWith("projects/vision/")) << status.out;
  auto lineage = as(vis, {"lineage", tracking, "--downstream"});
  ASSERT_EQ(lineage.exit_code, 0) << lineage.err;
  EXPECT_THAT(lineage.out, HasSubstr(output.substr(0, 12)));

  // Default's members: the run is refused by its id, absent by its bare id and from their list.
  auto denied = as(def, {"pipeline", "status", theirs});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  auto absent = as(def, {"pipeline", "status", bare});
  EXPECT_EQ(absent.exit_code, 1);
  EXPECT_THAT(absent.err, HasSubstr("NOT_FOUND"));
  auto no_logs = as(def, {"pipeline", "logs", bare, "read"});
  EXPECT_EQ(no_logs.exit_code, 1);
  auto no_cancel = as(def, {"pipeline", "cancel", bare});
  EXPECT_EQ(no_cancel.exit_code, 1);
  EXPECT_THAT(no_cancel.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(as(def, {"artifact", "stat", output}).exit_code, 1) << "vision's output";
  EXPECT_THAT(as(def, {"experiments", "list"}).out, Not(HasSubstr("pipeline-copy")));

  // Default's run of the same pipeline reads its own d and runs: vision's cache is not its.
  std::string ours = submit(def, "default");
  ASSERT_EQ(ours.size(), 32u) << ours;
  auto our_status = as(def, {"--output", "json", "pipeline", "status", ours});
  ASSERT_EQ(our_status.exit_code, 0) << our_status.err;
  EXPECT_EQ(JsonField(our_status.out, "state"), "SUCCEEDED");
  EXPECT_EQ(JsonField(our_status.out, "cached_from"), ours + "/read") << our_status.out;
  auto our_logs = as(def, {"pipeline", "logs", ours, "read"});
  EXPECT_EQ(our_logs.out, "project=default\n");
  // Vision's second run is a cache hit on its first.
  std::string again = submit(vis, "vision");
  auto again_status = as(vis, {"--output", "json", "pipeline", "status", again});
  EXPECT_EQ(JsonField(again_status.out, "cached_from"), theirs + "/read") << again_status.out;
  EXPECT_THAT(again_status.out, HasSubstr("\"CACHED\""));

  // Lists: each project its own runs; an operator with a role in every project lists schedules of
  // all of them.
  auto our_runs = as(def, {"pipeline", "list"});
  ASSERT_EQ(our_runs.exit_code, 0) << our_runs.err;
  EXPECT_THAT(our_runs.out, HasSubstr(ours));
  EXPECT_THAT(our_runs.out, Not(HasSubstr("projects/vision")));
  auto their_runs = as(vis, {"--project", "vision", "pipeline", "list"});
  ASSERT_EQ(their_runs.exit_code, 0) << their_runs.err;
  EXPECT_THAT(their_runs.out, HasSubstr(theirs));
  EXPECT_THAT(their_runs.out, HasSubstr(again));
  EXPECT_THAT(their_runs.out, Not(HasSubstr(ours)));
  auto scheduled = as(vis, {"--project", "vision", "pipeline", "schedule", spec, "--name",
                            "nightly", "--cron", "0 3 * * *"});
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.err;
  ASSERT_EQ(
      as(def, {"pipeline", "schedule", spec, "--name", "nightly", "--cron", "0 4 * * *"}).exit_code,
      0)
      << "the same name in another project";
  auto their_schedules = as(vis, {"--project", "vision", "pipeline", "schedules"});
  EXPECT_THAT(their_schedules.out, HasSubstr("projects/vision/nightly"));
  EXPECT_THAT(their_schedules.out, Not(HasSubstr("0 4 * * *")));
  auto all_schedules = as(ops, {"--project", "*", "pipeline", "schedules"});
  ASSERT_EQ(all_schedules.exit_code, 0) << all_schedules.err;
  EXPECT_THAT(all_schedules.out, HasSubstr("projects/vision/nightly"));
  EXPECT_THAT(all_schedules.out, HasSubstr("0 4 * * *"));
  auto no_unschedule = as(def, {"pipeline", "unschedule", "projects/vision/nightly"});
  EXPECT_EQ(no_unschedule.exit_code, 1);
  EXPECT_THAT(no_unschedule.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(as(vis, {"--project", "vision", "pipeline", "unschedule", "nightly"}).exit_code, 0);
  EXPECT_THAT(as(def, {"pipeline", "schedules"}).out, HasSubstr("nightly"))
      << "default's schedule of the same name stays";
  // Runs are listed one project at a time.
  auto every_run = as(ops, {"--project", "*", "pipeline", "list"});
  EXPECT_EQ(every_run.exit_code, 1);
  EXPECT_THAT(every_run.err, HasSubstr("one project at a time"));
  // A queue open to vision only: vision's runs and schedules use it, default's are refused.
  auto put_queue = as(operator_env, {"queues", "put", "vision-gpu", "--open-to", "vision"});
  ASSERT_EQ(put_queue.exit_code, 0) << put_queue.err;
  auto queues = as(vis, {"queues", "list"});
  EXPECT_THAT(queues.out, ::testing::ContainsRegex("vision-gpu .* vision\n"));
  auto on_queue =
      as(vis, {"--project", "vision", "pipeline", "submit", spec, "--queue", "vision-gpu"});
  EXPECT_EQ(on_queue.exit_code, 0) << on_queue.err;
  auto off_queue = as(def, {"pipeline", "submit", spec, "--queue", "vision-gpu"});
  EXPECT_EQ(off_queue.exit_code, 1);
  EXPECT_THAT(off_queue.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(off_queue.err, HasSubstr("queue vision-gpu is open to project(s) vision"));
  auto off_schedule = as(def, {"pipeline", "schedule", spec, "--name", "gpu", "--cron", "@daily",
                               "--queue", "vision-gpu"});
  EXPECT_EQ(off_schedule.exit_code, 1);
  EXPECT_THAT(off_schedule.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(as(operator_env, {"queues", "put", "bad", "--open-to", "a/b"}).exit_code, 1);
}

// Monitoring in projects: vision's profile is made from vision's dataset, its monitor watches
// vision's data and retrains in vision; default's members neither read nor find any of it, and a
// request mixing the two projects is refused.
TEST_F(AuthCliTest, MonitorsWatchAndRetrainInTheirProject) {
  std::string vis = TokenEnv("vis", "vision=editor");
  std::string def = TokenEnv("def", "default=editor");
  testing::ChildServer server(MLOPS_SERVER_BIN, dir_.path() + "/data",
                              {"--auth_token_file=" + tokens_});
  server.Start();
  auto as = [&](const std::string& who, std::vector<std::string> args) {
    return As(server, who, args);
  };
  auto in_vision = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--project", "vision"});
    return as(vis, std::move(args));
  };
  // Vision's reference rows around 40, its production rows around 60; default's around 60 too.
  auto push = [&](const std::string& who, const std::string& project, const std::string& name,
                  double center) {
    std::string data = dir_.path() + "/" + project + "-" + name;
    std::filesystem::create_directories(data);
    std::ofstream csv(data + "/rows.csv");
    csv << "age,plan\n";
    for (int i = 0; i < 400; ++i) {
      csv << center + (i % 21) - 10 << "," << (i % 4 ? "basic" : "pro") << "\n";
    }
    csv.close();
    auto pushed =
        as(who, {"--project", project, "data", "push", data, "--dataset", name, "--tag", "v1"});
    EXPECT_EQ(pushed.exit_code, 0) << pushed.err;
    return data + "/rows.csv";
  };
  push(vis, "vision", "users", 40);
  std::string production = push(vis, "vision", "prod", 60);
  push(def, "default", "users", 60);
  auto profile = in_vision({"profile", "create", "base", "--dataset", "users@v1"});
  ASSERT_EQ(profile.exit_code, 0) << profile.err;
  EXPECT_THAT(profile.out, HasSubstr("projects/vision/base@1: 400 rows"));
  // Compared with vision's users (the same rows): no drift; default's users would have drifted.
  EXPECT_EQ(in_vision({"drift", "users@v1", "--against", "base"}).exit_code, 0);
  std::string retrain = dir_.path() + "/retrain.yaml";
  std::ofstream(retrain) << "name: retrain\nsteps:\n  - name: fit\n"
                            "    command: [/bin/sh, -c, \"echo fit in $MLOPS_PROJECT\"]\n";
  auto monitor = in_vision({"monitor", "create", "watch", "--profile", "base", "--window-rows",
                            "400", "--retrain", retrain});
  ASSERT_EQ(monitor.exit_code, 0) << monitor.err;
  auto ingested = in_vision({"monitor", "ingest", "watch", "--file", production});
  ASSERT_EQ(ingested.exit_code, 0) << ingested.err;
  EXPECT_THAT(ingested.out, HasSubstr("ingested 400 rows into watch"));
  EXPECT_THAT(ingested.out, HasSubstr("(DRIFTED)"));
  auto alerts = in_vision({"--output", "json", "monitor", "alerts", "watch"});
  ASSERT_EQ(alerts.exit_code, 0) << alerts.err;
  std::string alert = JsonField(alerts.out, "id");
  ASSERT_THAT(alert, ::testing::StartsWith("projects/vision/")) << alerts.out;
  EXPECT_THAT(JsonField(alerts.out, "report_id"), ::testing::StartsWith("projects/vision/"));
  // The retraining runs in vision (the scheduler is called after the alert is stored).
  std::string retrained;
  for (int i = 0; i < 100 && retrained.empty(); ++i) {
    retrained = JsonField(in_vision({"--output", "json", "monitor", "alerts", "watch"}).out,
                          "pipeline_run_id");
    if (retrained.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_THAT(retrained, ::testing::StartsWith("projects/vision/"));
  auto watched = in_vision({"pipeline", "status", retrained, "--watch"});
  EXPECT_EQ(watched.exit_code, 0) << watched.err;
  EXPECT_EQ(in_vision({"pipeline", "logs", retrained, "fit"}).out, "fit in vision\n");

  // Default: none of it is listed, named ids are refused, bare ones are not found.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"profile", "list"}, {"monitor", "list"}, {"monitor", "alerts"}}) {
    auto listed = as(def, args);
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_THAT(listed.out, Not(HasSubstr("base"))) << args[0];
    EXPECT_THAT(listed.out, Not(HasSubstr("watch"))) << args[0];
  }
  auto denied = as(def, {"monitor", "report", "projects/vision/watch"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  auto absent = as(def, {"monitor", "report", "watch"});
  EXPECT_EQ(absent.exit_code, 1);
  EXPECT_THAT(absent.err, HasSubstr("NOT_FOUND"));
  auto no_ack = as(def, {"monitor", "ack", alert.substr(std::string("projects/vision/").size())});
  EXPECT_EQ(no_ack.exit_code, 1);
  EXPECT_THAT(no_ack.err, HasSubstr("NOT_FOUND"));
  auto no_profile = as(def, {"profile", "show", "base"});
  EXPECT_EQ(no_profile.exit_code, 1);
  EXPECT_THAT(no_profile.err, HasSubstr("NOT_FOUND"));
  // One request, one project: a profile of vision from default's dataset, default's data against
  // vision's profile.
  auto mixed = in_vision({"profile", "create", "other", "--dataset", "projects/default/users@v1"});
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_THAT(mixed.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(mixed.err, HasSubstr("one request acts in one project"));
  auto crossed = as(def, {"drift", "users@v1", "--against", "projects/vision/base"});
  EXPECT_NE(crossed.exit_code, 0);
  EXPECT_THAT(crossed.err, HasSubstr("INVALID_ARGUMENT"));
  // Vision's member acknowledges its alert by the id it was given.
  auto ack = in_vision({"monitor", "ack", alert, "--by", "vis"});
  EXPECT_EQ(ack.exit_code, 0) << ack.err;
  EXPECT_THAT(ack.out, HasSubstr("acknowledged by vis"));
}

TEST_F(AuthCliTest, CreateRefusesWhatWouldMakeAUselessOrBrokenToken) {
  EXPECT_EQ(Create({"--grant", "default=editor"}).exit_code, 2);  // no subject
  EXPECT_EQ(Create({"--subject", "a"}).exit_code, 2);             // no grant, not operator
  auto role = Create({"--subject", "a", "--grant", "default=root"});
  EXPECT_EQ(role.exit_code, 2);
  EXPECT_THAT(role.err, HasSubstr("viewer, editor or admin"));
  EXPECT_EQ(Create({"--subject", "a", "--grant", "../x=viewer"}).exit_code, 2);
  EXPECT_EQ(Create({"--subject", "a", "--operator", "--expires", "soon"}).exit_code, 2);
  EXPECT_EQ(ReadAll(tokens_), "");  // nothing written
  EXPECT_EQ(
      Create({"--subject", "ops", "--operator", "--expires", "2030-01-01T00:00:00Z"}).exit_code, 0);
  EXPECT_THAT(ReadAll(tokens_), HasSubstr("expires: 2030-01-01T00:00:00Z"));
}

TEST_F(AuthCliTest, BeyondLoopbackTheServerNeedsAuthenticationOrTheInsecureFlag) {
  auto refused = testing::RunCommand({MLOPS_SERVER_BIN, "--host=0.0.0.0", "--port=0",
                                      "--metrics_port=-1", "--data_dir=" + dir_.path() + "/a"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("--insecure_allow_unauthenticated"));
  EXPECT_THAT(refused.err, HasSubstr("--auth_token_file"));

  testing::ChildServer insecure(MLOPS_SERVER_BIN, dir_.path() + "/b",
                                {"--host=0.0.0.0", "--insecure_allow_unauthenticated"});
  insecure.Start();
  EXPECT_EQ(Mlops(insecure.address(), {"experiments", "list"}).exit_code, 0);

  ASSERT_EQ(Create({"--subject", "ops", "--operator"}).exit_code, 0);
  testing::ChildServer authenticated(MLOPS_SERVER_BIN, dir_.path() + "/c",
                                     {"--host=0.0.0.0", "--auth_token_file=" + tokens_});
  authenticated.Start();
  EXPECT_EQ(Mlops(authenticated.address(), {"experiments", "list"}).exit_code, 1);

  auto bad_file = testing::RunCommand({MLOPS_SERVER_BIN, "--port=0", "--metrics_port=-1",
                                       "--data_dir=" + dir_.path() + "/d",
                                       "--auth_token_file=" + dir_.path() + "/nope"});
  EXPECT_EQ(bad_file.exit_code, 2);
  EXPECT_THAT(bad_file.err, HasSubstr("cannot read"));
}

TEST_F(AuthCliTest, JwtsSignedByTheJwksKeysAuthenticateTheCliWithTheirBindings) {
  testing::TestKey key = testing::MakeKey("RSA", "k1");
  std::string jwks = dir_.path() + "/jwks.json", bindings = dir_.path() + "/bindings.yaml";
  std::ofstream(jwks) << testing::Jwks({key.jwk});
  std::ofstream(bindings) << "bindings:\n"
                             "  - subject: system:serviceaccount:ml:trainer\n"
                             "    grants: {default: editor}\n"
                             "  - group: readers\n"
                             "    grants: {default: viewer}\n"
                             "  - group: auditors\n"
                             "    grants: {default: admin}\n";
  const std::string issuer = "https://kubernetes.default.svc.cluster.local";
  auto jwt = [&](const std::string& sub, const std::string& extra) {
    return testing::Sign(R"({"iss": ")" + issuer + R"(", "aud": ["mlops"], "sub": ")" + sub +
                             R"(", "exp": )" +
                             std::to_string(absl::ToUnixSeconds(absl::Now()) + 600) + extra + "}",
                         key, "k1");
  };
  const std::vector<std::string> oidc = {"--oidc_jwks=" + jwks, "--oidc_issuer=" + issuer,
                                         "--oidc_audience=mlops"};
  // Misconfigurations stop the server at once, naming the missing flag.
  for (const auto& [extra, error] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--oidc_jwks=" + jwks, "--oidc_audience=mlops", "--auth_bindings_file=" + bindings},
            "--oidc_issuer"},
           {oidc, "--auth_bindings_file"},
           {{"--auth_bindings_file=" + bindings}, "needs --oidc_jwks"}}) {
    std::vector<std::string> argv = {MLOPS_SERVER_BIN, "--port=0", "--metrics_port=-1",
                                     "--data_dir=" + dir_.path() + "/x"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto refused = testing::RunCommand(argv);
    EXPECT_EQ(refused.exit_code, 2) << error;
    EXPECT_THAT(refused.err, HasSubstr(error));
  }
  // JWT authentication alone is authentication: the server may listen beyond loopback.
  std::vector<std::string> flags = oidc;
  flags.push_back("--auth_bindings_file=" + bindings);
  flags.push_back("--host=0.0.0.0");
  testing::ChildServer server(MLOPS_SERVER_BIN, dir_.path() + "/data", flags);
  server.Start();
  std::string trainer = jwt("system:serviceaccount:ml:trainer", "");
  auto created =
      Mlops(server.address(), {"experiments", "create", "jwt-made"}, {"MLOPS_TOKEN=" + trainer});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  std::string reader = jwt("rita", R"(, "groups": ["readers"])");
  auto listed = Mlops(server.address(), {"experiments", "list"}, {"MLOPS_TOKEN=" + reader});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("jwt-made"));
  auto denied =
      Mlops(server.address(), {"experiments", "create", "nope"}, {"MLOPS_TOKEN=" + reader});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(denied.err, HasSubstr("rita may not call"));
  testing::TestKey stranger = testing::MakeKey("RSA", "k1");
  auto forged = Mlops(
      server.address(), {"experiments", "list"},
      {"MLOPS_TOKEN=" +
       testing::Sign(
           R"({"iss": ")" + issuer +
               R"(", "aud": "mlops", "sub": "system:serviceaccount:ml:trainer", "exp": 4102444800})",
           stranger, "k1")});
  EXPECT_EQ(forged.exit_code, 1);
  EXPECT_THAT(forged.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(forged.err, HasSubstr("signature does not verify"));
  // The audit log names the JWT's subject.
  auto audit = Mlops(server.address(), {"audit", "list"},
                     {"MLOPS_TOKEN=" + jwt("ada", R"(, "groups": ["auditors"])")});
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_THAT(audit.out, HasSubstr("system:serviceaccount:ml:trainer"));
  EXPECT_THAT(audit.out, HasSubstr("CreateExperiment"));
}

}  // namespace
}  // namespace mlops
