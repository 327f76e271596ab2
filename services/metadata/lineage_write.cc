// LineageStore: executions with their events, contexts, parent contexts and members.
#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "mlops/metadata/internal/lineage_storage.pb.h"
#include "services/common/encoding.h"
#include "services/common/ids.h"
#include "services/common/names.h"
#include "services/common/page_token.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/filter.h"
#include "services/metadata/lineage_store.h"
#include "services/metadata/lineage_store_internal.h"
#include "services/metadata/registry_store.h"

namespace mlops::metadata {

using google::protobuf::Map;

// Executions and contexts

absl::StatusOr<v1::PutExecutionResponse> LineageStore::PutExecution(
    const v1::PutExecutionRequest& request, std::string_view project) {
  const v1::Execution& in = request.execution();
  RETURN_IF_ERROR(ValidateProject(project));
  RETURN_IF_ERROR(CheckInProject("execution.type", in.type(), project));
  RETURN_IF_ERROR(CheckInProject("execution.external_id", in.external_id(), project));
  RETURN_IF_ERROR(CheckInProject("execution.run_id", in.run_id(), project));
  if (request.artifacts_size() > kMaxArtifactsPerExecution) {
    return absl::InvalidArgumentError("artifacts: more than 10000 in one call");
  }
  if (request.contexts_size() > kMaxContextsPerExecution) {
    return absl::InvalidArgumentError("contexts: more than 100 in one call");
  }
  RETURN_IF_ERROR(CheckLength("execution.name", in.name(), kMaxNameBytes));
  RETURN_IF_ERROR(CheckLength("execution.external_id", in.external_id(), kMaxExternalIdBytes));
  RETURN_IF_ERROR(CheckLength("execution.run_id", in.run_id(), 300));
  if (!v1::Execution::State_IsValid(in.state())) {
    return absl::InvalidArgumentError("execution.state: unknown");
  }
  if (in.id() > 0 && !in.external_id().empty()) {
    return absl::InvalidArgumentError("execution: give an id (update) or an external_id, not both");
  }
  // Shape and schema checks, before any lock.
  std::map<std::pair<v1::NodeKind, std::string>, v1::NodeType> types;
  auto type_of = [&](v1::NodeKind kind, const std::string& name) -> absl::StatusOr<v1::NodeType> {
    auto it = types.find({kind, name});
    if (it != types.end()) return it->second;
    ASSIGN_OR_RETURN(v1::NodeType type, GetType(kind, name));
    types.emplace(std::make_pair(kind, name), type);
    return type;
  };
  if (in.id() == 0) {
    ASSIGN_OR_RETURN(v1::NodeType type, type_of(v1::EXECUTION, in.type()));
    RETURN_IF_ERROR(CheckProperties(type, in.properties(), in.custom_properties()));
  }
  for (int i = 0; i < request.artifacts_size(); ++i) {
    const auto& entry = request.artifacts(i);
    std::string field = StrCat("artifacts[", std::to_string(i), "]");
    if (entry.event_type() != v1::Event::INPUT && entry.event_type() != v1::Event::OUTPUT) {
      return absl::InvalidArgumentError(StrCat(field, ".event_type: INPUT or OUTPUT"));
    }
    RETURN_IF_ERROR(CheckLength(StrCat(field, ".path"), entry.path(), kMaxPathBytes));
    RETURN_IF_ERROR(
        CheckInProject(StrCat(field, ".artifact.type"), entry.artifact().type(), project));
    RETURN_IF_ERROR(CheckInProject(StrCat(field, ".artifact.external_id"),
                                   entry.artifact().external_id(), project));
    if (entry.artifact().id() == 0) {
      RETURN_IF_ERROR(ValidateArtifactFields(entry.artifact()));
      ASSIGN_OR_RETURN(v1::NodeType type, type_of(v1::ARTIFACT, entry.artifact().type()));
      RETURN_IF_ERROR(CheckProperties(type, entry.artifact().properties(),
                                      entry.artifact().custom_properties()));
    }
  }
  for (int i = 0; i < request.contexts_size(); ++i) {
    const v1::Context& c = request.contexts(i);
    RETURN_IF_ERROR(CheckInProject("contexts.type", c.type(), project));
    RETURN_IF_ERROR(CheckInProject("contexts.external_id", c.external_id(), project));
    if (c.id() > 0) continue;
    ASSIGN_OR_RETURN(v1::NodeType type, type_of(v1::CONTEXT, c.type()));
    RETURN_IF_ERROR(CheckProperties(type, c.properties(), c.custom_properties()));
    if (c.name().empty() && c.external_id().empty()) {
      return absl::InvalidArgumentError(
          StrCat("contexts[", std::to_string(i), "]: a new context needs a name"));
    }
    RETURN_IF_ERROR(CheckLength("context.name", c.name(), kMaxNameBytes));
  }

  // Locks on every unique key this call may create and on the execution it updates.
  std::vector<std::mutex*> stripes;
  if (!in.external_id().empty()) stripes.push_back(&Stripe(ResultKey(in.external_id())));
  if (in.id() > 0) stripes.push_back(&Stripe(NodeKey(v1::EXECUTION, in.id())));
  for (const auto& entry : request.artifacts()) {
    if (entry.artifact().id() == 0 && !entry.artifact().external_id().empty()) {
      stripes.push_back(&Stripe(ExternalKey(v1::ARTIFACT, entry.artifact().external_id())));
    }
  }
  for (const v1::Context& c : request.contexts()) {
    if (c.id() > 0) continue;
    if (!c.external_id().empty())
      stripes.push_back(&Stripe(ExternalKey(v1::CONTEXT, c.external_id())));
    stripes.push_back(&Stripe(ContextNameKey(c.type(), c.name())));
  }
  StripeLocks locks(std::move(stripes));

  v1::PutExecutionResponse response;
  if (!in.external_id().empty()) {
    ASSIGN_OR_RETURN(auto recorded,
                     db_->GetProto<v1::PutExecutionResponse>(keys_, ResultKey(in.external_id())));
    if (recorded) {
      response = *std::move(recorded);
      ASSIGN_OR_RETURN(
          v1::Execution stored,
          MustLoadIn<v1::Execution>(*db_, nodes_, v1::EXECUTION, response.execution_id(), project));
      if (stored.type() != in.type()) {
        return absl::AlreadyExistsError(
            StrCat("execution external_id ", in.external_id(), " belongs to a ", stored.type()));
      }
      response.set_already_existed(true);
      return response;
    }
  }

  int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  // The execution.
  v1::Execution execution = in;
  if (in.id() > 0) {
    ASSIGN_OR_RETURN(v1::Execution stored,
                     MustLoadIn<v1::Execution>(*db_, nodes_, v1::EXECUTION, in.id(), project));
    RETURN_IF_ERROR(CheckExpected(StrCat("execution ", std::to_string(in.id())),
                                  request.expected_update_time_ms(), stored.update_time_ms()));
    if (!in.type().empty() && in.type() != stored.type()) {
      return absl::InvalidArgumentError(
          StrCat("execution.type: execution ", std::to_string(in.id()), " is a ", stored.type()));
    }
    ASSIGN_OR_RETURN(v1::NodeType type, type_of(v1::EXECUTION, stored.type()));
    RETURN_IF_ERROR(CheckProperties(type, in.properties(), in.custom_properties()));
    execution = stored;
    if (in.state() != v1::Execution::STATE_UNSPECIFIED) execution.set_state(in.state());
    if (!in.name().empty()) execution.set_name(in.name());
    for (const auto& [k, v] : in.properties()) (*execution.mutable_properties())[k] = v;
    for (const auto& [k, v] : in.custom_properties()) {
      (*execution.mutable_custom_properties())[k] = v;
    }
    if (!in.run_id().empty() && in.run_id() != stored.run_id()) {
      if (!stored.run_id().empty()) {
        return absl::InvalidArgumentError("execution.run_id: cannot change");
      }
      execution.set_run_id(in.run_id());
      batch.Put(index_, StrCat(RunIndexPrefix(in.run_id()), Id8(execution.id())), "");
    }
    execution.set_update_time_ms(NextTime(stored.update_time_ms()));
  } else {
    if (request.expected_update_time_ms() != 0) {
      return absl::InvalidArgumentError("expected_update_time_ms: only for updates (id > 0)");
    }
    execution.set_id(NextId(v1::EXECUTION));
    if (execution.state() == v1::Execution::STATE_UNSPECIFIED) {
      execution.set_state(v1::Execution::NEW);
    }
    execution.set_create_time_ms(now);
    execution.set_update_time_ms(now);
    batch.Put(index_, StrCat(TypeIndexPrefix(v1::EXECUTION, execution.type()), Id8(execution.id())),
              "");
    if (!execution.run_id().empty()) {
      batch.Put(index_, StrCat(RunIndexPrefix(execution.run_id()), Id8(execution.id())), "");
    }
    if (!execution.external_id().empty()) {
      batch.Put(keys_, ExternalKey(v1::EXECUTION, execution.external_id()), Id8(execution.id()));
    }
  }
  batch.Put(nodes_, NodeKey(v1::EXECUTION, execution.id()), execution.SerializeAsString());
  response.set_execution_id(execution.id());

  // Artifacts and events.
  internal::ExecutionEvents execution_events;
  if (in.id() > 0) {
    ASSIGN_OR_RETURN(auto stored_events, db_->GetProto<internal::ExecutionEvents>(
                                             edges_, ExecutionEventsKey(execution.id())));
    if (stored_events) execution_events = *std::move(stored_events);
  }
  absl::flat_hash_map<std::string, int64_t> new_by_external;  // repeated in one request
  for (const auto& entry : request.artifacts()) {
    v1::Artifact a = entry.artifact();
    if (a.id() > 0) {
      RETURN_IF_ERROR(
          MustLoadIn<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, a.id(), project).status());
    } else {
      int64_t existing = 0;
      if (!a.external_id().empty()) {
        auto it = new_by_external.find(a.external_id());
        if (it != new_by_external.end()) {
          existing = it->second;
        } else {
          ASSIGN_OR_RETURN(auto id, db_->Get(keys_, ExternalKey(v1::ARTIFACT, a.external_id())));
          if (id) {
            ASSIGN_OR_RETURN(v1::Artifact stored,
                             MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, ReadId8(*id)));
            if (stored.type() != a.type()) {
              return absl::AlreadyExistsError(StrCat("artifact external_id ", a.external_id(),
                                                     " belongs to a ", stored.type()));
            }
            existing = stored.id();
          }
        }
      }
      if (existing > 0) {
        a.set_id(existing);
      } else {
        AddNewArtifact(&a, now, &batch);
        if (!a.external_id().empty()) new_by_external[a.external_id()] = a.id();
      }
    }
    v1::Event event;
    event.set_artifact_id(a.id());
    event.set_execution_id(execution.id());
    event.set_type(entry.event_type());
    event.set_path(entry.path());
    event.set_time_ms(now);
    batch.Put(edges_, StrCat(ArtifactEdgePrefix(a.id(), entry.event_type()), Id8(execution.id())),
              event.SerializeAsString());
    *execution_events.add_events() = std::move(event);
    response.add_artifact_ids(a.id());
  }
  if (request.artifacts_size() > 0) {
    batch.Put(edges_, ExecutionEventsKey(execution.id()), execution_events.SerializeAsString());
  }

  // Contexts, associations and attributions.
  for (int i = 0; i < request.contexts_size(); ++i) {
    v1::Context c = request.contexts(i);
    if (c.id() > 0) {
      RETURN_IF_ERROR(MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, c.id(), project).status());
    } else {
      std::optional<std::string> id;
      if (!c.external_id().empty()) {
        ASSIGN_OR_RETURN(id, db_->Get(keys_, ExternalKey(v1::CONTEXT, c.external_id())));
      }
      if (!id && !c.name().empty()) {
        ASSIGN_OR_RETURN(id, db_->Get(keys_, ContextNameKey(c.type(), c.name())));
      }
      if (id) {
        c.set_id(ReadId8(*id));
      } else {
        AddNewContext(&c, now, &batch);
      }
    }
    batch.Put(edges_, MemberKey(c.id(), v1::EXECUTION, execution.id()), "");
    batch.Put(edges_, MembershipKey(v1::EXECUTION, execution.id(), c.id()), "");
    for (int64_t artifact : response.artifact_ids()) {
      batch.Put(edges_, MemberKey(c.id(), v1::ARTIFACT, artifact), "");
      batch.Put(edges_, MembershipKey(v1::ARTIFACT, artifact, c.id()), "");
    }
    response.add_context_ids(c.id());
  }
  if (!in.external_id().empty()) {
    batch.Put(keys_, ResultKey(in.external_id()), response.SerializeAsString());
  }
  RETURN_IF_ERROR(db_->Write(&batch));
  return response;
}

