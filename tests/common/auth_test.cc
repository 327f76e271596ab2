// Token files: parsing (every mistake named), the entries `mlops auth token create` appends,
// tokens, and roles per project.
#include "services/common/auth.h"

#include <sys/stat.h>

#include <fstream>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

using testing::StatusIs;

constexpr char kHash[] = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";

std::string File(const std::string& entry) { return "tokens:\n" + entry; }

TEST(TokenFileTest, ParsesSubjectsGrantsOperatorAndExpiry) {
  auto entries = ParseTokenFile(File(std::string("  - subject: alice\n    sha256: ") + kHash +
                                     "\n    grants: {default: editor, vision: viewer, \"*\": "
                                     "viewer}\n    operator: true\n    expires: "
                                     "2027-06-30T00:00:00Z\n"));
  ASSERT_OK(entries.status());
  ASSERT_EQ(entries->size(), 1u);
  const TokenEntry& entry = (*entries)[0];
  EXPECT_EQ(entry.principal.subject, "alice");
  EXPECT_EQ(entry.sha256, kHash);
  EXPECT_TRUE(entry.principal.is_operator);
  EXPECT_EQ(entry.principal.RoleIn("default"), Role::kEditor);
  EXPECT_EQ(entry.principal.RoleIn("vision"), Role::kViewer);
  EXPECT_EQ(entry.principal.RoleIn("elsewhere"), Role::kViewer);  // from "*"
  EXPECT_EQ(entry.expires, absl::FromUnixSeconds(1814313600));
}

TEST(TokenFileTest, AnEmptyFileHasNoTokens) {
  EXPECT_TRUE(ParseTokenFile("")->empty());
  EXPECT_TRUE(ParseTokenFile("tokens:\n")->empty());
}

TEST(TokenFileTest, EveryMistakeIsNamed) {
  std::string good = std::string("  - subject: a\n    sha256: ") + kHash + "\n";
  EXPECT_THAT(ParseTokenFile("tokens: [\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not YAML"));
  EXPECT_THAT(ParseTokenFile("users: []\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "one key, tokens"));
  EXPECT_THAT(ParseTokenFile(File("  - sha256: " + std::string(kHash) + "\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "tokens[0]: subject"));
  EXPECT_THAT(ParseTokenFile(File("  - subject: a\n    sha256: ABC\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "(subject a): sha256 must be 64"));
  EXPECT_THAT(ParseTokenFile(File(good + "    grants: {default: owner}\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "viewer, editor or admin"));
  EXPECT_THAT(ParseTokenFile(File(good + "    grants: {\"../x\": viewer}\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "project"));
  EXPECT_THAT(ParseTokenFile(File(good + "    role: admin\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown key \"role\""));
  EXPECT_THAT(ParseTokenFile(File(good + "    operator: yes please\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "operator must be true or false"));
  EXPECT_THAT(ParseTokenFile(File(good + "    expires: tomorrow\n")).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "RFC 3339"));
  EXPECT_THAT(ParseTokenFile(File(good + good)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "tokens[1]: the same sha256"));
  EXPECT_THAT(
      ParseTokenFile(File("  - subject: \"a\\nb\"\n    sha256: " + std::string(kHash) + "\n"))
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "control character"));
  EXPECT_THAT(
      ParseTokenFile(File("  - subject: al\xdc\\ice\n    sha256: " + std::string(kHash) + "\n"))
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "not valid UTF-8"));
}

TEST(TokenFileTest, AppendedEntriesParseBackAndTheFileIsPrivate) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens.yaml";
  TokenEntry first;
  first.principal.subject = "ci: \"nightly\"";  // quoted in YAML
  first.principal.grants["default"] = Role::kEditor;
  first.principal.grants["*"] = Role::kViewer;
  std::string token = NewToken();
  first.sha256 = TokenHash(token);
  ASSERT_OK(AppendTokenEntry(path, first));
  TokenEntry second;
  second.principal.subject = "ops";
  second.principal.is_operator = true;
  second.expires = absl::FromUnixSeconds(1814313600);
  second.sha256 = TokenHash(NewToken());
  ASSERT_OK(AppendTokenEntry(path, second));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), ::testing::Not(::testing::HasSubstr(token)));
  auto entries = ParseTokenFile(text.str());
  ASSERT_OK(entries.status());
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].principal.subject, first.principal.subject);
  EXPECT_EQ((*entries)[0].principal.grants, first.principal.grants);
  EXPECT_EQ((*entries)[0].sha256, first.sha256);
  EXPECT_TRUE((*entries)[1].principal.is_operator);
  EXPECT_EQ((*entries)[1].expires, second.expires);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  // An entry that would break the file is refused and the file kept.
  second.principal.subject = "";
  EXPECT_THAT(AppendTokenEntry(path, second),
              StatusIs(absl::StatusCode::kInvalidArgument, "would not parse"));
  EXPECT_EQ(ParseTokenFile(text.str())->size(), 2u);
}

TEST(TokenFileTest, AuthenticatesByHashAndRefusesUnknownAndExpired) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens.yaml";
  std::string live = NewToken(), old = NewToken();
  TokenEntry entry;
  entry.principal.subject = "live";
  entry.principal.grants["default"] = Role::kViewer;
  entry.sha256 = TokenHash(live);
  ASSERT_OK(AppendTokenEntry(path, entry));
  entry.principal.subject = "old";
  entry.sha256 = TokenHash(old);
  entry.expires = absl::Now() - absl::Seconds(1);
  ASSERT_OK(AppendTokenEntry(path, entry));
  auto authenticator = TokenFileAuthenticator::Open(path);
  ASSERT_OK(authenticator.status());
  auto principal = (*authenticator)->Authenticate(live);
  ASSERT_OK(principal.status());
  EXPECT_EQ(principal->subject, "live");
  EXPECT_THAT((*authenticator)->Authenticate(old).status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "old expired at"));
  EXPECT_THAT((*authenticator)->Authenticate("mlops_guess").status(),
              StatusIs(absl::StatusCode::kUnauthenticated, "unknown bearer token"));
  EXPECT_THAT(TokenFileAuthenticator::Open(dir.path() + "/missing").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "cannot read"));
}

TEST(TokenTest, TokensAreLongRandomAndHeaderSafe) {
  std::string a = NewToken(), b = NewToken();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 6u + 43u);
  EXPECT_EQ(a.rfind("mlops_", 0), 0u);
  for (char c : a) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  EXPECT_EQ(TokenHash("password"), kHash);  // what `printf password | sha256sum` prints
}

TEST(RoleTest, RolesIncludeTheOnesBelowAndGrantsAreNotInherited) {
  Principal principal;
  principal.grants["a"] = Role::kAdmin;
  principal.grants["b"] = Role::kViewer;
  EXPECT_EQ(principal.RoleIn("a"), Role::kAdmin);
  EXPECT_EQ(principal.RoleIn("b"), Role::kViewer);
  EXPECT_EQ(principal.RoleIn("c"), Role::kNone);
  EXPECT_LT(Role::kViewer, Role::kEditor);
  EXPECT_LT(Role::kEditor, Role::kAdmin);
  Role role;
  EXPECT_TRUE(ParseRole("editor", &role));
  EXPECT_EQ(role, Role::kEditor);
  EXPECT_FALSE(ParseRole("root", &role));
}

}  // namespace
}  // namespace mlops
