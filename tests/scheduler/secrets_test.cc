// The pieces of the steps' secrets: the redactor (values split across pieces, overlapping values,
// against a plain replace of the whole text), redacting a file in place, secret versions and their
// key, and the secrets file (its mode, its errors never quoting a value, reloads).
#include "services/scheduler/secrets.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "services/scheduler/secret_stores.h"
#include "tests/testing/testing.h"

namespace mlops::scheduler {
namespace {

using ::mlops::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// `text` fed in pieces of `piece` bytes.
std::string Redact(const std::vector<Redaction>& redactions, std::string_view text, size_t piece) {
  Redactor redactor(redactions);
  std::string out;
  for (size_t at = 0; at < text.size(); at += piece) out += redactor.Feed(text.substr(at, piece));
  return out + redactor.Finish();
}

TEST(RedactorTest, ValuesSplitAcrossPiecesAreReplaced) {
  std::vector<Redaction> redactions = {{"hunter2", "[redacted: A]"}, {"", "[never]"}};
  const std::string text = "log: hunter2 then hunter2hunter2 and hunte r2 hunter";
  const std::string expected =
      "log: [redacted: A] then [redacted: A][redacted: A] and hunte r2 hunter";
  for (size_t piece : {1, 2, 3, 6, 7, 8, 100}) {
    EXPECT_EQ(Redact(redactions, text, piece), expected) << piece;
  }
  // Only what may still become a value is held back.
  Redactor redactor(redactions);
  EXPECT_EQ(redactor.Feed("abcdefghij"), "abcdefghij");
  EXPECT_EQ(redactor.Feed("xhunt"), "x");
  EXPECT_EQ(redactor.Feed("er2!h"), "[redacted: A]!");
  EXPECT_EQ(redactor.Finish(), "h");
  EXPECT_TRUE(Redactor(std::vector<Redaction>{{"", "x"}}).empty());
  EXPECT_EQ(Redactor(std::vector<Redaction>{}).Feed("as is"), "as is");
}

TEST(RedactorTest, OverlappingValuesEarliestThenLongestAgainstAPlainReplace) {
  // A value that is the prefix of another, and one that overlaps another's end.
  std::vector<Redaction> redactions = {{"abc", "<1>"}, {"abcdef", "<2>"}, {"defg", "<3>"}};
  EXPECT_EQ(Redact(redactions, "xabcdefgx abcdx defgx", 1), "x<2>gx <1>dx <3>x");
  // Random texts over a small alphabet, so that values occur often, in random pieces: the same as
  // replacing in the whole text, and no value is left.
  std::mt19937 random(7);
  auto word = [&](size_t n) {
    std::string w;
    for (size_t i = 0; i < n; ++i) w += static_cast<char>('a' + random() % 3);
    return w;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<Redaction> values = {{word(1 + random() % 5), "#"}, {word(1 + random() % 5), "%"}};
    std::string text = word(random() % 200);
    // The reference: leftmost, then longest, over the whole text.
    std::string expected;
    for (size_t at = 0; at < text.size();) {
      const Redaction* match = nullptr;
      for (const Redaction& r : values) {
        if (text.compare(at, r.value.size(), r.value) == 0 &&
            (match == nullptr || r.value.size() > match->value.size())) {
          match = &r;
        }
      }
      if (match != nullptr) {
        expected += match->replacement;
        at += match->value.size();
      } else {
        expected += text[at++];
      }
    }
    size_t piece = 1 + random() % 9;
    std::string out = Redact(values, text, piece);
    ASSERT_EQ(out, expected) << text << " in pieces of " << piece;
    for (const Redaction& r : values) EXPECT_EQ(out.find(r.value), std::string::npos);
  }
}

TEST(RedactorTest, RedactFileRewritesInPlaceKeepingTheMode) {
  testing::TempDir dir;
  std::string path = dir.path() + "/stdout.log";
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i) + " s3cr3t-value\n";
  std::ofstream(path) << text;
  ::chmod(path.c_str(), 0640);
  ASSERT_OK(RedactFile(path, {{"s3cr3t-value", "[redacted: T]"}}));
  std::string redacted = ReadAll(path);
  EXPECT_THAT(redacted, Not(HasSubstr("s3cr3t")));
  EXPECT_THAT(redacted, HasSubstr("line 19999 [redacted: T]\n"));
  struct stat st = {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_FALSE(std::filesystem::exists(path + ".redacted"));
  ASSERT_OK(RedactFile(dir.path() + "/missing.log", {{"x", "y"}}));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/missing.log"));
}

TEST(SecretVersionTest, FollowsTheValueUnderOneKeyAndTheKeyFileIsPrivate) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/secret_version_key";
  auto key = LoadOrCreateVersionKey(path);
  ASSERT_OK(key.status());
  EXPECT_EQ(key->size(), 32u);
  struct stat st = {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = LoadOrCreateVersionKey(path);
  ASSERT_OK(again.status());
  EXPECT_EQ(*again, *key);
  std::string v = SecretVersion(*key, "db", "password", "hunter2");
  EXPECT_EQ(v.size(), 32u);
  EXPECT_EQ(SecretVersion(*key, "db", "password", "hunter2"), v);
  EXPECT_NE(SecretVersion(*key, "db", "password", "hunter3"), v);
  EXPECT_NE(SecretVersion(*key, "db", "user", "hunter2"), v);
  EXPECT_NE(SecretVersion(*key, "db2", "password", "hunter2"), v);
  EXPECT_NE(SecretVersion(std::string(32, 'k'), "db", "password", "hunter2"), v);
  EXPECT_THAT(v, Not(HasSubstr("hunter2")));
  std::ofstream(dir.path() + "/short") << "abc";
  EXPECT_THAT(LoadOrCreateVersionKey(dir.path() + "/short").status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "expected 32 bytes, found 3"));
}

TEST(SecretsFileTest, ReadsReloadsAndNeverQuotesAValue) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/secrets.yaml";
  auto write = [&](const std::string& text, mode_t mode = 0600) {
    std::string tmp = path + ".tmp";
    std::ofstream(tmp) << text;
    ::chmod(tmp.c_str(), mode);
    std::filesystem::rename(tmp, path);
  };
  const std::string key(32, 'k');
  write("secrets:\n  - name: db\n    data: {password: hunter2, user: etl}\n", 0644);
  EXPECT_THAT(SecretsFile::Open(path, key).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "mode 0644 lets others read it"));
  EXPECT_THAT(SecretsFile::Open(dir.path() + "/missing", key).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "No such file"));
  for (const auto& [text, error] : std::vector<std::pair<std::string, std::string>>{
           {"secrets:\n  - name: db\n    data: {password: [hunter2]}\n",
            "secrets[0] (db): the value of password must be a string"},
           {"secrets:\n  - name: Db\n    data: {password: hunter2}\n",
            "secrets[0]: name 'Db' must be a Kubernetes Secret's name"},
           {"secrets:\n  - name: db\n    data: {\"pass/word\": hunter2}\n",
            "secrets[0] (db): key 'pass/word' must match"},
           {"secrets:\n  - name: db\n    value: hunter2\n", "unknown key 'value'"},
           {"secrets:\n  - {name: db, data: {a: hunter2}}\n  - {name: db, data: {b: c}}\n",
            "secret db is listed twice"},
           {"tokens: []\n", "must be a mapping with one key, secrets"},
       }) {
    write(text);
    auto opened = SecretsFile::Open(path, key);
    EXPECT_THAT(opened.status(), StatusIs(absl::StatusCode::kInvalidArgument, error)) << text;
    EXPECT_THAT(opened.status().message(), Not(HasSubstr("hunter2")));
  }

  write("secrets:\n  - name: db\n    data: {password: hunter2, user: etl}\n");
  auto file = SecretsFile::Open(path, key);
  ASSERT_OK(file.status());
  EXPECT_THAT((*file)->source(), HasSubstr(path));
  auto value = (*file)->Get("db", "password");
  ASSERT_OK(value.status());
  EXPECT_EQ(value->value, "hunter2");
  EXPECT_EQ(value->version, SecretVersion(key, "db", "password", "hunter2"));
  EXPECT_THAT((*file)->Get("db", "nope").status(),
              StatusIs(absl::StatusCode::kNotFound, "secret db has no key nope"));
  EXPECT_THAT((*file)->Get("other", "password").status(),
              StatusIs(absl::StatusCode::kNotFound, "secret other is not in secrets file"));
  // Rotated in place: read again (the file is checked at most once a second); a broken edit keeps
  // the values read before.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write("secrets:\n  - name: db\n    data: {password: rotated-value}\n");
  value = (*file)->Get("db", "password");
  ASSERT_OK(value.status());
  EXPECT_EQ(value->value, "rotated-value");
  EXPECT_NE(value->version, SecretVersion(key, "db", "password", "hunter2"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  write("secrets: [broken\n");
  value = (*file)->Get("db", "password");
  ASSERT_OK(value.status());
  EXPECT_EQ(value->value, "rotated-value");
}

}  // namespace
}  // namespace mlops::scheduler