absl::StatusOr<v1::Context> LineageStore::PutContext(const v1::PutContextRequest& request,
                                                     std::string_view project) {
  v1::Context c = request.context();
  RETURN_IF_ERROR(CheckInProject("context.type", c.type(), project));
  RETURN_IF_ERROR(CheckInProject("context.external_id", c.external_id(), project));
  RETURN_IF_ERROR(CheckLength("context.name", c.name(), kMaxNameBytes));
  RETURN_IF_ERROR(CheckLength("context.external_id", c.external_id(), kMaxExternalIdBytes));
  rocksdb::WriteBatch batch;
  if (c.id() > 0) {
    std::lock_guard lock(Stripe(NodeKey(v1::CONTEXT, c.id())));
    ASSIGN_OR_RETURN(v1::Context stored,
                     MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, c.id(), project));
    RETURN_IF_ERROR(CheckExpected(StrCat("context ", std::to_string(c.id())),
                                  request.expected_update_time_ms(), stored.update_time_ms()));
    if ((!c.type().empty() && c.type() != stored.type()) ||
        (!c.name().empty() && c.name() != stored.name())) {
      return absl::InvalidArgumentError("context: type and name never change");
    }
    ASSIGN_OR_RETURN(v1::NodeType type, GetType(v1::CONTEXT, stored.type()));
    RETURN_IF_ERROR(CheckProperties(type, c.properties(), c.custom_properties()));
    stored.mutable_properties()->swap(*c.mutable_properties());
    stored.mutable_custom_properties()->swap(*c.mutable_custom_properties());
    stored.set_update_time_ms(NextTime(stored.update_time_ms()));
    batch.Put(nodes_, NodeKey(v1::CONTEXT, stored.id()), stored.SerializeAsString());
    RETURN_IF_ERROR(db_->Write(&batch));
    return stored;
  }
  if (c.name().empty()) return absl::InvalidArgumentError("context.name: required");
  ASSIGN_OR_RETURN(v1::NodeType type, GetType(v1::CONTEXT, c.type()));
  RETURN_IF_ERROR(CheckProperties(type, c.properties(), c.custom_properties()));
  std::string name_key = ContextNameKey(c.type(), c.name());
  std::vector<std::mutex*> stripes = {&Stripe(name_key)};
  if (!c.external_id().empty()) {
    stripes.push_back(&Stripe(ExternalKey(v1::CONTEXT, c.external_id())));
  }
  StripeLocks locks(std::move(stripes));
  std::optional<std::string> id;
  if (!c.external_id().empty()) {
    ASSIGN_OR_RETURN(id, db_->Get(keys_, ExternalKey(v1::CONTEXT, c.external_id())));
  }
  if (!id) {
    ASSIGN_OR_RETURN(id, db_->Get(keys_, name_key));
  }
  if (id) return MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, ReadId8(*id));
  AddNewContext(&c, NowMs(), &batch);
  RETURN_IF_ERROR(db_->Write(&batch));
  return c;
}

