// Secrets for steps end to end with the built programs: a real mlops-server reads a secrets file
// (--secrets_file), a pipeline's step gets a value through `secretEnv` and prints it, and the value
// appears nowhere the platform keeps or shows anything: not in the run's records, the step's logs
// (followed while it runs, and kept), the tracking run, the audit log, the server's log, /metrics
// or any byte of the data dir. The step's cache key follows the secret's version: unchanged value,
// cache hit; rotated value, the step runs again.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "services/common/digest.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// 24 hex characters that no test text holds by chance.
std::string RandomHex() {
  std::string bytes =
      testing::RandomBytes(12, static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())));
  return absl::BytesToHexString(bytes);
}

// Every regular file under `dir` whose bytes hold `needle`.
std::vector<std::string> FilesHolding(const std::string& dir, const std::string& needle) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && ReadAll(entry.path()).find(needle) != std::string::npos) {
      found.push_back(entry.path());
    }
  }
  return found;
}

class SecretsCliTest : public ::testing::Test {
 protected:
  testing::CommandResult Mlops(std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server_->address()});
    return testing::RunCommand(args);
  }
  void WriteSecrets(const std::string& password) {
    std::string tmp = secrets_ + ".new";
    std::ofstream(tmp) << "secrets:\n  - name: warehouse\n    data: {password: \"" << password
                       << "\", user: etl}\n";
    ::chmod(tmp.c_str(), 0600);
    std::filesystem::rename(tmp, secrets_);
  }
  std::string Submit(const std::string& spec) {
    auto submit = Mlops({"pipeline", "submit", spec});
    EXPECT_EQ(submit.exit_code, 0) << submit.out << submit.err;
    return submit.out.substr(0, submit.out.find('\n'));
  }
  // Waits for the run's end (status --watch) and returns its status.
  std::string Watch(const std::string& id) {
    auto status = Mlops({"pipeline", "status", id, "--watch"});
    EXPECT_THAT(status.err, HasSubstr("pipeline run " + id));
    return status.out;
  }

  testing::TempDir dir_;
  std::string secrets_ = dir_.path() + "/secrets.yaml";
  std::unique_ptr<testing::ChildServer> server_;
};

constexpr char kSpec[] = R"(name: warehouse-load
steps:
  - name: load
    command:
      - /bin/sh
      - -c
      - |
        echo "password is $PASSWORD"
        echo "again:$PASSWORD." >&2
        printf %s "$PASSWORD" | sha256sum | cut -c1-64 > {{outputs.hash}}
        sleep 2
        echo "done $PASSWORD"
    secretEnv: {PASSWORD: {secret: warehouse, key: password}}
    env: {USER_NAME: etl}
    outputs: {hash: hash.txt}
)";

TEST_F(SecretsCliTest, AStepGetsItsSecretAndTheValueIsKeptNowhere) {
  const std::string password = "pw-" + RandomHex();
  WriteSecrets(password);
  const std::string data = dir_.path() + "/data";
  server_ = std::make_unique<testing::ChildServer>(
      MLOPS_SERVER_BIN, data, std::vector<std::string>{"--secrets_file=" + secrets_});
  server_->Start();
  std::string spec = dir_.path() + "/load.yaml";
  std::ofstream(spec) << kSpec;

  std::string id = Submit(spec);
  ASSERT_EQ(id.size(), 32u);
  // Followed while the step runs: redacted on the way out.
  testing::CommandResult followed;
  for (int i = 0; i < 600; ++i) {  // until the step has started (30 s at most)
    followed = Mlops({"pipeline", "logs", id, "load", "--follow"});
    if (followed.exit_code == 0 || followed.err.find("has not run") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_EQ(followed.out, "password is [redacted: PASSWORD]\ndone [redacted: PASSWORD]\n");
  std::string status = Watch(id);
  ASSERT_THAT(status, HasSubstr("state:    SUCCEEDED"));
  // The step had the value: its output is the value's hash.
  auto json = Mlops({"--output", "json", "pipeline", "status", id});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  size_t at = json.out.find("\"hash\": \"");
  ASSERT_NE(at, std::string::npos) << json.out;
  std::string hash_digest = json.out.substr(at + 9, 64);
  std::string out = dir_.path() + "/hash.txt";
  auto pulled = Mlops({"artifact", "get", hash_digest, out});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_EQ(ReadAll(out), DigestHex(Sha256Of(password)) + "\n");
  // The kept logs.
  auto kept = Mlops({"pipeline", "logs", id, "load"});
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_EQ(kept.out, followed.out);
  auto kept_err = Mlops({"pipeline", "logs", id, "load", "--stderr"});
  EXPECT_EQ(kept_err.out, "again:[redacted: PASSWORD].\n");

  // The same value again: a cache hit. A rotated value: the step runs again, with the new value.
  std::string again = Submit(spec);
  EXPECT_THAT(Watch(again), HasSubstr("cache hit: " + id + "/load"));
  const std::string rotated = "pw-" + RandomHex();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the file is checked each second
  WriteSecrets(rotated);
  std::string third = Submit(spec);
  std::string third_status = Watch(third);
  EXPECT_THAT(third_status, HasSubstr("state:    SUCCEEDED"));
  EXPECT_THAT(third_status, Not(HasSubstr("cache hit")));
  auto third_logs = Mlops({"pipeline", "logs", third, "load"});
  EXPECT_EQ(third_logs.out, followed.out);

  // A key the secret does not have: the step fails naming it, and nothing else ran.
  std::string missing_spec = dir_.path() + "/missing.yaml";
  std::string missing_text = kSpec;
  missing_text.replace(missing_text.find("key: password"), 13, "key: nope");
  std::ofstream(missing_spec) << missing_text;
  std::string missing = Submit(missing_spec);
  std::string missing_status = Watch(missing);
  EXPECT_THAT(missing_status, HasSubstr("FAILED"));
  EXPECT_THAT(missing_status, HasSubstr("secret warehouse has no key nope"));

  // Nowhere: the records the CLI shows, the audit log, /metrics, the server's log, the data dir.
  std::vector<std::string> shown;
  for (const auto& run : {id, again, third, missing}) {
    shown.push_back(Mlops({"--output", "json", "pipeline", "status", run}).out);
  }
  auto tracked = Mlops(
      {"--output", "json", "runs", "search", "--experiment", "pipeline-warehouse-load", "--all"});
  EXPECT_THAT(tracked.out, HasSubstr("load")) << tracked.err;
  shown.push_back(tracked.out);
  shown.push_back(Mlops({"audit", "list", "--max", "1000"}).out);
  auto metrics = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_EQ(metrics.first, 200);
  shown.push_back(metrics.second);
  EXPECT_THAT(shown[0], HasSubstr("secretEnv"));  // the spec, with its reference
  ASSERT_EQ(server_->Terminate(), 0);
  shown.push_back(ReadAll(data + ".log"));
  for (const std::string& value : {password, rotated}) {
    for (const std::string& text : shown) EXPECT_THAT(text, Not(HasSubstr(value)));
    EXPECT_THAT(FilesHolding(data, value), ::testing::IsEmpty());
  }
}

TEST_F(SecretsCliTest, ASecretsFileOthersMayReadIsRefused) {
  WriteSecrets("x");
  ::chmod(secrets_.c_str(), 0644);
  auto run =
      testing::RunCommand({MLOPS_SERVER_BIN, "--host=127.0.0.1", "--port=0", "--metrics_port=0",
                           "--data_dir=" + dir_.path() + "/data", "--secrets_file=" + secrets_});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("mode 0644 lets others read it; chmod 600 it"));
}

}  // namespace
}  // namespace mlops
