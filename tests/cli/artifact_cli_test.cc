// `mlops data` and `mlops artifact` (the built CLI) against a real mlops-server child process:
// round trips checked with sha256sum, no-op re-push, a killed upload resumed, scrub and metrics.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "tests/testing/testing.h"

extern char** environ;

namespace mlops {
namespace {

using ::testing::HasSubstr;

void WriteRandom(const std::string& path, size_t bytes, uint64_t seed) {
  std::string data = testing::RandomBytes(bytes, seed);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(data.data(), data.size());
}

class ArtifactCliTest : public testing::ServerSuite {
 protected:
  std::vector<std::string> Env() { return {"MLOPS_CACHE_DIR=" + dir_->path() + "/cache"}; }

  testing::CommandResult Mlops(std::vector<std::string> args) {
    args.insert(args.begin(), {MLOPS_CLI_BIN, "--server", server_->address()});
    return testing::RunCommand(args, Env());
  }

  // `sha256sum` of every file under dir, by relative path (the independent check).
  std::string Sums(const std::string& dir) {
    auto result = testing::RunCommand(
        {"/bin/bash", "-c",
         "cd '" + dir + "' && find . -type f | LC_ALL=C sort | xargs -r sha256sum"});
    EXPECT_EQ(result.exit_code, 0) << result.err;
    return result.out;
  }
};

TEST_F(ArtifactCliTest, PushPullDiffLogRoundTripMatchesSha256sum) {
  std::string src = dir_->path() + "/src";
  std::filesystem::create_directories(src + "/nested/deeper");
  std::ofstream(src + "/empty.txt");
  std::ofstream(src + "/tiny.csv") << "a,b\n1,2\n";
  WriteRandom(src + "/nested/model.bin", 5 << 20, 1);
  for (int i = 0; i < 300; ++i) {
    std::ofstream(src + "/nested/deeper/f" + std::to_string(i) + ".txt") << "row " << i << "\n";
  }
  auto push = Mlops({"data", "push", src, "--dataset", "cli-ds", "--tag", "v1", "-m", "first"});
  ASSERT_EQ(push.exit_code, 0) << push.err;
  EXPECT_THAT(push.out, HasSubstr("pushed cli-ds@"));
  EXPECT_THAT(push.out, HasSubstr("303 files"));
  std::string v1 = push.out.substr(push.out.find('@') + 1, 64);

  auto again = Mlops({"data", "push", src, "--dataset", "cli-ds"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("unchanged"));
  EXPECT_THAT(again.out, HasSubstr("nothing uploaded"));
  EXPECT_THAT(again.out, HasSubstr("0 hashed"));  // the hash cache answered for every file

  std::string dest = dir_->path() + "/dest";
  auto pull = Mlops({"data", "pull", "cli-ds@v1", dest});
  ASSERT_EQ(pull.exit_code, 0) << pull.err;
  EXPECT_THAT(pull.out, HasSubstr("303 files written"));
  EXPECT_EQ(Sums(src), Sums(dest));

  // An edit in the middle of the large file sends a few chunks, not the file.
  {
    std::fstream f(src + "/nested/model.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(2 << 20);
    f.write("edited", 6);
  }
  std::filesystem::remove(src + "/tiny.csv");
  auto v2 = Mlops({"data", "push", src, "--dataset", "cli-ds", "-m", "second"});
  ASSERT_EQ(v2.exit_code, 0) << v2.err;
  EXPECT_THAT(v2.out, HasSubstr("1 new files"));
  auto diff = Mlops({"data", "diff", "cli-ds@v1", "latest"});
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  EXPECT_THAT(diff.out, HasSubstr("0 added, 1 removed, 1 modified, 301 unchanged"));
  EXPECT_THAT(diff.out, HasSubstr("- tiny.csv"));
  EXPECT_THAT(diff.out, HasSubstr("M nested/model.bin"));
  auto log = Mlops({"data", "log", "cli-ds"});
  ASSERT_EQ(log.exit_code, 0) << log.err;
  EXPECT_THAT(log.out, HasSubstr(v1.substr(0, 16)));
  EXPECT_THAT(log.out, HasSubstr("second"));
  // Pulling latest over the v1 copy rewrites only what changed and removes nothing silently.
  auto update = Mlops({"data", "pull", "cli-ds", dest});
  ASSERT_EQ(update.exit_code, 0) << update.err;
  EXPECT_THAT(update.out, HasSubstr("1 files written"));
  EXPECT_THAT(update.out, HasSubstr("301 already present"));

  auto missing = Mlops({"data", "pull", "no-such-dataset", dest});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  auto bad = Mlops({"data", "push", src, "--dataset", "../evil"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
}

TEST_F(ArtifactCliTest, ARetriedPipelineStepPushesNoSecondVersion) {
  // Inside a step (MLOPS_STEP_KEY), a push is keyed on the step: an attempt retried after the
  // first one pushed finds its version, even when its output differs.
  std::string src = dir_->path() + "/stepped";
  std::filesystem::create_directories(src);
  std::vector<std::string> env = Env();
  env.push_back("MLOPS_STEP_KEY=00112233445566778899aabbccddeeff");
  std::string first_version;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    std::ofstream(src + "/out.txt") << "attempt " << attempt << "\n";
    auto push = testing::RunCommand({MLOPS_CLI_BIN, "--server", server_->address(), "--output",
                                     "json", "data", "push", src, "--dataset", "stepped"},
                                    env);
    ASSERT_EQ(push.exit_code, 0) << push.err;
    std::smatch match;
    ASSERT_TRUE(std::regex_search(push.out, match, std::regex("\"digest\": *\"([0-9a-f]{64})\"")))
        << push.out;
    if (attempt == 1) first_version = match[1];
    EXPECT_EQ(match[1], first_version);
  }
  auto log = Mlops({"data", "log", "stepped"});
  EXPECT_EQ(log.exit_code, 0) << log.err;
  EXPECT_EQ(std::count(log.out.begin(), log.out.end(), '\n'), 2) << log.out;  // header + 1
  // Outside a step, the changed content is a new version.
  EXPECT_EQ(Mlops({"data", "push", src, "--dataset", "stepped"}).exit_code, 0);
  log = Mlops({"data", "log", "stepped"});
  EXPECT_EQ(std::count(log.out.begin(), log.out.end(), '\n'), 3) << log.out;
}

TEST_F(ArtifactCliTest, SparseGigabyteFileRoundTrips) {
  std::string path = dir_->path() + "/sparse.bin";
  {
    std::ofstream f(path, std::ios::binary);
    f.seekp((1LL << 30) - 5);
    f.write("tail!", 5);  // 1 GiB: zeros, then a few bytes
  }
  auto put = Mlops({"artifact", "put", path});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  std::string digest = put.out.substr(0, 64);
  auto sum = testing::RunCommand({"/usr/bin/sha256sum", path});
  EXPECT_EQ(sum.out.substr(0, 64), digest);
  EXPECT_THAT(put.err, HasSubstr("(pinned)"));
  std::string out = dir_->path() + "/sparse.out";
  auto get = Mlops({"artifact", "get", digest, out});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(testing::RunCommand({"/usr/bin/sha256sum", out}).out.substr(0, 64), digest);
  // It comes back sparse: the zeros are holes, not 1 GiB of allocated blocks.
  struct stat st;
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1LL << 30);
  EXPECT_LT(static_cast<int64_t>(st.st_blocks) * 512, 1 << 20);
  std::filesystem::remove(path);
  std::filesystem::remove(out);
}

TEST_F(ArtifactCliTest, PushingAnUnchangedDatasetAgainHealsItsDamagedBlobs) {
  std::string src = dir_->path() + "/heal-src";
  std::filesystem::create_directories(src);
  WriteRandom(src + "/big.bin", 2 << 20, 31);
  auto push = Mlops({"data", "push", src, "--dataset", "heal"});
  ASSERT_EQ(push.exit_code, 0) << push.err;
  auto stat =
      Mlops({"artifact", "stat",
             testing::RunCommand({"/usr/bin/sha256sum", src + "/big.bin"}).out.substr(0, 64),
             "--chunks"});
  ASSERT_EQ(stat.exit_code, 0) << stat.err;
  std::string chunk = stat.out.substr(stat.out.find("\n  ") + 3, 64);
  std::string file = dir_->path() + "/data/artifact/chunks/" + chunk.substr(0, 2) + "/" + chunk;
  ASSERT_TRUE(std::filesystem::exists(file)) << file;
  std::filesystem::remove(file);
  EXPECT_EQ(Mlops({"artifact", "scrub"}).exit_code, 1);
  // The content is already a version: nothing new, yet the missing chunk is sent again.
  auto again = Mlops({"data", "push", src, "--dataset", "heal"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("unchanged"));
  EXPECT_EQ(Mlops({"artifact", "scrub"}).exit_code, 0);
  std::string dest = dir_->path() + "/heal-dest";
  ASSERT_EQ(Mlops({"data", "pull", "heal", dest}).exit_code, 0);
  EXPECT_EQ(Sums(src), Sums(dest));
}

TEST_F(ArtifactCliTest, LinksFifosDirectoriesAndEmptyDirectoriesAreReportedNotSilent) {
  std::string base = dir_->path() + "/odd";
  std::filesystem::create_directories(base + "/tree/empty");
  std::filesystem::create_directories(base + "/tree/sub");
  std::ofstream(base + "/real.txt") << "real content\n";
  std::ofstream(base + "/tree/sub/a.txt") << "a\n";
  std::filesystem::create_symlink(base + "/real.txt", base + "/link.txt");
  std::filesystem::create_symlink(base + "/real.txt", base + "/tree/link.txt");
  std::filesystem::create_directory_symlink(base + "/tree/sub", base + "/tree/dirlink");
  std::filesystem::create_directory_symlink(base + "/tree", base + "/tree/sub/loop");
  ASSERT_EQ(::mkfifo((base + "/fifo").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((base + "/tree/fifo").c_str(), 0644), 0);

  // A link named on the command line is followed: its content, under the link's name.
  auto link = Mlops({"data", "push", base + "/link.txt", "--dataset", "linked"});
  ASSERT_EQ(link.exit_code, 0) << link.err;
  auto show = Mlops({"data", "show", "linked", "--files"});
  EXPECT_THAT(show.out, HasSubstr("files:    1"));
  EXPECT_THAT(show.out, HasSubstr("link.txt"));
  auto put_link = Mlops({"artifact", "put", base + "/link.txt"});
  ASSERT_EQ(put_link.exit_code, 0) << put_link.err;
  EXPECT_EQ(put_link.out.substr(0, 64),
            testing::RunCommand({"/usr/bin/sha256sum", base + "/real.txt"}).out.substr(0, 64));
  // A directory or a fifo given to put is a clear local error at once (the fifo never blocks).
  auto put_dir = Mlops({"artifact", "put", base + "/tree"});
  EXPECT_EQ(put_dir.exit_code, 1);
  EXPECT_THAT(put_dir.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(put_dir.err, HasSubstr("a directory"));
  EXPECT_THAT(put_dir.err, ::testing::Not(HasSubstr("is the server running")));
  auto put_fifo = Mlops({"artifact", "put", base + "/fifo"});
  EXPECT_EQ(put_fifo.exit_code, 1);
  EXPECT_THAT(put_fifo.err, HasSubstr("a fifo"));
  auto push_fifo = Mlops({"data", "push", base + "/fifo", "--dataset", "fifo"});
  EXPECT_EQ(push_fifo.exit_code, 1);
  EXPECT_THAT(push_fifo.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(push_fifo.err, HasSubstr("a fifo"));
  auto missing = Mlops({"artifact", "put", base + "/nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));

  // Inside a tree: links and the fifo skipped and counted, the empty directory counted.
  auto tree = Mlops({"data", "push", base + "/tree", "--dataset", "tree"});
  ASSERT_EQ(tree.exit_code, 0) << tree.err;
  EXPECT_THAT(tree.out, HasSubstr("1 files"));
  EXPECT_THAT(tree.out, HasSubstr("skipped 3 symbolic links"));
  EXPECT_THAT(tree.out, HasSubstr("--follow-symlinks"));
  EXPECT_THAT(tree.out, HasSubstr("skipped 1 fifos"));
  EXPECT_THAT(tree.out, HasSubstr("1 empty directories not recorded"));
  // Followed: the file link and the directory link add files; the links back up the tree
  // (sub/loop, and dirlink/loop through the followed dirlink) are skipped.
  auto followed = Mlops({"data", "push", base + "/tree", "--dataset", "tree", "--follow-symlinks"});
  ASSERT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_THAT(followed.out, HasSubstr("3 files"));  // sub/a.txt, link.txt, dirlink/a.txt
  EXPECT_THAT(followed.out, HasSubstr("skipped 2 symbolic links"));
  auto files = Mlops({"data", "show", "tree", "--files"});
  EXPECT_THAT(files.out, HasSubstr("dirlink/a.txt"));
  EXPECT_THAT(files.out, HasSubstr("link.txt"));
}

TEST_F(ArtifactCliTest, PullVerifiesOrSaysItTrustedTheCache) {
  std::string src = dir_->path() + "/verify-src";
  std::filesystem::create_directories(src);
  std::ofstream(src + "/data.csv") << "x,y\n1,2\n";
  ASSERT_EQ(Mlops({"data", "push", src, "--dataset", "verify"}).exit_code, 0);
  std::string dest = dir_->path() + "/verify-dest";
  ASSERT_EQ(Mlops({"data", "pull", "verify", dest}).exit_code, 0);
  // A same-size edit with the mtime put back: the cache cannot see it.
  std::string file = dest + "/data.csv";
  struct stat before;
  ASSERT_EQ(::stat(file.c_str(), &before), 0);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.write("z", 1);
  }
  struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, file.c_str(), times, 0), 0);
  auto trusted = Mlops({"data", "pull", "verify", dest});
  ASSERT_EQ(trusted.exit_code, 0) << trusted.err;
  EXPECT_THAT(trusted.out, HasSubstr("1 trusted from the hash cache"));
  EXPECT_THAT(trusted.out, HasSubstr("--verify re-hashes them"));
  auto verified = Mlops({"data", "pull", "verify", dest, "--verify"});
  ASSERT_EQ(verified.exit_code, 0) << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("1 files written"));
  EXPECT_THAT(verified.out, ::testing::Not(HasSubstr("trusted")));
  EXPECT_EQ(Sums(src), Sums(dest));
}

TEST_F(ArtifactCliTest, PullNeverWritesThroughALinkAndKeepsOnlyPermissionBits) {
  std::string src = dir_->path() + "/safe-src";
  std::filesystem::create_directories(src + "/sub");
  std::ofstream(src + "/sub/f.txt") << "inside\n";
  std::ofstream(src + "/tool.sh") << "#!/bin/sh\n";
  ASSERT_EQ(::chmod((src + "/tool.sh").c_str(), 06777), 0);
  auto push = Mlops({"data", "push", src, "--dataset", "safe"});
  ASSERT_EQ(push.exit_code, 0) << push.err;
  auto show = Mlops({"data", "show", "safe", "--files"});
  EXPECT_THAT(show.out, HasSubstr("0777  "));  // setuid and setgid were not stored
  // A target whose `sub` is a link to somewhere else: nothing is written there.
  std::string elsewhere = dir_->path() + "/elsewhere";
  std::filesystem::create_directories(elsewhere);
  std::string dest = dir_->path() + "/safe-dest";
  std::filesystem::create_directories(dest);
  std::filesystem::create_directory_symlink(elsewhere, dest + "/sub");
  auto pull =
      testing::RunCommand({"/bin/sh", "-c",
                           "umask 027 && exec " + std::string(MLOPS_CLI_BIN) + " --server " +
                               server_->address() + " data pull safe " + dest},
                          Env());
  EXPECT_EQ(pull.exit_code, 1);
  EXPECT_THAT(pull.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(pull.err, HasSubstr("is a symbolic link"));
  EXPECT_TRUE(std::filesystem::is_empty(elsewhere));
  // Into a clean target: the mode is the permission bits less the umask, never setuid.
  std::filesystem::remove(dest + "/sub");
  pull = testing::RunCommand({"/bin/sh", "-c",
                              "umask 027 && exec " + std::string(MLOPS_CLI_BIN) + " --server " +
                                  server_->address() + " data pull safe " + dest},
                             Env());
  ASSERT_EQ(pull.exit_code, 0) << pull.err;
  struct stat st;
  ASSERT_EQ(::stat((dest + "/tool.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::stat((dest + "/sub/f.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(ArtifactCliTest, AKilledUploadResumesWhereItStopped) {
  std::string path = dir_->path() + "/resume.bin";
  WriteRandom(path, 300 << 20, 7);
  std::string chunks = dir_->path() + "/data/artifact/chunks";
  auto count_chunks = [&] {
    int n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(chunks, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      n += it->is_regular_file() && it->path().parent_path().filename() != "tmp";
    }
    return n;
  };
  int before = count_chunks();
  std::vector<std::string> args = {MLOPS_CLI_BIN, "--server", server_->address(),
                                   "artifact",    "put",      path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, MLOPS_CLI_BIN, nullptr, nullptr, argv.data(), environ), 0);
  // Kill it once part of the file is stored.
  for (int i = 0; i < 2000 && count_chunks() < before + 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the upload finished before it could be killed";
  int stored = count_chunks() - before;
  ASSERT_GE(stored, 40);
  auto stat = Mlops(
      {"artifact", "stat", testing::RunCommand({"/usr/bin/sha256sum", path}).out.substr(0, 64)});
  EXPECT_EQ(stat.exit_code, 1) << "a half upload must not be visible";
  EXPECT_THAT(stat.err, HasSubstr("NOT_FOUND"));

  auto resumed = Mlops({"artifact", "put", path});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  // "sent X in N of M chunks": fewer chunks than the file has.
  size_t in = resumed.err.find(" in ");
  size_t of = resumed.err.find(" of ", in);
  int sent = std::stoi(resumed.err.substr(in + 4, of - in - 4));
  int total = std::stoi(resumed.err.substr(of + 4));
  EXPECT_LE(sent, total - stored) << resumed.err;
  std::string digest = resumed.out.substr(0, 64);
  std::string out = dir_->path() + "/resume.out";
  ASSERT_EQ(Mlops({"artifact", "get", digest, out}).exit_code, 0);
  EXPECT_EQ(testing::RunCommand({"/usr/bin/sha256sum", out}).out.substr(0, 64), digest);
  std::filesystem::remove(path);
  std::filesystem::remove(out);
}

TEST_F(ArtifactCliTest, ScrubReportsCorruptionAndCountsItAsAMetric) {
  std::string path = dir_->path() + "/scrub.bin";
  WriteRandom(path, 3 << 20, 9);
  auto put = Mlops({"artifact", "put", path});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  auto clean = Mlops({"artifact", "scrub"});
  ASSERT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  // Corrupt one stored chunk file of this blob.
  auto stat = Mlops({"artifact", "stat", put.out.substr(0, 64), "--chunks"});
  ASSERT_EQ(stat.exit_code, 0);
  std::string chunk = stat.out.substr(stat.out.find("\n  ") + 3, 64);
  std::string file = dir_->path() + "/data/artifact/chunks/" + chunk.substr(0, 2) + "/" + chunk;
  ASSERT_TRUE(std::filesystem::exists(file)) << file;
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.write("XXXX", 4);
  }
  auto dirty = Mlops({"artifact", "scrub"});
  EXPECT_EQ(dirty.exit_code, 1);
  EXPECT_THAT(dirty.out, HasSubstr("corrupt " + chunk));
  auto [code, body] = testing::HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_EQ(code, 200);
  EXPECT_THAT(body, HasSubstr("mlops_artifact_scrub_corrupt_chunks_total 1"));
  EXPECT_THAT(body, HasSubstr("mlops_artifact_chunks_stored_total"));
  // A download of the damaged blob fails its digest check instead of writing bad bytes.
  auto get = Mlops({"artifact", "get", put.out.substr(0, 64), dir_->path() + "/scrub.out"});
  EXPECT_EQ(get.exit_code, 1);
  EXPECT_THAT(get.err, HasSubstr("DATA_LOSS"));
  EXPECT_FALSE(std::filesystem::exists(dir_->path() + "/scrub.out"));
  EXPECT_THAT(get.err, HasSubstr("chunk " + chunk + " is corrupt"));
  // Repair; a scrub after it still reports the chunk and the blob it makes unreadable.
  EXPECT_EQ(Mlops({"artifact", "scrub", "--repair"}).exit_code, 1);
  auto after = Mlops({"artifact", "scrub"});
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_THAT(after.out, HasSubstr("missing " + chunk));
  EXPECT_THAT(after.out, HasSubstr("unreadable blob " + put.out.substr(0, 64)));
  // A re-upload sends the damaged chunk (and only it) and heals the blob.
  auto reput = Mlops({"artifact", "put", path});
  ASSERT_EQ(reput.exit_code, 0) << reput.err;
  EXPECT_THAT(reput.err, HasSubstr(" in 1 of "));
  EXPECT_EQ(Mlops({"artifact", "scrub"}).exit_code, 0);
  auto healed = Mlops({"artifact", "get", put.out.substr(0, 64), dir_->path() + "/healed.out"});
  ASSERT_EQ(healed.exit_code, 0) << healed.err;
  EXPECT_EQ(testing::RunCommand({"/usr/bin/cmp", path, dir_->path() + "/healed.out"}).exit_code, 0);
}

}  // namespace
}  // namespace mlops
