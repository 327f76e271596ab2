// JWT authentication: JWKS keys built with OpenSSL (RSA and P-256, generated in the test), tokens
// signed with libjwt as a provider would sign them, every claim check (issuer, audience, expiry
// with clock skew, not-before), forged tokens (another key, HMAC keyed with the public key,
// "none"), bindings by subject and group, a Kubernetes service-account token, key rotation without
// a restart, a JWKS fetched from a URL (a real HTTPS server, a real HTTP server wanting a bearer
// token), and the whole path through a real gRPC server next to token-file tokens.
#include "services/common/oidc.h"

#include <arpa/inet.h>
#include <jwt.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "services/common/subprocess.h"
#include "services/metadata/metadata_component.h"
#include "tests/testing/jwt_testing.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using testing::StatusIs;

constexpr char kIssuer[] = "https://issuer.example";
constexpr char kAudience[] = "mlops";

using testing::Jwks;
using testing::MakeKey;
using testing::Sign;
using testing::TestKey;

int64_t Now() { return absl::ToUnixSeconds(absl::Now()); }

std::string Claims(const std::string& sub, int64_t exp, const std::string& extra = "",
                   const std::string& aud = std::string("\"") + kAudience + "\"",
                   const std::string& iss = kIssuer) {
  return absl::StrCat(R"({"iss": ")", iss, R"(", "sub": ")", sub, R"(", "aud": )", aud,
                      R"(, "exp": )", exp, extra.empty() ? "" : ", " + extra, "}");
}

JwtOptions Options() {
  JwtOptions options;
  options.issuer = kIssuer;
  options.audience = kAudience;
  return options;
}

TEST(JwksTest, RsaAndP256KeysAreUsedOtherKeysSkippedAndBadOnesNamed) {
  TestKey rsa = MakeKey("RSA", "r1"), ec = MakeKey("EC", "e1");
  auto keys =
      ParseJwks(Jwks({rsa.jwk, ec.jwk, R"({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"})",
                      R"({"kty": "oct", "k": "c2VjcmV0"})",
                      R"({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"})"}));
  ASSERT_OK(keys.status());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].kid, "r1");
  EXPECT_EQ((*keys)[0].alg, "RS256");
  EXPECT_EQ((*keys)[1].alg, "ES256");
  EXPECT_THAT((*keys)[1].pem, ::testing::HasSubstr("BEGIN PUBLIC KEY"));

  EXPECT_THAT(ParseJwks(Jwks({MakeKey("RSA", "small", 1024).jwk})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "at least 2048 bits"));
  EXPECT_THAT(ParseJwks("[1, 2]").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a JSON object"));
  EXPECT_THAT(ParseJwks(R"({"keys": 3})").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no \"keys\" list"));
  EXPECT_THAT(ParseJwks(Jwks({R"({"kty": "RSA", "n": "***", "e": "AQAB"})"})).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "keys[0]: n is not base64url"));
  EXPECT_THAT(
      ParseJwks(Jwks({R"({"kty": "EC", "crv": "P-256", "x": "AQAB", "y": "AQAB"})"})).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "32 bytes"));
}

