// gRPC adapters of the lineage service and the model registry: they call LineageStore and
// RegistryStore and map statuses; every RPC returns the codes documented on the store method.
#pragma once

#include "mlops/metadata/v1/lineage.grpc.pb.h"
#include "mlops/metadata/v1/registry.grpc.pb.h"
#include "services/metadata/lineage_store.h"
#include "services/metadata/registry_store.h"

namespace mlops::metadata {

// PutExecution (the high-rate write) and GetType use gRPC's callback API: the handler runs on the
// thread that read the request, with no hand-off to a synchronous worker thread; on 2 cores that
// hand-off cost more than the write itself (docs/performance.md).
using LineageServiceBase = v1::LineageService::WithCallbackMethod_GetType<
    v1::LineageService::WithCallbackMethod_PutExecution<
        v1::LineageService::WithCallbackMethod_PutExecutionStream<v1::LineageService::Service>>>;

class LineageServiceImpl final : public LineageServiceBase {
 public:
  explicit LineageServiceImpl(LineageStore* store) : store_(store) {}

  grpc::Status PutType(grpc::ServerContext*, const v1::PutTypeRequest* request,
                       v1::NodeType* response) override;
  grpc::ServerUnaryReactor* GetType(grpc::CallbackServerContext* context,
                                    const v1::GetTypeRequest* request,
                                    v1::NodeType* response) override;
  grpc::Status ListTypes(grpc::ServerContext*, const v1::ListTypesRequest* request,
                         v1::ListTypesResponse* response) override;
  grpc::Status PutArtifact(grpc::ServerContext*, const v1::PutArtifactRequest* request,
                           v1::Artifact* response) override;
  grpc::Status GetArtifact(grpc::ServerContext*, const v1::GetNodeRequest* request,
                           v1::Artifact* response) override;
  grpc::Status ListArtifacts(grpc::ServerContext*, const v1::ListNodesRequest* request,
                             v1::ListArtifactsResponse* response) override;
  grpc::ServerUnaryReactor* PutExecution(grpc::CallbackServerContext* context,
                                         const v1::PutExecutionRequest* request,
                                         v1::PutExecutionResponse* response) override;
  grpc::ServerBidiReactor<v1::PutExecutionRequest, v1::PutExecutionResult>* PutExecutionStream(
      grpc::CallbackServerContext* context) override;
  grpc::Status GetExecution(grpc::ServerContext*, const v1::GetNodeRequest* request,
                            v1::Execution* response) override;
  grpc::Status ListExecutions(grpc::ServerContext*, const v1::ListNodesRequest* request,
                              v1::ListExecutionsResponse* response) override;
  grpc::Status PutContext(grpc::ServerContext*, const v1::PutContextRequest* request,
                          v1::Context* response) override;
  grpc::Status GetContext(grpc::ServerContext*, const v1::GetNodeRequest* request,
                          v1::Context* response) override;
  grpc::Status ListContexts(grpc::ServerContext*, const v1::ListNodesRequest* request,
                            v1::ListContextsResponse* response) override;
  grpc::Status AddParentContext(grpc::ServerContext*, const v1::AddParentContextRequest* request,
                                v1::AddParentContextResponse* response) override;
  grpc::Status GetContextMembers(grpc::ServerContext*, const v1::GetContextMembersRequest* request,
                                 v1::GetContextMembersResponse* response) override;
  grpc::Status GetLineage(grpc::ServerContext*, const v1::GetLineageRequest* request,
                          v1::LineageGraph* response) override;

 private:
  LineageStore* store_;
};

class ModelRegistryImpl final : public v1::ModelRegistry::Service {
 public:
  explicit ModelRegistryImpl(RegistryStore* store) : store_(store) {}

  grpc::Status CreateRegisteredModel(grpc::ServerContext*,
                                     const v1::CreateRegisteredModelRequest* request,
                                     v1::RegisteredModel* response) override;
  grpc::Status GetRegisteredModel(grpc::ServerContext*,
                                  const v1::GetRegisteredModelRequest* request,
                                  v1::RegisteredModel* response) override;
  grpc::Status ListRegisteredModels(grpc::ServerContext*,
                                    const v1::ListRegisteredModelsRequest* request,
                                    v1::ListRegisteredModelsResponse* response) override;
  grpc::Status UpdateRegisteredModel(grpc::ServerContext*,
                                     const v1::UpdateRegisteredModelRequest* request,
                                     v1::RegisteredModel* response) override;
  grpc::Status CreateModelVersion(grpc::ServerContext*,
                                  const v1::CreateModelVersionRequest* request,
                                  v1::ModelVersion* response) override;
  grpc::Status GetModelVersion(grpc::ServerContext*, const v1::GetModelVersionRequest* request,
                               v1::ModelVersion* response) override;
  grpc::Status ListModelVersions(grpc::ServerContext*, const v1::ListModelVersionsRequest* request,
                                 v1::ListModelVersionsResponse* response) override;
  grpc::Status UpdateModelVersion(grpc::ServerContext*,
                                  const v1::UpdateModelVersionRequest* request,
                                  v1::ModelVersion* response) override;
  grpc::Status DeleteModelVersion(grpc::ServerContext*,
                                  const v1::DeleteModelVersionRequest* request,
                                  v1::DeleteModelVersionResponse* response) override;
  grpc::Status SetAlias(grpc::ServerContext*, const v1::SetAliasRequest* request,
                        v1::AliasMove* response) override;
  grpc::Status DeleteAlias(grpc::ServerContext*, const v1::DeleteAliasRequest* request,
                           v1::AliasMove* response) override;
  grpc::Status GetAliasHistory(grpc::ServerContext*, const v1::GetAliasHistoryRequest* request,
                               v1::GetAliasHistoryResponse* response) override;
  grpc::Status SetBlessing(grpc::ServerContext*, const v1::SetBlessingRequest* request,
                           v1::ModelVersion* response) override;
  grpc::Status SetAliasPolicy(grpc::ServerContext*, const v1::SetAliasPolicyRequest* request,
                              v1::RegisteredModel* response) override;
  grpc::Status WatchAlias(grpc::ServerContext* context, const v1::WatchAliasRequest* request,
                          grpc::ServerWriter<v1::AliasUpdate>* writer) override;

 private:
  RegistryStore* store_;
};

}  // namespace mlops::metadata
