#include "services/metadata/lineage_service.h"

#include <deque>
#include <mutex>

#include "services/common/access_table.h"
#include "services/common/grpc_status.h"
#include "services/common/projects.h"
#include "services/common/rpc_guard.h"
#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::metadata {
namespace {

// The project a request of `method` acts in, read from its fields by the access table as the guard
// read it (which refused a request naming a malformed project or two).
std::string CallProject(const char* method, const google::protobuf::Message& request) {
  absl::StatusOr<std::string> project = RequestProject(*FindMethodAccess(method), &request, "");
  return project.ok() ? *std::move(project) : std::string(kDefaultProject);
}

}  // namespace

grpc::Status LineageServiceImpl::PutType(grpc::ServerContext*, const v1::PutTypeRequest* request,
                                         v1::NodeType* response) {
  return Reply(store_->PutType(request->type()), response);
}

grpc::ServerUnaryReactor* LineageServiceImpl::GetType(grpc::CallbackServerContext* context,
                                                      const v1::GetTypeRequest* request,
                                                      v1::NodeType* response) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(Reply(store_->GetType(request->kind(), request->name()), response));
  return reactor;
}

grpc::Status LineageServiceImpl::ListTypes(grpc::ServerContext*,
                                           const v1::ListTypesRequest* request,
                                           v1::ListTypesResponse* response) {
  auto types = store_->ListTypes(
      request->kind(), CallProject("/mlops.metadata.v1.LineageService/ListTypes", *request));
  if (!types.ok()) return ToGrpcStatus(types.status());
  for (auto& type : *types) *response->add_types() = std::move(type);
  return grpc::Status::OK;
}

grpc::Status LineageServiceImpl::PutArtifact(grpc::ServerContext*,
                                             const v1::PutArtifactRequest* request,
                                             v1::Artifact* response) {
  return Reply(
      store_->PutArtifact(*request,
                          CallProject("/mlops.metadata.v1.LineageService/PutArtifact", *request)),
      response);
}

grpc::Status LineageServiceImpl::GetArtifact(grpc::ServerContext*,
                                             const v1::GetNodeRequest* request,
                                             v1::Artifact* response) {
  return Reply(
      store_->GetArtifact(*request,
                          CallProject("/mlops.metadata.v1.LineageService/GetArtifact", *request)),
      response);
}

grpc::Status LineageServiceImpl::ListArtifacts(grpc::ServerContext*,
                                               const v1::ListNodesRequest* request,
                                               v1::ListArtifactsResponse* response) {
  return Reply(
      store_->ListArtifacts(
          *request, CallProject("/mlops.metadata.v1.LineageService/ListArtifacts", *request)),
      response);
}

grpc::ServerUnaryReactor* LineageServiceImpl::PutExecution(grpc::CallbackServerContext* context,
                                                           const v1::PutExecutionRequest* request,
                                                           v1::PutExecutionResponse* response) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(
      Reply(store_->PutExecution(
                *request, CallProject("/mlops.metadata.v1.LineageService/PutExecution", *request)),
            response));
  return reactor;
}

