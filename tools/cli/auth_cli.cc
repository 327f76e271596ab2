#include "tools/cli/auth_cli.h"

#include <algorithm>
#include <iostream>
#include <set>

#include "mlops/audit/v1/audit.grpc.pb.h"
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

namespace {

// A time as Unix ms or RFC 3339 (2026-11-27T05:00:00Z).
int64_t ParseTimeFlag(const std::string& text, const std::string& flag) {
  absl::Time time;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, text, &time, &error)) return absl::ToUnixMillis(time);
  return ParseInt(text, flag + " (ms since the epoch or 2026-11-27T05:00:00Z)");
}

}  // namespace

int AuditListCommandLine(Args& args, const Endpoints& endpoints, bool json) {
  audit::v1::ListAuditEntriesRequest request;
  request.set_project(endpoints.project);  // the global --project: "*" lists every project
  request.set_subject(args.Take("--subject").value_or(""));
  if (auto since = args.Take("--since")) request.set_since_ms(ParseTimeFlag(*since, "--since"));
  if (auto until = args.Take("--until")) request.set_until_ms(ParseTimeFlag(*until, "--until"));
  int64_t max = ParseInt(args.Take("--max").value_or("100"), "--max");
  if (max <= 0) throw UsageError{"--max must be positive"};
  args.ExpectEmpty();
  // Each server keeps its own log: ask each distinct one.
  std::set<std::string> addresses = {endpoints.metadata, endpoints.artifact, endpoints.scheduler,
                                     endpoints.monitoring};
  std::vector<audit::v1::AuditEntry> entries;
  for (const std::string& address : addresses) {
    auto stub = audit::v1::AuditService::NewStub(ServiceChannel(address, endpoints));
    audit::v1::ListAuditEntriesRequest page = request;
    page.set_page_size(static_cast<int>(std::min<int64_t>(max, 1000)));
    int64_t taken = 0;
    while (taken < max) {
      auto response = Call(stub.get(), &audit::v1::AuditService::Stub::ListAuditEntries, page,
                           std::chrono::seconds(30));
      if (!response.ok()) FailStatus(response.status());
      for (auto& entry : *response->mutable_entries()) {
        entries.push_back(std::move(entry));
        ++taken;
      }
      if (response->next_page_token().empty()) break;
      page.set_page_token(response->next_page_token());
    }
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.time_ms() < b.time_ms(); });
  if (static_cast<int64_t>(entries.size()) > max) {
    entries.erase(entries.begin(), entries.end() - max);  // the newest `max`
  }
  if (json) {
    audit::v1::ListAuditEntriesResponse out;
    for (auto& entry : entries) *out.add_entries() = std::move(entry);
    PrintJson(out);
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& entry : entries) {
    rows.push_back({FormatTime(entry.time_ms()), entry.subject().empty() ? "-" : entry.subject(),
                    entry.method().substr(entry.method().rfind('/') + 1), entry.project(),
                    entry.resource(), entry.code(), entry.request_id()});
  }
  PrintTable({"TIME", "SUBJECT", "METHOD", "PROJECT", "RESOURCE", "CODE", "REQUEST_ID"}, rows);
  return 0;
}

}  // namespace mlops::cli
