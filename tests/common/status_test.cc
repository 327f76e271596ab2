// Status codes: RocksDB codes mapped explicitly, the RETURN_IF_ERROR / ASSIGN_OR_RETURN macros.
#include "services/common/status.h"

#include <rocksdb/status.h>

#include "services/common/db.h"
#include "services/common/grpc_status.h"
#include "tests/testing/testing.h"

namespace mlops {
namespace {

using ::mlops::testing::StatusIs;

TEST(StatusTest, MapsRocksDbCodesExplicitly) {
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::OK()).code(), absl::StatusCode::kOk);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::NotFound()).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::Corruption()).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::Busy()).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(FromRocksStatus(rocksdb::Status::InvalidArgument("x"), "put").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(FromRocksStatus(rocksdb::Status::NoSpace(), "write"),
              StatusIs(absl::StatusCode::kResourceExhausted, "write: "));
  grpc::Status g = ToGrpcStatus(absl::NotFoundError("run x not found"));
  EXPECT_EQ(g.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.error_message(), "run x not found");
  EXPECT_EQ(FromGrpcStatus(g).code(), absl::StatusCode::kNotFound);
  EXPECT_STREQ(StatusCodeName(5), "NOT_FOUND");
  EXPECT_STREQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_STREQ(StatusCodeName(99), "UNKNOWN");
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int half, Half(x));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  RETURN_IF_ERROR(absl::OkStatus());
  return quarter;
}

TEST(StatusTest, Macros) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6).status(), StatusIs(absl::StatusCode::kInvalidArgument, "odd"));
}

}  // namespace
}  // namespace mlops
