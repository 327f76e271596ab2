#include "tools/cli/lineage_cli.h"

#include <google/protobuf/util/json_util.h>
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "services/artifact/client/artifact_client.h"
#include "services/common/ids.h"
#include "services/common/projects.h"
#include "services/common/strings.h"

namespace mlops::cli {
namespace {

namespace mv1 = mlops::metadata::v1;

// Milliseconds since the epoch from "1764220800000", "2026-11-27T05:00:00Z" or
// "2026-11-27 05:00:00" (UTC).
int64_t ParseTime(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    return ParseInt(text, "--at");
  }
  std::tm tm{};
  for (const char* format :
       {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"}) {
    tm = {};
    const char* end = strptime(text.c_str(), format, &tm);
    if (end != nullptr && *end == '\0') return static_cast<int64_t>(timegm(&tm)) * 1000 + 999;
  }
  throw UsageError{"--at '" + text + "': milliseconds, or YYYY-MM-DD[THH:MM:SS[Z]] (UTC)"};
}

// Who is moving an alias: $USER, else $LOGNAME, else the account name of the process.
std::string CurrentUser() {
  for (const char* var : {"USER", "LOGNAME"}) {
    const char* value = std::getenv(var);
    if (value != nullptr && *value != '\0') return value;
  }
  if (const passwd* entry = getpwuid(getuid())) return entry->pw_name;
  return "";
}

std::string DotEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string ValueText(const mv1::Value& v) {
  switch (v.kind_case()) {
    case mv1::Value::kIntValue:
      return std::to_string(v.int_value());
    case mv1::Value::kDoubleValue:
      return FormatDouble(v.double_value());
    case mv1::Value::kStringValue:
      return v.string_value();
    case mv1::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    default:
      return "{...}";
  }
}

class LineageCli {
 public:
  LineageCli(std::shared_ptr<grpc::Channel> metadata, std::shared_ptr<grpc::Channel> artifact,
             const std::string& output)
      : artifact_channel_(artifact),
        lineage_(mv1::LineageService::NewStub(metadata)),
        registry_(mv1::ModelRegistry::NewStub(metadata)),
        output_(output) {}

  template <typename Stub, typename Request, typename Response>
  Response Call(Stub* stub,
                grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                const Request& request) {
    return CallOrExit(stub, method, request, std::chrono::seconds(60));
  }

  int Lineage(Args& args) {
    std::string ref = args.Positional(
        "REF (artifact:ID, execution:ID, run:RUN_ID, "
        "model:NAME@ALIAS|VERSION)");
    mv1::GetLineageRequest request;
    bool upstream = args.TakeFlag("--upstream");
    bool downstream = args.TakeFlag("--downstream");
    bool both = args.TakeFlag("--both") || (upstream && downstream);
    request.set_direction(both         ? mv1::GetLineageRequest::BOTH
                          : downstream ? mv1::GetLineageRequest::DOWNSTREAM
                                       : mv1::GetLineageRequest::UPSTREAM);
    if (auto depth = args.Take("--depth")) {
      request.set_max_hops(static_cast<int>(ParseInt(*depth, "--depth")));
    }
    if (auto stop = args.Take("--stop")) request.set_stop_filter(*stop);
    args.ExpectEmpty();
    SetStart(ref, &request);
    request.set_page_size(10000);
    mv1::LineageGraph all;
    do {
      auto page = Call(lineage_.get(), &mv1::LineageService::Stub::GetLineage, request);
      for (auto& n : *page.mutable_nodes()) *all.add_nodes() = std::move(n);
      for (auto& e : *page.mutable_edges()) *all.add_edges() = std::move(e);
      all.set_total_nodes(page.total_nodes());
      request.set_page_token(page.next_page_token());
    } while (!request.page_token().empty());
    if (output_ == "json") {
      PrintJson(all);
    } else if (output_ == "dot") {
      PrintDot(all);
    } else {
      PrintGraph(all);
    }
    return 0;
  }

