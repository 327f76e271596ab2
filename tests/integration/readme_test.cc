// The README as documentation that is tested: every ```sh block of README.md, in order, runs as
// one bash script (set -euo pipefail) against a fresh mlops-server, with a fresh HOME and the
// built mlops, mlops-server and mlops-example first on PATH, as the quickstart leaves a new user.
// A README that says something that fails fails this test.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/testing/testing.h"

namespace mlops {
namespace {

// The ```sh blocks of a Markdown text, in order (```console and other blocks are not run).
std::vector<std::string> ShellBlocks(const std::string& markdown) {
  std::vector<std::string> blocks;
  std::istringstream in(markdown);
  std::string line, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```sh") {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      blocks.push_back(block);
    } else if (inside) {
      block += line + "\n";
    }
  }
  EXPECT_FALSE(inside) << "an unterminated ```sh block";
  return blocks;
}

TEST(ReadmeTest, EveryShellBlockRunsAsWritten) {
  std::ifstream file(std::string(MLOPS_SOURCE_DIR) + "/README.md");
  std::string readme((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> blocks = ShellBlocks(readme);
  ASSERT_GE(blocks.size(), 6u);

  testing::TempDir dir;
  std::string home = dir.path() + "/home";
  std::filesystem::create_directories(home);
  std::string build = MLOPS_BUILD_DIR;
  std::string path = build + "/tools/cli:" + build + "/tools/server:" + build +
                     "/examples:" + "/usr/local/bin:/usr/bin:/bin";
  // The server (and the steps it starts) find mlops-example on PATH, as after the quickstart.
  ::setenv("PATH", path.c_str(), 1);
  testing::ChildServer server(MLOPS_SERVER_BIN, dir.path() + "/data");
  server.Start();

  std::string script = "set -euo pipefail\nset -x\ncd '" + std::string(MLOPS_SOURCE_DIR) + "'\n";
  for (size_t i = 0; i < blocks.size(); ++i) {
    script += "\n# --- README block " + std::to_string(i + 1) + "\n" + blocks[i];
  }
  std::string script_path = dir.path() + "/readme.sh";
  std::ofstream(script_path) << script;
  auto result = testing::RunCommand(
      {"/bin/bash", script_path},
      {"HOME=" + home, "PATH=" + path, "MLOPS_SERVER=" + server.address(), "USER=reader"});
  auto tail = [](const std::string& text) {
    return text.substr(text.size() > 8000 ? text.size() - 8000 : 0);
  };
  ASSERT_EQ(result.exit_code, 0) << "stdout:\n"
                                 << tail(result.out) << "\nstderr:\n"
                                 << tail(result.err);
  // A few things the README says happen, checked in what the commands printed.
  EXPECT_THAT(result.out, ::testing::HasSubstr("identical (bit for bit)"));
  EXPECT_THAT(result.out, ::testing::HasSubstr("unchanged"));
  EXPECT_THAT(result.out, ::testing::HasSubstr("Dataset churn@"));
  EXPECT_THAT(result.out, ::testing::HasSubstr("drifted (exit 3)"));
  std::ifstream svg(home + "/mlops-tour/lineage.svg");
  std::string picture((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_THAT(picture, ::testing::HasSubstr("<svg"));
}

}  // namespace
}  // namespace mlops
