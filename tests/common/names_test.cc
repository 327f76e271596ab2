// The one set of name rules (services/common/names.h): each kind accepts what its rule says and
// refuses the rest with INVALID_ARGUMENT naming the field; projects in names (projects.h).
#include "services/common/names.h"

#include <string>
#include <vector>

#include "services/common/projects.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

TEST(NamesTest, EachKindFollowsItsRule) {
  struct Case {
    NameKind kind;
    std::string name;
    bool ok;
  };
  const Case cases[] = {
      {NameKind::kIdentifier, "churn", true},
      {NameKind::kIdentifier, "2024.q1_v-2", true},
      {NameKind::kIdentifier, std::string(128, 'a'), true},
      {NameKind::kIdentifier, std::string(129, 'a'), false},
      {NameKind::kIdentifier, ".hidden", false},  // monitoring once took a leading '.'
      {NameKind::kIdentifier, "-x", false},
      {NameKind::kIdentifier, "a/b", false},
      {NameKind::kIdentifier, "a b", false},
      {NameKind::kIdentifier, "", false},
      {NameKind::kType, "Dataset", true},
      {NameKind::kType, "9bad", false},
      {NameKind::kAlias, "production", true},
      {NameKind::kAlias, "v1.2", true},
      {NameKind::kAlias, "1st", false},
      {NameKind::kAlias, std::string(65, 'a'), false},
      {NameKind::kStep, "train-lr_1", true},
      {NameKind::kStep, "train.1", false},  // a DNS label, a Job name: no '.'
      {NameKind::kStep, std::string(63, 's'), true},
      {NameKind::kStep, std::string(64, 's'), false},
      {NameKind::kQueue, "gpu_high-1", true},
      {NameKind::kQueue, "gpu.high", false},
      {NameKind::kDisplay, "My run (lr = 0.1), ünïcode", true},
      {NameKind::kDisplay, "tab\there", false},
      {NameKind::kDisplay, std::string(501, 'n'), false},
  };
  for (const Case& c : cases) {
    absl::Status status = ValidateName(c.kind, "field", c.name);
    EXPECT_EQ(status.ok(), c.ok) << c.name << ": " << status;
    if (!c.ok) {
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, "field \""));
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument, "must match"));
    }
  }
}

TEST(NamesTest, PathsAreRelativeWithoutDotComponents) {
  EXPECT_OK(ValidatePath("train/part-0001.csv"));
  const std::vector<std::string> bad_paths = {"",
                                              "/abs",
                                              "a//b",
                                              "a/./b",
                                              "../up",
                                              "a/..",
                                              std::string("a\0b", 3),
                                              std::string(4097, 'p'),
                                              std::string(256, 'c')};
  for (const std::string& bad : bad_paths) {
    EXPECT_THAT(ValidatePath(bad), StatusIs(absl::StatusCode::kInvalidArgument, "path"))
        << bad.size();
  }
}

TEST(ProjectsTest, NamesCarryTheirProjectAsAPrefixAndNoneMeansDefault) {
  auto scoped = ParseScoped("name", "projects/vision/churn");
  ASSERT_OK(scoped.status());
  EXPECT_EQ(scoped->project, "vision");
  EXPECT_EQ(scoped->name, "churn");
  scoped = ParseScoped("name", "churn");
  ASSERT_OK(scoped.status());
  EXPECT_EQ(scoped->project, "default");
  EXPECT_EQ(scoped->name, "churn");
  scoped = ParseScoped("run_id", "projects/a.b-c/x/y");  // the rest is the resource's own name
  ASSERT_OK(scoped.status());
  EXPECT_EQ(scoped->project, "a.b-c");
  EXPECT_EQ(scoped->name, "x/y");
  for (std::string bad : {"projects/", "projects/vision", "projects/vision/", "projects//x",
                          "projects/no way/x", "projects/-x/y"}) {
    EXPECT_THAT(ParseScoped("name", bad).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "name: \"" + bad + "\""))
        << bad;
  }
  EXPECT_EQ(ProjectOf("projects/vision/churn"), "vision");
  EXPECT_EQ(ProjectOf("churn"), "default");
  EXPECT_EQ(ProjectOf("projects/bad name/x"), "default");
  EXPECT_EQ(Qualify("vision", "churn"), "projects/vision/churn");
  EXPECT_EQ(Qualify("default", "churn"), "churn");
  EXPECT_EQ(CanonicalName("projects/default/churn"), "churn");
  EXPECT_EQ(CanonicalName("projects/vision/churn"), "projects/vision/churn");
  EXPECT_THAT(NotInProject("run", "0123", "vision"),
              StatusIs(absl::StatusCode::kNotFound, "run 0123 not found in project vision"));
}

}  // namespace
}  // namespace mlops