TEST(VerifyJwtTest, ValidTokensOfBothAlgorithmsAndEveryClaimCheck) {
  TestKey rsa = MakeKey("RSA", "r1"), ec = MakeKey("EC", "e1");
  auto keys = ParseJwks(Jwks({rsa.jwk, ec.jwk}));
  ASSERT_OK(keys.status());
  const JwtOptions options = Options();
  const absl::Time now = absl::Now();
  auto verify = [&](const std::string& token) { return VerifyJwt(token, *keys, options, now); };

  auto alice = verify(Sign(Claims("alice", Now() + 600, R"("groups": ["ml", "ops"])"), rsa, "r1"));
  ASSERT_OK(alice.status());
  EXPECT_EQ(alice->subject, "alice");
  EXPECT_EQ(alice->groups, (std::vector<std::string>{"ml", "ops"}));
  ASSERT_OK(verify(Sign(Claims("bob", Now() + 600), ec, "e1")).status());
  // No kid: any key of the token's algorithm may verify it.
  ASSERT_OK(verify(Sign(Claims("bob", Now() + 600), ec, "")).status());
  // aud as a list containing the audience.
  ASSERT_OK(
      verify(Sign(Claims("carol", Now() + 600, "", R"(["other", "mlops"])"), rsa, "r1")).status());
  // Expiry with 60 s of skew either way; nbf likewise.
  ASSERT_OK(verify(Sign(Claims("d", Now() - 30), rsa, "r1")).status());
  EXPECT_THAT(verify(Sign(Claims("d", Now() - 120), rsa, "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "expired at"));
  EXPECT_THAT(
      verify(Sign(Claims("d", Now() + 600, absl::StrCat(R"("nbf": )", Now() + 300)), rsa, "r1"))
          .status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "not valid before"));
  ASSERT_OK(
      verify(Sign(Claims("d", Now() + 600, absl::StrCat(R"("nbf": )", Now() + 30)), rsa, "r1"))
          .status());
  EXPECT_THAT(verify(Sign(Claims("e", Now() + 600, "", R"("someone-else")"), rsa, "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "not for audience \"mlops\""));
  EXPECT_THAT(
      verify(Sign(Claims("e", Now() + 600, "", R"("mlops")", "https://evil.example"), rsa, "r1"))
          .status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "issued by \"https://evil.example\""));
  EXPECT_THAT(
      verify(Sign(R"({"iss": "https://issuer.example", "sub": "f", "aud": "mlops"})", rsa, "r1"))
          .status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "no valid exp"));
  EXPECT_THAT(verify(Sign(Claims("", Now() + 600), rsa, "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "sub must be"));
}

TEST(VerifyJwtTest, ForgedAndMalformedTokensAreRefused) {
  TestKey rsa = MakeKey("RSA", "r1"), intruder = MakeKey("RSA", "r1");
  auto keys = ParseJwks(Jwks({rsa.jwk}));
  ASSERT_OK(keys.status());
  const JwtOptions options = Options();
  auto verify = [&](const std::string& token) {
    return VerifyJwt(token, *keys, options, absl::Now());
  };
  const std::string claims = Claims("mallory", Now() + 600, R"("groups": ["admins"])");
  // Another key under the same kid.
  EXPECT_THAT(verify(Sign(claims, intruder, "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "signature does not verify"));
  // HMAC keyed with the public key (which anyone has): refused before any signature check.
  EXPECT_THAT(verify(Sign(claims, JWT_ALG_HS256, (*keys)[0].pem, "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "\"HS256\" is not accepted"));
  EXPECT_THAT(verify(Sign(claims, JWT_ALG_NONE, "", "r1")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "\"none\" is not accepted"));
  EXPECT_THAT(verify(Sign(claims, rsa, "r2")).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "no RS256 key with kid r2"));
  // A valid token with its payload swapped for another.
  std::string good = Sign(Claims("alice", Now() + 600), rsa, "r1");
  std::string other = Sign(claims, rsa, "r1");
  std::string spliced = good.substr(0, good.find('.')) +
                        other.substr(other.find('.'), other.rfind('.') - other.find('.')) +
                        good.substr(good.rfind('.'));
  EXPECT_THAT(verify(spliced).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "signature does not verify"));
  for (const std::string& junk : {std::string(""), std::string("a.b"), std::string("a.b.c.d"),
                                  std::string("!!.??.**"), std::string(20000, 'a') + ".b.c"}) {
    EXPECT_THAT(verify(junk).status(), StatusIs(absl::StatusCode::kUnauthenticated, "JWT: "))
        << junk.substr(0, 20);
  }
}

class JwtAuthenticatorTest : public ::testing::Test {
 protected:
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.path() + "/" + name + ".new") << text;
    ASSERT_EQ(std::rename((dir_.path() + "/" + name + ".new").c_str(),
                          (dir_.path() + "/" + name).c_str()),
              0);
  }
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }
  testing::TempDir dir_;
};

TEST_F(JwtAuthenticatorTest, GrantsComeFromBindingsBySubjectAndGroupAndKeysRotateWithoutARestart) {
  TestKey old_key = MakeKey("RSA", "k1"), new_key = MakeKey("EC", "k2");
  Write("jwks.json", Jwks({old_key.jwk}));
  Write("bindings.yaml", R"(bindings:
  - subject: system:serviceaccount:ml:trainer
    grants: {default: editor}
  - group: platform
    grants: {"*": admin}
    operator: true
  - group: readers
    grants: {default: viewer, vision: editor}
)");
  auto bindings = BindingsFile::Open(Path("bindings.yaml"));
  ASSERT_OK(bindings.status());
  auto authenticator = JwtAuthenticator::Open(Path("jwks.json"), Options(), std::move(*bindings));
  ASSERT_OK(authenticator.status());

  // A Kubernetes service-account token: issuer of the cluster, audience list, nested claims.
  auto trainer =
      (*authenticator)
          ->Authenticate(Sign(
              Claims(
                  "system:serviceaccount:ml:trainer", Now() + 3600,
                  R"("kubernetes.io": {"namespace": "ml", "serviceaccount": {"name": "trainer"}})",
                  R"(["https://kubernetes.default.svc", "mlops"])"),
              old_key, "k1"));
  ASSERT_OK(trainer.status());
  EXPECT_EQ(trainer->subject, "system:serviceaccount:ml:trainer");
  EXPECT_EQ(trainer->RoleIn("default"), Role::kEditor);
  EXPECT_EQ(trainer->RoleIn("vision"), Role::kNone);
  EXPECT_FALSE(trainer->is_operator);
  // Groups: the highest role of every binding, operator when any binding says so.
  auto dana = (*authenticator)
                  ->Authenticate(
                      Sign(Claims("dana", Now() + 600, R"("groups": ["readers"])"), old_key, "k1"));
  ASSERT_OK(dana.status());
  EXPECT_EQ(dana->RoleIn("default"), Role::kViewer);
  EXPECT_EQ(dana->RoleIn("vision"), Role::kEditor);
  auto erin =
      (*authenticator)
          ->Authenticate(Sign(Claims("erin", Now() + 600, R"("groups": ["readers", "platform"])"),
                              old_key, "k1"));
  ASSERT_OK(erin.status());
  EXPECT_EQ(erin->RoleIn("vision"), Role::kAdmin);
  EXPECT_TRUE(erin->is_operator);
  // Unbound: authenticated with no grant at all.
  auto nobody = (*authenticator)->Authenticate(Sign(Claims("nobody", Now() + 600), old_key, "k1"));
  ASSERT_OK(nobody.status());
  EXPECT_EQ(nobody->RoleIn("default"), Role::kNone);

  // The provider rotates: the new key replaces the old one in the file.
  Write("jwks.json", Jwks({new_key.jwk}));
  std::string fresh = Sign(Claims("dana", Now() + 600, R"("groups": ["readers"])"), new_key, "k2");
  absl::StatusOr<Principal> rotated;
  for (int i = 0; i < 30; ++i) {
    rotated = (*authenticator)->Authenticate(fresh);
    if (rotated.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK(rotated.status());
  EXPECT_THAT(
      (*authenticator)->Authenticate(Sign(Claims("dana", Now() + 600), old_key, "k1")).status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "no RS256 key"));
  // A JWKS that no longer parses keeps the keys read before.
  Write("jwks.json", "{not json");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_OK((*authenticator)->Authenticate(fresh).status());

  // Bindings change without a restart too.
  Write("bindings.yaml", "bindings:\n  - group: readers\n    grants: {default: admin}\n");
  absl::StatusOr<Principal> promoted;
  for (int i = 0; i < 30; ++i) {
    promoted = (*authenticator)->Authenticate(fresh);
    if (promoted.ok() && promoted->RoleIn("default") == Role::kAdmin) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK(promoted.status());
  EXPECT_EQ(promoted->RoleIn("default"), Role::kAdmin);
}

// A server process serving `dir` (killed when destroyed), waited for until it accepts.
class FileServer {
 public:
  FileServer(const std::string& dir, std::vector<std::string> argv, int port) : port_(port) {
    SpawnOptions options;
    options.argv = std::move(argv);
    options.cwd = dir;
    options.out = Stdio::Null();
    options.err = Stdio::Null();
    auto child = Subprocess::Spawn(options);
    EXPECT_OK(child.status());
    if (child.ok()) pid_ = child->Release();
    for (int i = 0; i < 100 && !Accepts(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~FileServer() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  bool Accepts() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    ::close(fd);
    return ok;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

TEST_F(JwtAuthenticatorTest, AJwksUrlIsFetchedOverTlsAndFetchedAgainForAKidItLacks) {
  // A real HTTPS server (openssl s_server -WWW serves the files of its working directory) with a
  // certificate made here.
  auto made = testing::RunCommand({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", Path("tls.key"),
                                   "-out", Path("tls.crt"), "-days", "1", "-subj", "/CN=localhost",
                                   "-addext", "subjectAltName=IP:127.0.0.1"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  TestKey first = MakeKey("EC", "k1"), second = MakeKey("RSA", "k2");
  Write("jwks.json", Jwks({first.jwk}));
  Write("bindings.yaml", "bindings:\n  - subject: pia\n    grants: {default: viewer}\n");
  const int port = testing::FreePort();
  FileServer https(
      dir_.path(),
      {"openssl", "s_server", "-quiet", "-WWW", "-accept", "127.0.0.1:" + std::to_string(port),
       "-cert", Path("tls.crt"), "-key", Path("tls.key")},
      port);
  ASSERT_TRUE(https.Accepts());
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/jwks.json";
  auto bindings = BindingsFile::Open(Path("bindings.yaml"));
  ASSERT_OK(bindings.status());
  std::shared_ptr<BindingsFile> shared = std::move(*bindings);
  // Not trusting the server's certificate: refused at start, naming the failure.
  EXPECT_THAT(JwtAuthenticator::Open(url, Options(), shared).status(),
              StatusIs(absl::StatusCode::kUnavailable, "GET " + url));
  JwksFetchOptions fetch;
  fetch.ca_file = Path("tls.crt");
  fetch.min_refresh = absl::Milliseconds(200);
  auto authenticator = JwtAuthenticator::Open(url, Options(), shared, fetch);
  ASSERT_OK(authenticator.status());
  auto pia = (*authenticator)->Authenticate(Sign(Claims("pia", Now() + 600), first, "k1"));
  ASSERT_OK(pia.status());
  EXPECT_EQ(pia->RoleIn("default"), Role::kViewer);
  // The provider adds a key: a token naming it is refused once, which makes the refresher fetch
  // the set again (well before its 5-minute period), and then accepted.
  Write("jwks.json", Jwks({first.jwk, second.jwk}));
  std::string fresh = Sign(Claims("pia", Now() + 600), second, "k2");
  EXPECT_THAT((*authenticator)->Authenticate(fresh).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "no RS256 key with kid k2"));
  absl::StatusOr<Principal> later;
  for (int i = 0; i < 50; ++i) {
    later = (*authenticator)->Authenticate(fresh);
    if (later.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_OK(later.status());
}

TEST_F(JwtAuthenticatorTest, AJwksUrlThatNeedsABearerTokenGetsTheOneInItsFile) {
  // A real HTTP server (Python's http.server) answering 401 unless the token is presented, as the
  // Kubernetes API server does for /openid/v1/jwks.
  TestKey key = MakeKey("EC", "k1");
  Write("jwks.json", Jwks({key.jwk}));
  Write("serve.py", R"(import http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer sa-token-123":
            self.send_error(401)
            return
        super().do_GET()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
)");
  Write("sa.token", "sa-token-123\n");
  Write("bindings.yaml", "bindings: []\n");
  const int port = testing::FreePort();
  FileServer http(dir_.path(), {"python3", Path("serve.py"), std::to_string(port)}, port);
  ASSERT_TRUE(http.Accepts());
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/jwks.json";
  auto bindings = BindingsFile::Open(Path("bindings.yaml"));
  ASSERT_OK(bindings.status());
  std::shared_ptr<BindingsFile> shared = std::move(*bindings);
  EXPECT_THAT(JwtAuthenticator::Open(url, Options(), shared).status(),
              StatusIs(absl::StatusCode::kUnavailable, "HTTP 401"));
  JwksFetchOptions fetch;
  fetch.bearer_token_file = Path("sa.token");
  auto authenticator = JwtAuthenticator::Open(url, Options(), shared, fetch);
  ASSERT_OK(authenticator.status());
  ASSERT_OK((*authenticator)->Authenticate(Sign(Claims("x", Now() + 600), key, "k1")).status());
}

TEST_F(JwtAuthenticatorTest, BadConfigurationIsRefusedAtStart) {
  Write("bindings.yaml", "bindings: []\n");
  Write("jwks.json", Jwks({R"({"kty": "oct", "k": "c2VjcmV0"})"}));
  auto opened = BindingsFile::Open(Path("bindings.yaml"));
  ASSERT_OK(opened.status());
  std::shared_ptr<BindingsFile> bindings = std::move(*opened);
  EXPECT_THAT(JwtAuthenticator::Open(Path("jwks.json"), Options(), bindings).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no RS256 or ES256 signing key"));
  JwtOptions no_audience = Options();
  no_audience.audience.clear();
  EXPECT_THAT(JwtAuthenticator::Open(Path("jwks.json"), no_audience, bindings).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "an issuer and an audience"));
  EXPECT_THAT(JwtAuthenticator::Open(Path("missing.json"), Options(), bindings).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "cannot read"));
  for (const auto& [text, error] : std::vector<std::pair<std::string, std::string>>{
           {"bindings:\n  - grants: {default: viewer}\n", "needs either subject or group"},
           {"bindings:\n  - subject: a\n    group: b\n", "needs either subject or group"},
           {"bindings:\n  - subject: a\n    role: admin\n", "unknown key \"role\""},
           {"bindings:\n  - group: g\n    grants: {default: owner}\n", "viewer, editor or admin"},
           {"rules: []\n", "one key, bindings"}}) {
    EXPECT_THAT(ParseBindingsFile(text).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, error))
        << text;
  }
}

TEST_F(JwtAuthenticatorTest, JwtsAndTokenFileTokensWorkSideBySideThroughARealServer) {
  TestKey key = MakeKey("EC", "k1");
  Write("jwks.json", Jwks({key.jwk}));
  Write("bindings.yaml", "bindings:\n  - group: readers\n    grants: {default: viewer}\n");
  std::string file_token = testing::AddToken(Path("tokens.yaml"), "ci", Role::kEditor);
  auto tokens = TokenFileAuthenticator::Open(Path("tokens.yaml"));
  ASSERT_OK(tokens.status());
  auto bindings = BindingsFile::Open(Path("bindings.yaml"));
  ASSERT_OK(bindings.status());
  auto jwts = JwtAuthenticator::Open(Path("jwks.json"), Options(), std::move(*bindings));
  ASSERT_OK(jwts.status());
  testing::InProcessServer server(
      {metadata::OpenMetadataComponent}, /*metrics=*/false,
      std::make_shared<ChainAuthenticator>(std::move(*tokens), std::move(*jwts)));
  auto channel = server.NewChannel();
  auto call = [&](const std::string& method, const std::string& token) {
    std::vector<std::pair<std::string, std::string>> metadata;
    if (!token.empty()) metadata.push_back({"authorization", "Bearer " + token});
    return testing::RawUnaryCall(channel, "/mlops.metadata.v1.MetadataService/" + method, "",
                                 metadata)
        .first.error_code();
  };
  const std::string reader =
      Sign(Claims("rita", Now() + 600, R"("groups": ["readers"])"), key, "k1");
  EXPECT_EQ(call("ListExperiments", reader), grpc::StatusCode::OK);
  EXPECT_EQ(call("CreateExperiment", reader), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call("ListExperiments",
                 Sign(Claims("rita", Now() - 600, R"("groups": ["readers"])"), key, "k1")),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("ListExperiments", ""), grpc::StatusCode::UNAUTHENTICATED);
  // The token file's editor can write (an empty request: refused for its content, not its caller).
  EXPECT_EQ(call("CreateExperiment", file_token), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(call("ListExperiments", "mlops_notatoken"), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace mlops