namespace {

// Requests are recorded one at a time, in order (one read outstanding); results are written in
// the same order while the next request is already being read (one write outstanding, the rest
// queued), so reading, recording and answering overlap.
class PutExecutionStreamReactor
    : public grpc::ServerBidiReactor<v1::PutExecutionRequest, v1::PutExecutionResult> {
 public:
  PutExecutionStreamReactor(LineageStore* store, std::string project)
      : store_(store), project_(std::move(project)) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    v1::PutExecutionResult result;
    // The stream acts in the project of its metadata (the guard checked the caller's role there);
    // a message naming another is refused.
    static const MethodAccess* access =
        FindMethodAccess("/mlops.metadata.v1.LineageService/PutExecutionStream");
    absl::StatusOr<std::string> named = MessageProject(*access, request_);
    absl::StatusOr<v1::PutExecutionResponse> response =
        !named.ok() ? absl::StatusOr<v1::PutExecutionResponse>(named.status())
        : *named != project_
            ? absl::StatusOr<v1::PutExecutionResponse>(absl::InvalidArgumentError(StrCat(
                  "the request is in project ", *named, ", not ", project_,
                  ", the project this stream was opened for (metadata ", kProjectMetadata, ")")))
            : store_->PutExecution(request_, project_);
    if (response.ok()) {
      *result.mutable_response() = std::move(*response);
    } else {
      result.set_code(static_cast<int>(response.status().code()));
      result.set_message(std::string(response.status().message()));
    }
    std::lock_guard lock(mu_);
    // Once finished (a write failed: the client went away), nothing more is started.
    if (finished_) return;
    pending_.push_back(std::move(result));
    if (!writing_) {
      writing_ = true;
      StartWrite(&pending_.front());
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    pending_.pop_front();
    writing_ = false;
    if (!ok) {
      broken_ = true;
      MaybeFinishLocked();
      return;
    }
    if (!pending_.empty()) {
      writing_ = true;
      StartWrite(&pending_.front());
      return;
    }
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  void MaybeFinishLocked() {
    if (finished_ || writing_ || !(reads_done_ || broken_)) return;
    if (!broken_ && !pending_.empty()) return;
    finished_ = true;
    Finish(broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "the client went away")
                   : grpc::Status::OK);
  }

  LineageStore* store_;
  const std::string project_;
  v1::PutExecutionRequest request_;
  std::mutex mu_;
  std::deque<v1::PutExecutionResult> pending_;  // front: being written
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::ServerBidiReactor<v1::PutExecutionRequest, v1::PutExecutionResult>*
LineageServiceImpl::PutExecutionStream(grpc::CallbackServerContext* context) {
  return new PutExecutionStreamReactor(store_, StreamProject(*context));
}

grpc::Status LineageServiceImpl::GetExecution(grpc::ServerContext*,
                                              const v1::GetNodeRequest* request,
                                              v1::Execution* response) {
  return Reply(
      store_->GetExecution(*request,
                           CallProject("/mlops.metadata.v1.LineageService/GetExecution", *request)),
      response);
}

grpc::Status LineageServiceImpl::ListExecutions(grpc::ServerContext*,
                                                const v1::ListNodesRequest* request,
                                                v1::ListExecutionsResponse* response) {
  return Reply(
      store_->ListExecutions(
          *request, CallProject("/mlops.metadata.v1.LineageService/ListExecutions", *request)),
      response);
}

grpc::Status LineageServiceImpl::PutContext(grpc::ServerContext*,
                                            const v1::PutContextRequest* request,
                                            v1::Context* response) {
  return Reply(store_->PutContext(
                   *request, CallProject("/mlops.metadata.v1.LineageService/PutContext", *request)),
               response);
}

grpc::Status LineageServiceImpl::GetContext(grpc::ServerContext*, const v1::GetNodeRequest* request,
                                            v1::Context* response) {
  return Reply(store_->GetContext(
                   *request, CallProject("/mlops.metadata.v1.LineageService/GetContext", *request)),
               response);
}

grpc::Status LineageServiceImpl::ListContexts(grpc::ServerContext*,
                                              const v1::ListNodesRequest* request,
                                              v1::ListContextsResponse* response) {
  return Reply(
      store_->ListContexts(*request,
                           CallProject("/mlops.metadata.v1.LineageService/ListContexts", *request)),
      response);
}

grpc::Status LineageServiceImpl::AddParentContext(grpc::ServerContext*,
                                                  const v1::AddParentContextRequest* request,
                                                  v1::AddParentContextResponse*) {
  return ToGrpcStatus(store_->AddParentContext(
      request->child_id(), request->parent_id(),
      CallProject("/mlops.metadata.v1.LineageService/AddParentContext", *request)));
}

grpc::Status LineageServiceImpl::GetContextMembers(grpc::ServerContext*,
                                                   const v1::GetContextMembersRequest* request,
                                                   v1::GetContextMembersResponse* response) {
  return Reply(
      store_->GetContextMembers(
          *request, CallProject("/mlops.metadata.v1.LineageService/GetContextMembers", *request)),
      response);
}

grpc::Status LineageServiceImpl::GetLineage(grpc::ServerContext*,
                                            const v1::GetLineageRequest* request,
                                            v1::LineageGraph* response) {
  return Reply(store_->GetLineage(
                   *request, CallProject("/mlops.metadata.v1.LineageService/GetLineage", *request)),
               response);
}

grpc::Status ModelRegistryImpl::CreateRegisteredModel(
    grpc::ServerContext*, const v1::CreateRegisteredModelRequest* request,
    v1::RegisteredModel* response) {
  return Reply(store_->CreateRegisteredModel(*request), response);
}

grpc::Status ModelRegistryImpl::GetRegisteredModel(grpc::ServerContext*,
                                                   const v1::GetRegisteredModelRequest* request,
                                                   v1::RegisteredModel* response) {
  return Reply(store_->GetRegisteredModel(request->name()), response);
}

grpc::Status ModelRegistryImpl::ListRegisteredModels(grpc::ServerContext*,
                                                     const v1::ListRegisteredModelsRequest* request,
                                                     v1::ListRegisteredModelsResponse* response) {
  return Reply(store_->ListRegisteredModels(*request), response);
}

grpc::Status ModelRegistryImpl::UpdateRegisteredModel(
    grpc::ServerContext*, const v1::UpdateRegisteredModelRequest* request,
    v1::RegisteredModel* response) {
  return Reply(store_->UpdateRegisteredModel(*request), response);
}

grpc::Status ModelRegistryImpl::CreateModelVersion(grpc::ServerContext*,
                                                   const v1::CreateModelVersionRequest* request,
                                                   v1::ModelVersion* response) {
  return Reply(store_->CreateModelVersion(*request), response);
}

grpc::Status ModelRegistryImpl::GetModelVersion(grpc::ServerContext*,
                                                const v1::GetModelVersionRequest* request,
                                                v1::ModelVersion* response) {
  return Reply(store_->GetModelVersion(*request), response);
}

grpc::Status ModelRegistryImpl::ListModelVersions(grpc::ServerContext*,
                                                  const v1::ListModelVersionsRequest* request,
                                                  v1::ListModelVersionsResponse* response) {
  return Reply(store_->ListModelVersions(*request), response);
}

grpc::Status ModelRegistryImpl::UpdateModelVersion(grpc::ServerContext*,
                                                   const v1::UpdateModelVersionRequest* request,
                                                   v1::ModelVersion* response) {
  return Reply(store_->UpdateModelVersion(*request), response);
}

grpc::Status ModelRegistryImpl::DeleteModelVersion(grpc::ServerContext*,
                                                   const v1::DeleteModelVersionRequest* request,
                                                   v1::DeleteModelVersionResponse*) {
  return ToGrpcStatus(store_->DeleteModelVersion(request->name(), request->version()));
}

grpc::Status ModelRegistryImpl::SetAlias(grpc::ServerContext*, const v1::SetAliasRequest* request,
                                         v1::AliasMove* response) {
  return Reply(store_->SetAlias(*request), response);
}

grpc::Status ModelRegistryImpl::DeleteAlias(grpc::ServerContext*,
                                            const v1::DeleteAliasRequest* request,
                                            v1::AliasMove* response) {
  return Reply(store_->DeleteAlias(*request), response);
}

grpc::Status ModelRegistryImpl::GetAliasHistory(grpc::ServerContext*,
                                                const v1::GetAliasHistoryRequest* request,
                                                v1::GetAliasHistoryResponse* response) {
  return Reply(store_->GetAliasHistory(*request), response);
}

grpc::Status ModelRegistryImpl::WatchAlias(grpc::ServerContext* context,
                                           const v1::WatchAliasRequest* request,
                                           grpc::ServerWriter<v1::AliasUpdate>* writer) {
  int64_t seen = request->after_sequence();
  if (seen < 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("after_sequence: 0 or a move's sequence"));
  }
  bool current_only = seen == 0;  // the first answer is where the alias points now
  uint64_t moves = store_->moves();
  while (!context->IsCancelled()) {
    auto updates = store_->MovesAfter(request->name(), request->alias(), seen);
    if (!updates.ok()) return ToGrpcStatus(updates.status());
    if (current_only && updates->size() > 1) updates->erase(updates->begin(), updates->end() - 1);
    for (const v1::AliasUpdate& update : *updates) {
      if (!writer->Write(update)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
      seen = update.move().sequence();
      current_only = false;
    }
    // Until another move (of any alias), looking at the client now and then.
    for (uint64_t now = moves; now == moves && !context->IsCancelled();) {
      if (store_->stopping()) {
        return grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            "the server is shutting down: reconnect with after_sequence " + std::to_string(seen));
      }
      now = store_->WaitForMove(moves, 500);
      if (now != moves) {
        moves = now;
        break;
      }
    }
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
}

grpc::Status ModelRegistryImpl::SetBlessing(grpc::ServerContext*,
                                            const v1::SetBlessingRequest* request,
                                            v1::ModelVersion* response) {
  return Reply(store_->SetBlessing(*request), response);
}

grpc::Status ModelRegistryImpl::SetAliasPolicy(grpc::ServerContext*,
                                               const v1::SetAliasPolicyRequest* request,
                                               v1::RegisteredModel* response) {
  return Reply(store_->SetAliasPolicy(*request), response);
}

}  // namespace mlops::metadata