  int Models(const std::string& command, Args& args) {
    if (command == "create") {
      mv1::CreateRegisteredModelRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_description(args.Take("--description").value_or(""));
      for (const auto& tag : args.TakeAll("--tag")) {
        auto [k, v] = SplitKeyValue(tag, "--tag");
        (*request.mutable_tags())[k] = v;
      }
      args.ExpectEmpty();
      PrintModel(Call(registry_.get(), &mv1::ModelRegistry::Stub::CreateRegisteredModel, request));
      return 0;
    }
    if (command == "list") {
      args.ExpectEmpty();
      mv1::ListRegisteredModelsRequest request;
      mv1::ListRegisteredModelsResponse all;
      do {
        auto page = Call(registry_.get(), &mv1::ModelRegistry::Stub::ListRegisteredModels, request);
        for (auto& m : *page.mutable_models()) *all.add_models() = std::move(m);
        request.set_page_token(page.next_page_token());
      } while (!request.page_token().empty());
      if (output_ == "json") return PrintJson(all), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : all.models()) {
        std::string aliases;
        for (const auto& [a, v] :
             std::map<std::string, int64_t>(m.aliases().begin(), m.aliases().end())) {
          aliases += (aliases.empty() ? "" : ", ") + a + "=" + std::to_string(v);
        }
        rows.push_back({m.name(), std::to_string(m.latest_version()), aliases,
                        FormatTime(m.update_time_ms())});
      }
      PrintTable({"MODEL", "LATEST", "ALIASES", "UPDATED"}, rows);
      return 0;
    }
    if (command == "register") {
      mv1::CreateModelVersionRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_artifact_digest(args.Take("--digest").value_or(""));
      request.set_source_run_id(args.Take("--run").value_or(""));
      if (auto id = args.Take("--artifact-id"))
        request.set_artifact_id(ParseInt(*id, "--artifact-id"));
      request.set_description(args.Take("--description").value_or(""));
      // In a pipeline step, one version per model per step: a retried attempt gets the same.
      request.set_request_id(
          args.Take("--request-id").value_or(StepRequestId("models/" + request.name())));
      for (const auto& tag : args.TakeAll("--tag")) {
        auto [k, v] = SplitKeyValue(tag, "--tag");
        (*request.mutable_tags())[k] = v;
      }
      request.set_create_model(true);
      std::optional<std::string> file = args.Take("--file");
      args.ExpectEmpty();
      if (file) {
        if (!request.artifact_digest().empty()) {
          throw UsageError{"models register: give --file or --digest, not both"};
        }
        auto [digest, artifact_id] = UploadModelFile(*file, request.name());
        request.set_artifact_digest(digest);
        if (request.artifact_id() == 0) request.set_artifact_id(artifact_id);
      }
      PrintVersion(Call(registry_.get(), &mv1::ModelRegistry::Stub::CreateModelVersion, request));
      return 0;
    }
    if (command == "versions") {
      mv1::ListModelVersionsRequest request;
      request.set_name(args.Positional("NAME"));
      int64_t max = ParseInt(args.Take("--max").value_or("100"), "--max");
      args.ExpectEmpty();
      mv1::ListModelVersionsResponse all;
      do {
        auto page = Call(registry_.get(), &mv1::ModelRegistry::Stub::ListModelVersions, request);
        for (auto& v : *page.mutable_versions()) {
          if (all.versions_size() < max) *all.add_versions() = std::move(v);
        }
        request.set_page_token(page.next_page_token());
      } while (!request.page_token().empty() && all.versions_size() < max);
      if (output_ == "json") return PrintJson(all), 0;
      std::vector<std::vector<std::string>> rows;
      for (const auto& v : all.versions()) {
        std::string aliases;
        for (const auto& a : v.aliases()) aliases += (aliases.empty() ? "" : ",") + a;
        rows.push_back({std::to_string(v.version()), mv1::ModelVersion::Status_Name(v.status()),
                        aliases, v.artifact_digest().substr(0, 16), v.source_run_id(),
                        FormatTime(v.create_time_ms())});
      }
      PrintTable({"VERSION", "STATUS", "ALIASES", "DIGEST", "RUN", "CREATED"}, rows);
      return 0;
    }
    if (command == "show") {
      std::string spec = args.Positional("NAME[@ALIAS|VERSION]");
      args.ExpectEmpty();
      size_t at = spec.find('@');
      if (at == std::string::npos) {
        mv1::GetRegisteredModelRequest request;
        request.set_name(spec);
        PrintModel(Call(registry_.get(), &mv1::ModelRegistry::Stub::GetRegisteredModel, request));
        return 0;
      }
      PrintVersion(GetVersion(spec.substr(0, at), spec.substr(at + 1)));
      return 0;
    }
    if (command == "alias") {
      std::string name = args.Positional("NAME");
      std::string alias = args.Positional("ALIAS");
      bool remove = args.TakeFlag("--delete");
      std::string actor = args.Take("--actor").value_or(CurrentUser());
      std::string reason = args.Take("--reason").value_or("");
      mv1::AliasMove move;
      if (remove) {
        args.ExpectEmpty();
        mv1::DeleteAliasRequest request;
        request.set_name(name);
        request.set_alias(alias);
        request.set_actor(actor);
        request.set_reason(reason);
        move = Call(registry_.get(), &mv1::ModelRegistry::Stub::DeleteAlias, request);
      } else {
        mv1::SetAliasRequest request;
        request.set_name(name);
        request.set_alias(alias);
        request.set_version(ParseInt(args.Positional("VERSION"), "VERSION"));
        if (auto expect = args.Take("--expect")) {
          request.set_expected_version(ParseInt(*expect, "--expect"));
        }
        request.set_actor(actor);
        request.set_reason(reason);
        request.set_override(args.TakeFlag("--override"));
        args.ExpectEmpty();
        move = Call(registry_.get(), &mv1::ModelRegistry::Stub::SetAlias, request);
      }
      if (output_ == "json") return PrintJson(move), 0;
      std::cout << name << "@" << alias << ": " << VersionText(move.from_version()) << " -> "
                << VersionText(move.to_version()) << " (move " << move.sequence() << " by "
                << move.actor() << " at " << FormatTime(move.time_ms())
                << (move.overridden() ? ", OVERRIDING the alias's blessing requirement" : "")
                << ")\n";
      return 0;
    }
    if (command == "watch") {
      mv1::WatchAliasRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_alias(args.Positional("ALIAS"));
      const int64_t count = ParseInt(args.Take("--count").value_or("0"), "--count");
      if (auto after = args.Take("--after"))
        request.set_after_sequence(ParseInt(*after, "--after"));
      args.ExpectEmpty();
      // Follows the alias until interrupted (or --count updates); when the server goes away it
      // reconnects, resuming after the last move seen, so no move is missed or shown twice.
      int64_t received = 0;
      int backoff_ms = 500;
      for (;;) {
        grpc::ClientContext context;
        auto reader = registry_->WatchAlias(&context, request);
        mv1::AliasUpdate update;
        while (reader->Read(&update)) {
          backoff_ms = 500;
          request.set_after_sequence(update.move().sequence());
          const auto& m = update.move();
          if (output_ == "json") {
            std::string line;
            (void)google::protobuf::util::MessageToJsonString(update, &line);
            std::cout << line << std::endl;
          } else {
            std::cout << request.name() << "@" << request.alias() << " -> "
                      << (m.to_version() == 0 ? std::string("deleted")
                                              : VersionText(m.to_version()))
                      << (update.has_version() ? " (" + update.version().artifact_digest() + ")"
                                               : "")
                      << ": move " << m.sequence() << " by " << m.actor() << " at "
                      << FormatTime(m.time_ms()) << (m.overridden() ? ", OVERRIDE" : "")
                      << (m.reason().empty() ? "" : ", " + m.reason()) << std::endl;
          }
          if (count > 0 && ++received >= count) {
            context.TryCancel();
            reader->Finish();
            return 0;
          }
        }
        grpc::Status status = reader->Finish();
        // The server going away (shutting down, restarting, unreachable) ends the stream with
        // one of these; anything else is an answer.
        if (status.error_code() != grpc::StatusCode::UNAVAILABLE &&
            status.error_code() != grpc::StatusCode::CANCELLED &&
            status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
          FailRpc(status);
        }
        std::cerr << "watch: " << status.error_message() << "; reconnecting in " << backoff_ms
                  << " ms, after move " << request.after_sequence() << "\n";
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
        backoff_ms = std::min(backoff_ms * 2, 10000);
      }
    }
    if (command == "alias-policy") {
      mv1::SetAliasPolicyRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_alias(args.Positional("ALIAS"));
      const bool require = args.TakeFlag("--require-blessing");
      const bool none = args.TakeFlag("--none");
      if (require == none) throw UsageError{"alias-policy needs --require-blessing or --none"};
      request.mutable_policy()->set_require_blessing(require);
      args.ExpectEmpty();
      auto model = Call(registry_.get(), &mv1::ModelRegistry::Stub::SetAliasPolicy, request);
      if (output_ == "json") return PrintJson(model), 0;
      std::cout << request.name() << "@" << request.alias()
                << (require ? ": moves only to a blessed version (or with --override --reason)\n"
                            : ": moves to any version\n");
      return 0;
    }
    if (command == "history") {
      mv1::GetAliasHistoryRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_alias(args.Positional("ALIAS"));
      std::optional<std::string> at = args.Take("--at");
      if (at) request.set_at_time_ms(ParseTime(*at));
      args.ExpectEmpty();
      mv1::GetAliasHistoryResponse all;
      if (at) {
        // Say the time as the user wrote it (the request asks for the end of that second).
        grpc::ClientContext context;
        grpc::Status status = registry_->GetAliasHistory(&context, request, &all);
        if (status.error_code() == grpc::StatusCode::NOT_FOUND &&
            status.error_message().find("pointed at nothing") != std::string::npos) {
          std::cerr << "error: NOT_FOUND: alias " << request.alias() << " of " << request.name()
                    << " pointed at nothing at " << *at << "\n";
          std::exit(1);
        }
        if (!status.ok()) FailRpc(status);
        request.set_page_token(all.next_page_token());
      }
      while (!at || !request.page_token().empty()) {
        auto page = Call(registry_.get(), &mv1::ModelRegistry::Stub::GetAliasHistory, request);
        for (auto& m : *page.mutable_moves()) *all.add_moves() = std::move(m);
        request.set_page_token(page.next_page_token());
        if (request.page_token().empty()) break;
      }
      if (output_ == "json") return PrintJson(all), 0;
      if (at) {
        const auto& m = all.moves(0);
        std::cout << request.name() << "@" << request.alias() << " at " << *at << ": version "
                  << m.to_version() << " (since " << FormatTime(m.time_ms()) << ", moved by "
                  << m.actor() << ")\n";
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : all.moves()) {
        rows.push_back({std::to_string(m.sequence()), FormatTime(m.time_ms()),
                        VersionText(m.from_version()), VersionText(m.to_version()), m.actor(),
                        m.overridden() ? "OVERRIDE: " + m.reason() : m.reason()});
      }
      PrintTable({"MOVE", "TIME", "FROM", "TO", "BY", "REASON"}, rows);
      return 0;
    }
    if (command == "delete-version") {
      mv1::DeleteModelVersionRequest request;
      request.set_name(args.Positional("NAME"));
      request.set_version(ParseInt(args.Positional("VERSION"), "VERSION"));
      args.ExpectEmpty();
      Call(registry_.get(), &mv1::ModelRegistry::Stub::DeleteModelVersion, request);
      std::cout << "deleted " << request.name() << " version " << request.version() << "\n";
      return 0;
    }
    throw UsageError{"unknown command 'models " + command + "'"};
  }