absl::Status LineageStore::AddParentContext(int64_t child_id, int64_t parent_id,
                                            std::string_view project) {
  if (child_id <= 0 || parent_id <= 0) {
    return absl::InvalidArgumentError("child_id and parent_id: required");
  }
  if (child_id == parent_id) {
    return absl::InvalidArgumentError(
        StrCat("context ", std::to_string(child_id), " cannot be its own parent"));
  }
  // One link at a time, so that two links cannot close a cycle together.
  std::lock_guard lock(types_mu_);
  RETURN_IF_ERROR(MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, child_id, project).status());
  RETURN_IF_ERROR(MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, parent_id, project).status());
  // A cycle appears when the child is already an ancestor of the parent.
  std::deque<int64_t> queue = {parent_id};
  absl::flat_hash_set<int64_t> seen = {parent_id};
  while (!queue.empty()) {
    int64_t node = queue.front();
    queue.pop_front();
    std::string prefix = StrCat("P", Id8(node));
    bool cycle = false;
    RETURN_IF_ERROR(
        db_->ScanPrefix(edges_, prefix, {}, [&](std::string_view key, std::string_view) {
          int64_t up = ReadId8(key.substr(9));
          if (up == child_id) {
            cycle = true;
            return false;
          }
          if (seen.insert(up).second) queue.push_back(up);
          return true;
        }));
    if (cycle) {
      return absl::InvalidArgumentError(
          StrCat("context ", std::to_string(child_id), " is already an ancestor of context ",
                 std::to_string(parent_id), ": the link would make a cycle"));
    }
  }
  rocksdb::WriteBatch batch;
  batch.Put(edges_, StrCat("P", Id8(child_id), Id8(parent_id)), "");
  batch.Put(edges_, StrCat("Q", Id8(parent_id), Id8(child_id)), "");
  return db_->Write(&batch);
}

