#include "tools/cli/auth_cli.h"

#include <iostream>

#include "services/common/auth.h"
#include "services/common/logging.h"
#include "services/common/names.h"
#include "tools/cli/cli_util.h"

namespace mlops::cli {

int AuthTokenCommandLine(Args& args, bool json) {
  std::string command = args.Positional("token command (create)");
  if (command != "create")
    throw UsageError{"unknown auth token command '" + command + "'; commands: create"};
  std::optional<std::string> subject = args.Take("--subject");
  std::optional<std::string> file = args.Take("--auth-token-file");
  if (!subject) throw UsageError{"auth token create: --subject is required"};
  if (!file)
    throw UsageError{
        "auth token create: --auth-token-file (the file the server reads as --auth_token_file) is "
        "required"};
  TokenEntry entry;
  entry.principal.subject = *subject;
  for (const std::string& grant : args.TakeAll("--grant")) {
    auto [project, role_name] = SplitKeyValue(grant, "--grant PROJECT=ROLE");
    Role role;
    if (!ParseRole(role_name, &role)) {
      throw UsageError{"--grant " + grant + ": the role must be viewer, editor or admin"};
    }
    if (project != kEveryProject) {
      if (absl::Status valid = ValidateName(NameKind::kIdentifier, "--grant project", project);
          !valid.ok()) {
        throw UsageError{std::string(valid.message())};
      }
    }
    entry.principal.grants[project] = role;
  }
  entry.principal.is_operator = args.TakeFlag("--operator");
  if (std::optional<std::string> expires = args.Take("--expires")) {
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, *expires, &entry.expires, &error)) {
      throw UsageError{"--expires " + *expires + ": not an RFC 3339 time (2027-06-30T00:00:00Z)"};
    }
  }
  args.ExpectEmpty();
  if (entry.principal.grants.empty() && !entry.principal.is_operator) {
    throw UsageError{
        "auth token create: give at least one --grant PROJECT=ROLE or --operator "
        "(a token with neither may call nothing)"};
  }
  std::string token = NewToken();
  entry.sha256 = TokenHash(token);
  if (absl::Status status = AppendTokenEntry(*file, entry); !status.ok()) FailStatus(status);
  if (json) {
    std::cout << "{\"token\":" << JsonQuote(token) << ",\"subject\":" << JsonQuote(*subject)
              << ",\"sha256\":\"" << entry.sha256 << "\"}\n";
  } else {
    std::cout << token << "\n";
    std::cerr << "mlops: token for " << *subject << " added to " << *file
              << " (its SHA-256 only). It is shown once: store it now (MLOPS_TOKEN or "
                 "--token-file).\n";
  }
  return 0;
}

}  // namespace mlops::cli
