// The built `mlops` binary against a real mlops-server child process.
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CliTest : public testing::ServerSuite {};

TEST_F(CliTest, TrackSearchAndHistory) {
  auto created = Mlops({"experiments", "create", "cli-iris", "--description", "flowers"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("name:        cli-iris"));

  std::vector<std::string> runs;
  for (const char* lr : {"0.1", "0.01"}) {
    auto run = Mlops({"runs", "create", "--experiment", "cli-iris", "--param",
                      std::string("lr=") + lr, "--tag", "team=vision"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    std::string id = run.out.substr(0, run.out.find('\n'));
    ASSERT_EQ(id.size(), 32u) << run.out;
    runs.push_back(id);
    for (int step = 1; step <= 3; ++step) {
      auto logged = Mlops(
          {"runs", "log", id, "--metric",
           "acc=0." + std::to_string(step + (lr[3] == '1' ? 5 : 2)) + "@" + std::to_string(step)});
      ASSERT_EQ(logged.exit_code, 0) << logged.err;
    }
    ASSERT_EQ(Mlops({"runs", "finish", id}).exit_code, 0);
  }
  auto search =
      Mlops({"runs", "search", "--experiment", "cli-iris", "--filter",
             "metrics.acc > 0.7 and status = 'FINISHED'", "--order-by", "metrics.acc DESC"});
  ASSERT_EQ(search.exit_code, 0) << search.err;
  EXPECT_THAT(search.out, HasSubstr(runs[1]));  // lr=0.01 reached 0.8 at step 3... see below
  EXPECT_THAT(search.out, HasSubstr("(1 runs)"));
  EXPECT_THAT(search.out, Not(HasSubstr(runs[0])));

  auto limited = Mlops({"runs", "search", "--experiment", "cli-iris", "--max", "1"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_THAT(limited.out, HasSubstr("(1 runs)"));
  auto list = Mlops({"experiments", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("cli-iris"));

  auto json = Mlops({"--output", "json", "runs", "show", runs[1]});
  ASSERT_EQ(json.exit_code, 0);
  EXPECT_THAT(json.out, HasSubstr("\"lr\": \"0.01\""));
  EXPECT_THAT(json.out, HasSubstr("\"status\": \"FINISHED\""));

  auto history = Mlops({"runs", "history", runs[1], "acc"});
  ASSERT_EQ(history.exit_code, 0);
  EXPECT_THAT(history.out, HasSubstr("STEP  VALUE"));
  EXPECT_THAT(history.out, HasSubstr("3     0.8"));
}

TEST_F(CliTest, ErrorsAreClearAndExitNonZero) {
  ASSERT_EQ(Mlops({"experiments", "create", "cli-errors"}).exit_code, 0);
  auto dup = Mlops({"experiments", "create", "cli-errors"});
  EXPECT_EQ(dup.exit_code, 1);
  EXPECT_THAT(dup.err, HasSubstr("ALREADY_EXISTS"));
  auto bad_filter =
      Mlops({"runs", "search", "--experiment", "cli-errors", "--filter", "metrics.acc >> 1"});
  EXPECT_EQ(bad_filter.exit_code, 1);
  EXPECT_THAT(bad_filter.err, HasSubstr("INVALID_ARGUMENT: filter: at position"));
  auto bad_step = Mlops({"runs", "log", std::string(32, 'a'), "--metric", "x=1@inf"});
  EXPECT_EQ(bad_step.exit_code, 2);
  EXPECT_THAT(bad_step.err, HasSubstr("'inf' is not an integer"));
  auto usage = Mlops({"runs", "frobnicate", "x"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_THAT(usage.err, HasSubstr("unknown command"));
  auto missing = Mlops({"experiments", "get", "no-such-experiment"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
}

TEST_F(CliTest, UnknownWordsListTheValidOnesAndVersionAndCompletionWork) {
  auto bogus = Mlops({"runs", "bogus"});
  EXPECT_EQ(bogus.exit_code, 2);
  EXPECT_THAT(bogus.err, HasSubstr("unknown command 'runs bogus'; runs commands: create, search"));
  auto none = Mlops({"data"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("missing command; data commands: push, pull"));
  auto group = Mlops({"frobnicate"});
  EXPECT_EQ(group.exit_code, 2);
  EXPECT_THAT(group.err, HasSubstr("unknown command group 'frobnicate'; groups: run, reproduce"));
  auto monitor = Mlops({"monitor", "nope"});
  EXPECT_EQ(monitor.exit_code, 2);
  EXPECT_THAT(monitor.err, HasSubstr("monitor commands: create, list"));
  auto version = testing::RunCommand({MLOPS_CLI_BIN, "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out,
              ::testing::MatchesRegex("mlops [0-9.]+ \\(commit [0-9a-f]+(-dirty)?\\)\n"));
  // The completion script, run by bash: groups, then a group's commands.
  auto completion = testing::RunCommand(
      {"/bin/bash", "-c",
       "source <(\"$0\" completion bash) && COMP_WORDS=(mlops ru) && COMP_CWORD=1 && _mlops && "
       "echo \"${COMPREPLY[*]}\" && COMP_WORDS=(mlops --server x models a) && COMP_CWORD=4 && "
       "_mlops && echo \"${COMPREPLY[*]}\"",
       MLOPS_CLI_BIN});
  ASSERT_EQ(completion.exit_code, 0) << completion.err;
  EXPECT_EQ(completion.out, "run runs\nalias alias-policy\n");
}

TEST_F(CliTest, UnreachableServerSaysSo) {
  auto result =
      testing::RunCommand({MLOPS_CLI_BIN, "experiments", "list"}, {"MLOPS_SERVER=127.0.0.1:1"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(result.err, HasSubstr("is the server running"));
}

// --ca / MLOPS_CA: a file that is not a PEM certificate is a usage error (exit 2, named); a real CA
// makes the CLI speak TLS, which this plaintext server cannot answer, so the call fails instead of
// silently falling back to plaintext. (Through a TLS server: tests/e2e/chart_test.sh, the router.)
TEST_F(CliTest, CaFlagMeansTlsAndABadFileIsAUsageError) {
  auto missing = Mlops({"--ca", dir_->path() + "/nope.pem", "experiments", "list"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("nope.pem: not a readable PEM certificate file"));
  auto from_env = Mlops({"experiments", "list"}, {"MLOPS_CA=" + dir_->path() + "/nope.pem"});
  EXPECT_EQ(from_env.exit_code, 2);
  EXPECT_THAT(from_env.err, HasSubstr("not a readable PEM certificate file"));

  std::string ca = dir_->path() + "/ca.pem";
  auto made = testing::RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                   "-days", "1", "-subj", "/CN=cli-test", "-keyout",
                                   dir_->path() + "/ca.key", "-out", ca});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto tls = Mlops({"--ca", ca, "experiments", "list"});
  EXPECT_EQ(tls.exit_code, 1);
  EXPECT_THAT(tls.err, HasSubstr("UNAVAILABLE"));
  auto plain = Mlops({"experiments", "list"});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
}

}  // namespace
}  // namespace mlops
