// Authentication end to end with the built programs: `mlops auth token create` writes the token
// file a real mlops-server reads; the CLI presents tokens (MLOPS_TOKEN, --token-file) and each is
// held to its role; the server's own in-process calls (a pipeline's steps recorded in metadata,
// outputs stored in artifact) pass; a server listening beyond loopback needs authentication or
// --insecure_allow_unauthenticated; JWTs signed by a JWKS's keys authenticate with the grants of a
// bindings file.
#include <fstream>
#include <sstream>

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