 private:
  static std::string VersionText(int64_t v) { return v == 0 ? "-" : "v" + std::to_string(v); }

  mv1::ModelVersion GetVersion(const std::string& name, const std::string& ref) {
    mv1::GetModelVersionRequest request;
    request.set_name(name);
    if (!ref.empty() && ref.find_first_not_of("0123456789") == std::string::npos) {
      request.set_version(ParseInt(ref, "VERSION"));
    } else {
      request.set_alias(ref.empty() ? "production" : ref);
    }
    return Call(registry_.get(), &mv1::ModelRegistry::Stub::GetModelVersion, request);
  }

  void SetStart(const std::string& ref, mv1::GetLineageRequest* request) {
    size_t colon = ref.find(':');
    std::string kind = colon == std::string::npos ? "" : ref.substr(0, colon);
    std::string value = colon == std::string::npos ? ref : ref.substr(colon + 1);
    if (kind.empty()) {
      absl::StatusOr<ScopedName> scoped = ParseScoped("REF", value);  // a run id in a project
      if (IsValidId(value) || (scoped.ok() && IsValidId(scoped->name))) {
        kind = "run";
      } else {
        kind = "artifact";
      }
    }
    if (kind == "artifact" || kind == "a") {
      request->set_artifact_id(ParseInt(value, "artifact id"));
    } else if (kind == "execution" || kind == "e") {
      request->set_execution_id(ParseInt(value, "execution id"));
    } else if (kind == "run") {
      request->set_run_id(value);
    } else if (kind == "model") {
      size_t at = value.find('@');
      mv1::ModelVersion version =
          GetVersion(value.substr(0, at), at == std::string::npos ? "" : value.substr(at + 1));
      if (version.artifact_id() > 0) {
        request->set_artifact_id(version.artifact_id());
        return;
      }
      // Find the artifact by its content digest: a Model artifact, else whatever recorded those
      // bytes (a pipeline step's output, a run's output).
      int64_t id = FindArtifactByDigest(version.artifact_digest());
      if (id == 0) {
        std::cerr << "error: NOT_FOUND: model " << version.name() << " version "
                  << version.version()
                  << " has no artifact with its digest in the lineage graph (it was registered "
                     "by --digest and nothing recorded those bytes; register the file with "
                     "--file, or produce it with mlops run or a pipeline)\n";
        std::exit(1);
      }
      request->set_artifact_id(id);
    } else {
      throw UsageError{"REF '" + ref +
                       "': artifact:ID, execution:ID, run:RUN_ID or model:NAME@ALIAS"};
    }
  }

