// The access table (docs/security.md): what every RPC of every mlops service needs, and where its
// request names the project it acts in. The server's guard (rpc_guard.h) admits calls by it; the
// CLI's channels use it to put a request in the project given by --project (QualifyRequest).
#pragma once

#include <google/protobuf/message.h>

#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mlops {

// What a method needs, in the project its request names (kViewer..kAdmin) or globally.
enum class Access {
  kAuthenticated,  // any authenticated caller (global, read-only facts such as the queues)
  kViewer,
  kEditor,
  kAdmin,
  kOperator,  // the global operator role: storage-wide maintenance and configuration
};
std::string_view AccessName(Access access);

struct MethodAccess {
  std::string_view method;  // "/mlops.metadata.v1.MetadataService/CreateRun"
  Access access;
  bool mutation;  // changes stored state (audited)
  // Where the request names its project (docs/api.md, "Projects"): space-separated field paths of
  // the request ("run_id", "experiment.id", "experiment_ids"), whose values name it by their
  // `projects/{p}/` prefix (none: project default), except a field named `project`, which holds
  // the project itself (empty: default); every value must name the same project. "@metadata"
  // first: a client stream, whose project is the call's `mlops-project` metadata (default when
  // absent); the paths after it are those of each streamed message that name a project, which
  // the implementation refuses when they name another and a client qualifies (QualifyRequest).
  // "": project default (the resources of this method are all in project default) or, for the
  // global accesses, none.
  std::string_view project;
};

// Every RPC of every mlops service (the test in tests/common/rpc_guard_test.cc fails when a method
// of a service descriptor has no entry, or an entry names no method).
std::span<const MethodAccess> AccessTable();
const MethodAccess* FindMethodAccess(std::string_view method);

// The project a request of `method` acts in, read where the access table says (see
// MethodAccess::project); INVALID_ARGUMENT for a malformed project or a request that names two.
// For "@metadata ...", `stream_project` (the call's mlops-project metadata; empty: default).
absl::StatusOr<std::string> RequestProject(const MethodAccess& method,
                                           const google::protobuf::Message* request,
                                           std::string_view stream_project);

// The project one message of a client stream names by the fields after "@metadata" (for other
// methods, as RequestProject): the implementation refuses one that is not the stream's.
absl::StatusOr<std::string> MessageProject(const MethodAccess& method,
                                           const google::protobuf::Message& message);

// Puts `request` (or a streamed message) of `method` in `project` where it names none: each value
// of the method's project fields written without a prefix gets `projects/{project}/`, and an empty
// `project` field is set.
// Values that name a project already are left as they are (the server judges them). Nothing for
// project default.
void QualifyRequest(const MethodAccess& method, std::string_view project,
                    google::protobuf::Message* request);

}  // namespace mlops
