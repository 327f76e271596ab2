// `mlops auth ...`: tokens for the servers' token file (docs/security.md). Local: no server.
#pragma once

namespace mlops::cli {

class Args;
// `mlops auth token create ...` (the group and the word "token" already taken).
int AuthTokenCommandLine(Args& args, bool json);

struct Endpoints;
// `mlops audit list [--project P] [--subject S] [--since TIME] [--until TIME] [--max N]`: the
// audit logs of every distinct server among the endpoints, merged oldest first.
int AuditListCommandLine(Args& args, const Endpoints& endpoints, bool json);

}  // namespace mlops::cli