absl::StatusOr<v1::GetContextMembersResponse> LineageStore::GetContextMembers(
    const v1::GetContextMembersRequest& request, std::string_view project) const {
  RETURN_IF_ERROR(NormalizePageSize(request.page_size(), 100, 1000).status());
  RETURN_IF_ERROR(
      MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, request.context_id(), project).status());
  const std::string prefix = StrCat("C", Id8(request.context_id()));
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(db_->page_token_key(), request.page_size(), 100, 1000, request.page_token(),
                   Fingerprint({"members", Id8(request.context_id())}), prefix));
  v1::GetContextMembersResponse response;
  absl::Status status = absl::OkStatus();
  RETURN_IF_ERROR(
      db_->ScanPrefix(edges_, prefix, pager.after(), [&](std::string_view key, std::string_view) {
        if (!pager.Take(key)) return false;
        char kind = key[9];
        int64_t id = ReadId8(key.substr(10));
        if (kind == KindByte(v1::ARTIFACT)) {
          auto a = MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id);
          if (!a.ok()) status = a.status();
          if (a.ok()) *response.add_artifacts() = std::move(*a);
        } else {
          auto e = MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, id);
          if (!e.ok()) status = e.status();
          if (e.ok()) *response.add_executions() = std::move(*e);
        }
        return status.ok();
      }));
  RETURN_IF_ERROR(status);
  if (pager.first_page()) {
    RETURN_IF_ERROR(db_->ScanPrefix(edges_, StrCat("P", Id8(request.context_id())), {},
                                    [&](std::string_view key, std::string_view) {
                                      response.add_parent_context_ids(ReadId8(key.substr(9)));
                                      return true;
                                    }));
    RETURN_IF_ERROR(db_->ScanPrefix(edges_, StrCat("Q", Id8(request.context_id())), {},
                                    [&](std::string_view key, std::string_view) {
                                      response.add_child_context_ids(ReadId8(key.substr(9)));
                                      return true;
                                    }));
  }
  response.set_next_page_token(pager.NextToken());
  return response;
}

}  // namespace mlops::metadata
