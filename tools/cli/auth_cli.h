// `mlops auth ...`: tokens for the servers' token file (docs/security.md). Local: no server.
#pragma once

namespace mlops::cli {

class Args;
// `mlops auth token create ...` (the group and the word "token" already taken).
int AuthTokenCommandLine(Args& args, bool json);

}  // namespace mlops::cli