  static std::string Label(const mv1::LineageNode& n) {
    if (n.has_artifact()) {
      const auto& a = n.artifact();
      return a.type() + (a.name().empty() ? "" : " " + a.name());
    }
    const auto& e = n.execution();
    return e.type() + (e.name().empty() ? "" : " " + e.name());
  }

  static std::string NodeName(const mv1::LineageNode& n) {
    return n.has_artifact() ? "a" + std::to_string(n.artifact().id())
                            : "e" + std::to_string(n.execution().id());
  }

  void PrintGraph(const mv1::LineageGraph& graph) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : graph.nodes()) {
      std::string detail;
      if (n.has_artifact()) {
        const auto& a = n.artifact();
        if (!a.digest().empty()) detail = "digest " + a.digest().substr(0, 12);
        if (!a.uri().empty()) detail += (detail.empty() ? "" : " ") + a.uri();
        for (const auto& [k, v] :
             std::map<std::string, mv1::Value>(a.properties().begin(), a.properties().end())) {
          detail += (detail.empty() ? "" : " ") + k + "=" + ValueText(v);
        }
      } else if (!n.execution().run_id().empty()) {
        detail = "run " + n.execution().run_id();
      }
      rows.push_back({std::to_string(n.hop()), n.has_artifact() ? "artifact" : "execution",
                      NodeName(n).substr(1), Label(n),
                      n.has_artifact() ? mv1::Artifact::State_Name(n.artifact().state())
                                       : mv1::Execution::State_Name(n.execution().state()),
                      detail + (n.stopped() ? " (stopped)" : "")});
    }
    PrintTable({"HOP", "KIND", "ID", "TYPE/NAME", "STATE", "DETAIL"}, rows);
    std::cout << graph.nodes_size() << " nodes, " << graph.edges_size() << " edges\n";
  }

  void PrintDot(const mv1::LineageGraph& graph) {
    std::cout << "digraph lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n";
    for (const auto& n : graph.nodes()) {
      bool artifact = n.has_artifact();
      std::cout << "  \"" << NodeName(n) << "\" [shape=" << (artifact ? "box" : "ellipse")
                << ", label=\"" << DotEscape(Label(n)) << "\\n#"
                << (artifact ? n.artifact().id() : n.execution().id()) << "\""
                << (n.hop() == 0 ? ", style=bold" : "") << "];\n";
    }
    // Data flows along edges: inputs into executions, executions into outputs.
    for (const auto& e : graph.edges()) {
      std::string a = "a" + std::to_string(e.artifact_id());
      std::string x = "e" + std::to_string(e.execution_id());
      bool input = e.type() == mv1::Event::INPUT;
      std::cout << "  \"" << (input ? a : x) << "\" -> \"" << (input ? x : a) << "\"";
      if (!e.path().empty()) std::cout << " [label=\"" << DotEscape(e.path()) << "\"]";
      std::cout << ";\n";
    }
    std::cout << "}\n";
  }

  void PrintModel(const mv1::RegisteredModel& m) {
    if (output_ == "json") return PrintJson(m);
    std::cout << "model:       " << m.name() << "\ndescription: " << m.description()
              << "\nlatest:      " << VersionText(m.latest_version())
              << "\ncreated:     " << FormatTime(m.create_time_ms()) << "\n";
    for (const auto& [a, v] :
         std::map<std::string, int64_t>(m.aliases().begin(), m.aliases().end())) {
      auto policy = m.alias_policies().find(a);
      std::cout << "alias:       " << a << " -> v" << v
                << (policy != m.alias_policies().end() && policy->second.require_blessing()
                        ? " (requires a blessing)"
                        : "")
                << "\n";
    }
    for (const auto& [k, v] :
         std::map<std::string, std::string>(m.tags().begin(), m.tags().end())) {
      std::cout << "tag:         " << k << "=" << v << "\n";
    }
  }

  void PrintVersion(const mv1::ModelVersion& v) {
    if (output_ == "json") return PrintJson(v);
    std::cout << "model:    " << v.name() << "\nversion:  " << v.version()
              << "\nstatus:   " << mv1::ModelVersion::Status_Name(v.status())
              << "\ndigest:   " << v.artifact_digest()
              << "\nartifact: " << (v.artifact_id() ? std::to_string(v.artifact_id()) : "-")
              << "\nrun:      " << v.source_run_id()
              << "\ncreated:  " << FormatTime(v.create_time_ms()) << "\naliases:  ";
    for (int i = 0; i < v.aliases_size(); ++i) std::cout << (i ? ", " : "") << v.aliases(i);
    std::cout << "\n";
    if (v.has_blessing()) {
      const auto& b = v.blessing();
      std::cout << "blessing: " << (b.blessed() ? "BLESSED" : "NOT BLESSED") << " by evaluation "
                << b.evaluation_id() << " at " << FormatTime(b.time_ms());
      if (b.champion_version() > 0) std::cout << " against v" << b.champion_version();
      std::cout << "\n";
      for (const auto& rule : b.failed()) std::cout << "  failed: " << rule << "\n";
      for (const auto& rule : b.passed()) std::cout << "  passed: " << rule << "\n";
    }
  }

  // The lineage artifact with this content digest (a Model first, else whatever recorded those
  // bytes), or 0.
  int64_t FindArtifactByDigest(const std::string& digest) {
    mv1::ListNodesRequest list;
    list.set_type("Model");
    list.set_filter("digest = '" + digest + "'");
    list.set_page_size(1);
    auto found = Call(lineage_.get(), &mv1::LineageService::Stub::ListArtifacts, list);
    if (found.artifacts_size() == 0) {
      list.clear_type();
      found = Call(lineage_.get(), &mv1::LineageService::Stub::ListArtifacts, list);
    }
    return found.artifacts_size() == 0 ? 0 : found.artifacts(0).id();
  }

  // Uploads a model file (pinned) and returns its digest and the lineage node for it: the one that
  // already records those bytes (a run's or a step's output), else a new Model artifact.
  std::pair<std::string, int64_t> UploadModelFile(const std::string& path,
                                                  const std::string& model) {
    artifact::ArtifactClient client(artifact_channel_);
    auto blob = client.UploadFile(path, /*pin=*/true, nullptr);
    if (!blob.ok()) {
      FailRpc(grpc::Status(static_cast<grpc::StatusCode>(blob.status().code()),
                           std::string(blob.status().message())));
    }
    int64_t id = FindArtifactByDigest(blob->digest());
    if (id == 0) {
      mv1::PutArtifactRequest put;
      mv1::Artifact* a = put.mutable_artifact();
      a->set_type("Model");
      a->set_name(model);
      a->set_uri("mlops://blobs/" + blob->digest());
      a->set_digest(blob->digest());
      a->set_size(blob->size());
      a->set_state(mv1::Artifact::LIVE);
      a->set_external_id("model-file:" + blob->digest());  // the same file again: the same node
      id = Call(lineage_.get(), &mv1::LineageService::Stub::PutArtifact, put).id();
    }
    return {blob->digest(), id};
  }

  std::shared_ptr<grpc::Channel> artifact_channel_;
  std::unique_ptr<mv1::LineageService::Stub> lineage_;
  std::unique_ptr<mv1::ModelRegistry::Stub> registry_;
  std::string output_;
};

}  // namespace

int RunLineageCommand(const std::string& group, const std::string& command, Args& args,
                      std::shared_ptr<grpc::Channel> metadata,
                      std::shared_ptr<grpc::Channel> artifact, const std::string& output) {
  LineageCli cli(metadata, artifact, output);
  if (group == "lineage") return cli.Lineage(args);
  return cli.Models(command, args);
}

}  // namespace mlops::cli
