#include "services/metadata/lineage_store.h"

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
#include "services/common/projects.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/filter.h"
#include "services/metadata/lineage_store_internal.h"
#include "services/metadata/registry_store.h"

namespace mlops::metadata {

using google::protobuf::Map;

char KindByte(v1::NodeKind kind) { return static_cast<char>('0' + static_cast<int>(kind)); }

const char* KindName(v1::NodeKind kind) {
  switch (kind) {
    case v1::ARTIFACT:
      return "artifact";
    case v1::EXECUTION:
      return "execution";
    case v1::CONTEXT:
      return "context";
    default:
      return "node";
  }
}

std::string Id8(int64_t id) {
  std::string out;
  AppendBigEndian64(&out, static_cast<uint64_t>(id));
  return out;
}

int64_t ReadId8(std::string_view bytes) { return static_cast<int64_t>(ReadBigEndian64(bytes)); }

std::string NodeKey(v1::NodeKind kind, int64_t id) {
  return StrCat(std::string(1, KindByte(kind)), Id8(id));
}

std::string TypeKey(v1::NodeKind kind, std::string_view name) {
  return StrCat(std::string(1, KindByte(kind)), name);
}

std::string ExternalKey(v1::NodeKind kind, std::string_view external_id) {
  return StrCat("x", std::string(1, KindByte(kind)), external_id);
}

std::string ContextNameKey(std::string_view type, std::string_view name) {
  std::string out = "n";
  AppendOrderedString(&out, type);
  out.append(name);
  return out;
}

std::string ResultKey(std::string_view external_id) { return StrCat("r", external_id); }

std::string TypeIndexPrefix(v1::NodeKind kind, std::string_view type) {
  std::string out = StrCat("t", std::string(1, KindByte(kind)));
  AppendOrderedString(&out, type);
  return out;
}

std::string RunIndexPrefix(std::string_view run_id) {
  std::string out = "u";
  AppendOrderedString(&out, run_id);
  return out;
}

char EventByte(v1::Event::Type type) { return type == v1::Event::INPUT ? 'i' : 'o'; }

std::string ArtifactEdgePrefix(int64_t artifact, v1::Event::Type type) {
  return StrCat("A", Id8(artifact), std::string(1, EventByte(type)));
}

std::string ExecutionEventsKey(int64_t execution) { return StrCat("E", Id8(execution)); }

std::string MemberKey(int64_t context, v1::NodeKind kind, int64_t node) {
  return StrCat("C", Id8(context), std::string(1, KindByte(kind)), Id8(node));
}

std::string MembershipKey(v1::NodeKind kind, int64_t node, int64_t context) {
  return StrCat("M", std::string(1, KindByte(kind)), Id8(node), Id8(context));
}

absl::Status ValidateTypeName(std::string_view what, std::string_view name) {
  ASSIGN_OR_RETURN(ScopedName scoped, ParseScoped(what, name));
  if (scoped.project == kDefaultProject && scoped.name != name) {
    return absl::InvalidArgumentError(
        StrCat(what, " \"", name.substr(0, 200), "\": a type of project default has no prefix"));
  }
  return ValidateName(NameKind::kType, what, scoped.name);
}

absl::Status CheckLength(std::string_view what, std::string_view value, size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        StrCat(what, ": longer than ", std::to_string(max), " bytes"));
  }
  return absl::OkStatus();
}

const char* PropertyTypeName(v1::PropertyType type) {
  switch (type) {
    case v1::INT:
      return "INT";
    case v1::DOUBLE:
      return "DOUBLE";
    case v1::STRING:
      return "STRING";
    case v1::BOOL:
      return "BOOL";
    case v1::STRUCT:
      return "STRUCT";
    default:
      return "UNSPECIFIED";
  }
}

bool ValueHasType(const v1::Value& value, v1::PropertyType type) {
  switch (type) {
    case v1::INT:
      return value.kind_case() == v1::Value::kIntValue;
    case v1::DOUBLE:
      return value.kind_case() == v1::Value::kDoubleValue;
    case v1::STRING:
      return value.kind_case() == v1::Value::kStringValue;
    case v1::BOOL:
      return value.kind_case() == v1::Value::kBoolValue;
    case v1::STRUCT:
      return value.kind_case() == v1::Value::kStructValue;
    default:
      return false;
  }
}

absl::Status CheckProperties(const v1::NodeType& type, const Map<std::string, v1::Value>& props,
                             const Map<std::string, v1::Value>& custom) {
  if (props.size() + custom.size() > static_cast<size_t>(kMaxProperties)) {
    return absl::InvalidArgumentError("properties: more than 1000");
  }
  for (const auto& [key, value] : props) {
    auto it = type.properties().find(key);
    if (it == type.properties().end()) {
      return absl::InvalidArgumentError(
          StrCat("properties.", key, ": not in the schema of type ", type.name(),
                 " (declare it with PutType, or use custom_properties)"));
    }
    if (!ValueHasType(value, it->second)) {
      return absl::InvalidArgumentError(StrCat("properties.", key, ": type ", type.name(),
                                               " declares it ", PropertyTypeName(it->second)));
    }
  }
  for (const auto& [key, value] : custom) {
    if (value.kind_case() == v1::Value::KIND_NOT_SET) {
      return absl::InvalidArgumentError(StrCat("custom_properties.", key, ": no value"));
    }
  }
  return absl::OkStatus();
}

// Field values of a node for filters.
FieldValue PropertyValue(const Map<std::string, v1::Value>& props, const std::string& key,
                         bool literal_is_number) {
  FieldValue value;
  auto it = props.find(key);
  if (it == props.end()) return value;
  value.present = true;
  const v1::Value& v = it->second;
  double number = 0;
  bool numeric = false;
  switch (v.kind_case()) {
    case v1::Value::kIntValue:
      number = static_cast<double>(v.int_value());
      numeric = true;
      value.text = std::to_string(v.int_value());
      break;
    case v1::Value::kDoubleValue:
      number = v.double_value();
      numeric = true;
      value.text = FormatDouble(v.double_value());
      break;
    case v1::Value::kStringValue:
      value.text = v.string_value();
      break;
    case v1::Value::kBoolValue:
      value.text = v.bool_value() ? "true" : "false";
      break;
    default:
      value.present = false;
  }
  if (numeric && literal_is_number) {
    value.numeric = true;
    value.number = number;
  }
  return value;
}

FieldValue NodeFieldValue(const NodeRef& node, const Expr& leaf) {
  const Field& field = leaf.field;
  bool literal_number = !leaf.values.empty() && leaf.values[0].is_number;
  const Map<std::string, v1::Value>* props = nullptr;
  const Map<std::string, v1::Value>* custom = nullptr;
  if (node.artifact) {
    props = &node.artifact->properties();
    custom = &node.artifact->custom_properties();
  } else if (node.execution) {
    props = &node.execution->properties();
    custom = &node.execution->custom_properties();
  } else {
    props = &node.context->properties();
    custom = &node.context->custom_properties();
  }
  if (field.kind == FieldKind::kProperty) return PropertyValue(*props, field.key, literal_number);
  if (field.kind == FieldKind::kCustomProperty) {
    return PropertyValue(*custom, field.key, literal_number);
  }
  FieldValue value;
  value.present = true;
  value.numeric = field.numeric();
  auto text = [&](const std::string& s) { value.text = s; };
  switch (field.attribute) {
    case Attribute::kType:
      text(node.artifact    ? node.artifact->type()
           : node.execution ? node.execution->type()
                            : node.context->type());
      break;
    case Attribute::kName:
      text(node.artifact    ? node.artifact->name()
           : node.execution ? node.execution->name()
                            : node.context->name());
      break;
    case Attribute::kUri:
      if (!node.artifact) value.present = false;
      if (node.artifact) text(node.artifact->uri());
      break;
    case Attribute::kDigest:
      if (!node.artifact) value.present = false;
      if (node.artifact) text(node.artifact->digest());
      break;
    case Attribute::kState:
      if (node.artifact) {
        text(v1::Artifact::State_Name(node.artifact->state()));
      } else if (node.execution) {
        text(v1::Execution::State_Name(node.execution->state()));
      } else {
        value.present = false;
      }
      break;
    case Attribute::kRunId:
      if (!node.execution) value.present = false;
      if (node.execution) text(node.execution->run_id());
      break;
    case Attribute::kNodeId:
      value.number = static_cast<double>(node.artifact    ? node.artifact->id()
                                         : node.execution ? node.execution->id()
                                                          : node.context->id());
      break;
    case Attribute::kCreateTime:
      value.number = static_cast<double>(node.artifact    ? node.artifact->create_time_ms()
                                         : node.execution ? node.execution->create_time_ms()
                                                          : node.context->create_time_ms());
      break;
    case Attribute::kKind:
      text(KindName(node.kind));
      break;
    default:
      value.present = false;
  }
  return value;
}

bool NodeMatches(const Expr* expr, const NodeRef& node) {
  return Matches(expr, [&](const Expr& leaf) { return NodeFieldValue(node, leaf); });
}

int64_t NextTime(int64_t previous) { return std::max(NowMs(), previous + 1); }

absl::Status CheckInProject(std::string_view field, std::string_view value,
                            std::string_view project) {
  if (value.empty() || ProjectOf(value) == project) return absl::OkStatus();
  return absl::InvalidArgumentError(StrCat(field, " ", value.substr(0, 200), " is not in project ",
                                           project, ": one request acts in one project"));
}

absl::Status CheckExpected(std::string_view what, int64_t expected, int64_t stored) {
  if (expected != 0 && expected != stored) {
    return absl::AbortedError(StrCat(what, " was updated at ", std::to_string(stored),
                                     ", not at expected_update_time_ms ", std::to_string(expected),
                                     "; read it again and retry"));
  }
  return absl::OkStatus();
}

const std::vector<v1::NodeType>& BuiltInTypes() {
  static const std::vector<v1::NodeType>* types = [] {
    auto* out = new std::vector<v1::NodeType>();
    auto add = [&](v1::NodeKind kind, const char* name, const char* description,
                   std::vector<std::pair<const char*, v1::PropertyType>> props) {
      v1::NodeType type;
      type.set_kind(kind);
      type.set_name(name);
      type.set_description(description);
      type.set_built_in(true);
      for (auto& [key, t] : props) (*type.mutable_properties())[key] = t;
      out->push_back(type);
    };
    add(v1::ARTIFACT, "Dataset", "a dataset version",
        {{"rows", v1::INT},
         {"columns", v1::INT},
         {"split", v1::STRING},
         {"format", v1::STRING},
         {"dataset", v1::STRING},
         {"version", v1::STRING}});
    add(v1::ARTIFACT, "Model", "a trained model",
        {{"framework", v1::STRING},
         {"format", v1::STRING},
         {"registered_model", v1::STRING},
         {"model_version", v1::INT}});
    add(v1::ARTIFACT, "Metrics", "evaluation results", {{"split", v1::STRING}});
    add(v1::ARTIFACT, "Statistics", "data statistics or a drift profile", {{"split", v1::STRING}});
    add(v1::ARTIFACT, "Logs", "captured output of a step", {{"stream", v1::STRING}});
    add(v1::EXECUTION, "Train", "model training", {{"step", v1::STRING}});
    add(v1::EXECUTION, "Transform", "preprocessing, ingestion, feature engineering",
        {{"step", v1::STRING}});
    add(v1::EXECUTION, "Validate", "data validation", {{"step", v1::STRING}});
    add(v1::EXECUTION, "Evaluate", "model evaluation", {{"step", v1::STRING}});
    add(v1::EXECUTION, "Deploy", "deployment of a model", {{"target", v1::STRING}});
    add(v1::CONTEXT, "PipelineRun", "one run of a pipeline", {{"pipeline", v1::STRING}});
    add(v1::CONTEXT, "Experiment", "an experiment of the tracking service",
        {{"experiment_id", v1::STRING}});
    return out;
  }();
  return *types;
}

namespace {
// The built-in type `name` names in its project (`projects/P/Dataset` is Dataset in P), if any.
std::optional<v1::NodeType> BuiltInIn(v1::NodeKind kind, std::string_view name) {
  if (absl::StatusOr<ScopedName> scoped = ParseScoped("", name); scoped.ok()) {
    for (const v1::NodeType& type : BuiltInTypes()) {
      if (type.kind() == kind && type.name() == scoped->name) {
        v1::NodeType out = type;
        out.set_name(std::string(name));
        return out;
      }
    }
  }
  return std::nullopt;
}
}  // namespace

absl::StatusOr<std::unique_ptr<Db>> LineageStore::OpenDb(const std::string& path,
                                                         const Db::Options& options) {
  // On-disk formats: 1 (issue 15) records the format.
  Db::Options versioned = Versioned(options, 1, {RecordFormatMigration()});
  return Db::Open(path,
                  {kLineageTypesCf, kLineageNodesCf, kLineageKeysCf, kLineageEdgesCf,
                   kLineageIndexCf, kModelsCf, kModelVersionsCf, kAliasHistoryCf, "request_ids"},
                  versioned);
}

LineageStore::LineageStore(Db* db, LineageBudget budget)
    : db_(db),
      budget_(budget),
      types_(db->Cf(kLineageTypesCf)),
      nodes_(db->Cf(kLineageNodesCf)),
      keys_(db->Cf(kLineageKeysCf)),
      edges_(db->Cf(kLineageEdgesCf)),
      index_(db->Cf(kLineageIndexCf)) {}

absl::StatusOr<std::unique_ptr<LineageStore>> LineageStore::Create(Db* db, LineageBudget budget) {
  std::unique_ptr<LineageStore> store(new LineageStore(db, budget));
  RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status LineageStore::Init() {
  for (v1::NodeKind kind : {v1::ARTIFACT, v1::EXECUTION, v1::CONTEXT}) {
    int64_t last = 0;
    std::string prefix(1, KindByte(kind));
    RETURN_IF_ERROR(
        db_->ScanPrefixReverse(nodes_, prefix, {}, [&](std::string_view key, std::string_view) {
          last = ReadId8(key.substr(1));
          return false;
        }));
    next_id_[kind] = last + 1;
  }
  for (const v1::NodeType& type : BuiltInTypes()) {
    ASSIGN_OR_RETURN(auto stored, db_->Get(types_, TypeKey(type.kind(), type.name())));
    if (stored) continue;
    RETURN_IF_ERROR(PutType(type).status());
  }
  return absl::OkStatus();
}

int64_t LineageStore::NextId(v1::NodeKind kind) { return next_id_[kind].fetch_add(1); }

std::mutex& LineageStore::Stripe(std::string_view key) const {
  return stripes_[std::hash<std::string_view>()(key) % stripes_.size()];
}

// ---------------------------------------------------------------------------------------------
// Types

absl::StatusOr<v1::NodeType> LineageStore::PutType(const v1::NodeType& type) {
  if (type.kind() != v1::ARTIFACT && type.kind() != v1::EXECUTION && type.kind() != v1::CONTEXT) {
    return absl::InvalidArgumentError("type.kind: ARTIFACT, EXECUTION or CONTEXT");
  }
  RETURN_IF_ERROR(ValidateTypeName("type.name", type.name()));
  RETURN_IF_ERROR(CheckLength("type.description", type.description(), 64 << 10));
  if (type.properties_size() > kMaxProperties) {
    return absl::InvalidArgumentError("type.properties: more than 1000");
  }
  for (const auto& [key, t] : type.properties()) {
    if (key.empty() || key.size() > 250) {
      return absl::InvalidArgumentError("type.properties: keys are 1 to 250 bytes");
    }
    if (t == v1::PROPERTY_TYPE_UNSPECIFIED || !v1::PropertyType_IsValid(t)) {
      return absl::InvalidArgumentError(StrCat("type.properties.", key, ": no property type"));
    }
  }
  std::lock_guard lock(types_mu_);
  std::string key = TypeKey(type.kind(), type.name());
  ASSIGN_OR_RETURN(auto stored_value, db_->GetProto<v1::NodeType>(types_, key));
  // A built-in type in another project than default exists before it is first stored there.
  if (!stored_value) stored_value = BuiltInIn(type.kind(), type.name());
  v1::NodeType merged = type;
  if (stored_value) {
    const v1::NodeType& stored = *stored_value;
    merged = stored;
    for (const auto& [name, t] : type.properties()) {
      auto it = stored.properties().find(name);
      if (it != stored.properties().end() && it->second != t) {
        return absl::FailedPreconditionError(
            StrCat("type ", type.name(), ": property ", name, " is ", PropertyTypeName(it->second),
                   ", cannot become ", PropertyTypeName(t), " (a schema only grows)"));
      }
      (*merged.mutable_properties())[name] = t;
    }
    if (!type.description().empty()) merged.set_description(type.description());
  }
  rocksdb::WriteBatch batch;
  batch.Put(types_, key, merged.SerializeAsString());
  RETURN_IF_ERROR(db_->Write(&batch));
  std::lock_guard cache_lock(type_cache_mu_);
  type_cache_[key] = merged;
  return merged;
}

absl::StatusOr<v1::NodeType> LineageStore::GetType(v1::NodeKind kind, std::string_view name) const {
  ASSIGN_OR_RETURN(auto type, db_->GetProto<v1::NodeType>(types_, TypeKey(kind, name)));
  if (!type) type = BuiltInIn(kind, name);
  if (!type) {
    return absl::NotFoundError(StrCat(KindName(kind), " type \"", name.substr(0, 200),
                                      "\" not found (register it with PutType)"));
  }
  return *std::move(type);
}

absl::StatusOr<std::vector<v1::NodeType>> LineageStore::ListTypes(v1::NodeKind kind,
                                                                  std::string_view project) const {
  RETURN_IF_ERROR(ValidateProject(project));
  std::vector<v1::NodeType> out;
  std::set<std::pair<int, std::string>> seen;
  std::string prefix =
      kind == v1::NODE_KIND_UNSPECIFIED ? std::string() : std::string(1, KindByte(kind));
  RETURN_IF_ERROR(
      db_->ScanProto<v1::NodeType>(types_, prefix, {}, [&](std::string_view, v1::NodeType& type) {
        if (ProjectOf(type.name()) != project) return true;
        seen.emplace(type.kind(), type.name());
        out.push_back(std::move(type));
        return true;
      }));
  if (project != kDefaultProject) {  // the built-in types not stored in the project yet
    for (const v1::NodeType& type : BuiltInTypes()) {
      if (kind != v1::NODE_KIND_UNSPECIFIED && type.kind() != kind) continue;
      std::string name = Qualify(project, type.name());
      if (seen.contains({type.kind(), name})) continue;
      out.push_back(*BuiltInIn(type.kind(), name));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Nodes

absl::Status ValidateArtifactFields(const v1::Artifact& a) {
  RETURN_IF_ERROR(CheckLength("artifact.name", a.name(), kMaxNameBytes));
  RETURN_IF_ERROR(CheckLength("artifact.uri", a.uri(), 8192));
  RETURN_IF_ERROR(CheckLength("artifact.external_id", a.external_id(), kMaxExternalIdBytes));
  if (!a.digest().empty()) {
    bool hex = a.digest().size() == 64;
    for (char c : a.digest()) hex = hex && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!hex) {
      return absl::InvalidArgumentError(StrCat("artifact.digest \"",
                                               std::string_view(a.digest()).substr(0, 100),
                                               "\": 64 lower-case hex characters (SHA-256)"));
    }
  }
  if (a.size() < 0) return absl::InvalidArgumentError("artifact.size: negative");
  if (!v1::Artifact::State_IsValid(a.state())) {
    return absl::InvalidArgumentError("artifact.state: unknown");
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Artifact> LineageStore::PutArtifact(const v1::PutArtifactRequest& request,
                                                       std::string_view project) {
  v1::Artifact a = request.artifact();
  RETURN_IF_ERROR(ValidateArtifactFields(a));
  RETURN_IF_ERROR(CheckInProject("artifact.type", a.type(), project));
  RETURN_IF_ERROR(CheckInProject("artifact.external_id", a.external_id(), project));
  int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  if (a.id() > 0) {
    std::lock_guard lock(Stripe(NodeKey(v1::ARTIFACT, a.id())));
    ASSIGN_OR_RETURN(v1::Artifact stored,
                     MustLoadIn<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, a.id(), project));
    RETURN_IF_ERROR(CheckExpected(StrCat("artifact ", std::to_string(a.id())),
                                  request.expected_update_time_ms(), stored.update_time_ms()));
    if (!a.type().empty() && a.type() != stored.type()) {
      return absl::InvalidArgumentError(StrCat("artifact.type: artifact ", std::to_string(a.id()),
                                               " is a ", stored.type(), "; types never change"));
    }
    if (!a.external_id().empty() && a.external_id() != stored.external_id()) {
      return absl::InvalidArgumentError("artifact.external_id: cannot change");
    }
    ASSIGN_OR_RETURN(v1::NodeType type, GetType(v1::ARTIFACT, stored.type()));
    RETURN_IF_ERROR(CheckProperties(type, a.properties(), a.custom_properties()));
    a.set_type(stored.type());
    a.set_external_id(stored.external_id());
    a.set_create_time_ms(stored.create_time_ms());
    if (a.state() == v1::Artifact::STATE_UNSPECIFIED) a.set_state(stored.state());
    a.set_update_time_ms(NextTime(stored.update_time_ms()));
    batch.Put(nodes_, NodeKey(v1::ARTIFACT, a.id()), a.SerializeAsString());
    RETURN_IF_ERROR(db_->Write(&batch));
    return a;
  }
  if (request.expected_update_time_ms() != 0) {
    return absl::InvalidArgumentError("expected_update_time_ms: only for updates (id > 0)");
  }
  ASSIGN_OR_RETURN(v1::NodeType type, GetType(v1::ARTIFACT, a.type()));
  RETURN_IF_ERROR(CheckProperties(type, a.properties(), a.custom_properties()));
  std::unique_lock<std::mutex> lock;
  if (!a.external_id().empty()) {
    std::string key = ExternalKey(v1::ARTIFACT, a.external_id());
    lock = std::unique_lock(Stripe(key));
    ASSIGN_OR_RETURN(auto existing, db_->Get(keys_, key));
    if (existing) {
      ASSIGN_OR_RETURN(v1::Artifact stored,
                       MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, ReadId8(*existing)));
      if (stored.type() != a.type()) {
        return absl::AlreadyExistsError(
            StrCat("artifact external_id ", a.external_id(), " belongs to a ", stored.type()));
      }
      return stored;
    }
  }
  AddNewArtifact(&a, now, &batch);
  RETURN_IF_ERROR(db_->Write(&batch));
  return a;
}

void LineageStore::AddNewArtifact(v1::Artifact* a, int64_t now, rocksdb::WriteBatch* batch) {
  a->set_id(NextId(v1::ARTIFACT));
  if (a->state() == v1::Artifact::STATE_UNSPECIFIED) a->set_state(v1::Artifact::LIVE);
  a->set_create_time_ms(now);
  a->set_update_time_ms(now);
  batch->Put(nodes_, NodeKey(v1::ARTIFACT, a->id()), a->SerializeAsString());
  batch->Put(index_, StrCat(TypeIndexPrefix(v1::ARTIFACT, a->type()), Id8(a->id())), "");
  if (!a->external_id().empty()) {
    batch->Put(keys_, ExternalKey(v1::ARTIFACT, a->external_id()), Id8(a->id()));
  }
}

void LineageStore::AddNewContext(v1::Context* c, int64_t now, rocksdb::WriteBatch* batch) {
  c->set_id(NextId(v1::CONTEXT));
  if (c->name().empty()) c->set_name(c->external_id());
  c->set_create_time_ms(now);
  c->set_update_time_ms(now);
  batch->Put(nodes_, NodeKey(v1::CONTEXT, c->id()), c->SerializeAsString());
  batch->Put(index_, StrCat(TypeIndexPrefix(v1::CONTEXT, c->type()), Id8(c->id())), "");
  batch->Put(keys_, ContextNameKey(c->type(), c->name()), Id8(c->id()));
  if (!c->external_id().empty()) {
    batch->Put(keys_, ExternalKey(v1::CONTEXT, c->external_id()), Id8(c->id()));
  }
}

namespace {

// Resolves a GetNodeRequest to an id (by id or external id).
absl::StatusOr<int64_t> ResolveNodeId(const Db& db, rocksdb::ColumnFamilyHandle* keys,
                                      v1::NodeKind kind, const v1::GetNodeRequest& request) {
  if (request.id() > 0) return request.id();
  if (!request.external_id().empty()) {
    ASSIGN_OR_RETURN(auto id, db.Get(keys, ExternalKey(kind, request.external_id())));
    if (!id) {
      return absl::NotFoundError(
          StrCat(KindName(kind), " with external_id ", request.external_id(), " not found"));
    }
    return ReadId8(*id);
  }
  if (kind == v1::CONTEXT && !request.type().empty()) {
    ASSIGN_OR_RETURN(auto id, db.Get(keys, ContextNameKey(request.type(), request.name())));
    if (!id) {
      return absl::NotFoundError(
          StrCat("context ", request.type(), "/", request.name(), " not found"));
    }
    return ReadId8(*id);
  }
  return absl::InvalidArgumentError("id: give an id (> 0) or an external_id");
}

}  // namespace

absl::StatusOr<v1::Artifact> LineageStore::GetArtifact(const v1::GetNodeRequest& request,
                                                       std::string_view project) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::ARTIFACT, request));
  return MustLoadIn<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id, project);
}

absl::StatusOr<v1::Execution> LineageStore::GetExecution(const v1::GetNodeRequest& request,
                                                         std::string_view project) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::EXECUTION, request));
  return MustLoadIn<v1::Execution>(*db_, nodes_, v1::EXECUTION, id, project);
}

absl::StatusOr<v1::Context> LineageStore::GetContext(const v1::GetNodeRequest& request,
                                                     std::string_view project) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::CONTEXT, request));
  return MustLoadIn<v1::Context>(*db_, nodes_, v1::CONTEXT, id, project);
}

namespace {

// Lists nodes of one kind: by type through the type index, else every node; filtered in memory,
// paged by the last key seen, at most kListScanBudget entries examined per call.
template <typename Node, typename Response>
absl::StatusOr<Response> ListNodes(const Db& db, rocksdb::ColumnFamilyHandle* nodes,
                                   rocksdb::ColumnFamilyHandle* index, v1::NodeKind kind,
                                   const v1::ListNodesRequest& request, std::string_view project,
                                   std::function<Node*(Response*)> add) {
  RETURN_IF_ERROR(ValidateProject(project));
  RETURN_IF_ERROR(NormalizePageSize(request.page_size(), 100, 1000).status());
  ASSIGN_OR_RETURN(auto filter, ParseFilter(request.filter(), FilterDialect::kLineage));
  ASSIGN_OR_RETURN(
      Pager pager,
      Pager::Start(db.page_token_key(), request.page_size(), 100, 1000, request.page_token(),
                   Fingerprint({"nodes", std::string(1, KindByte(kind)), request.type(),
                                request.filter(), std::string(project)})));
  const std::string& after = pager.after();
  Response response;
  int64_t scanned = 0;
  absl::Status status = absl::OkStatus();
  auto visit = [&](std::string_view key, int64_t id) {
    if (++scanned > kListScanBudget) {
      pager.Suspend();  // partial page: continue from here
      return false;
    }
    auto node = LoadNode<Node>(db, nodes, kind, id);
    if (!node.ok()) {
      status = node.status();
      return false;
    }
    NodeRef ref{kind};
    if (*node) {
      if constexpr (std::is_same_v<Node, v1::Artifact>) ref.artifact = &**node;
      if constexpr (std::is_same_v<Node, v1::Execution>) ref.execution = &**node;
      if constexpr (std::is_same_v<Node, v1::Context>) ref.context = &**node;
    }
    if (!*node || ProjectOf((*node)->type()) != project || !NodeMatches(filter.get(), ref)) {
      pager.Pass(key);
      return true;
    }
    if (!pager.Take(key)) return false;
    *add(&response) = std::move(**node);
    return true;
  };
  if (!request.type().empty()) {
    std::string prefix = TypeIndexPrefix(kind, request.type());
    RETURN_IF_ERROR(
        db.ScanPrefix(index, prefix, after, [&](std::string_view key, std::string_view) {
          return visit(key, ReadId8(key.substr(key.size() - 8)));
        }));
  } else {
    std::string prefix(1, KindByte(kind));
    RETURN_IF_ERROR(
        db.ScanPrefix(nodes, prefix, after, [&](std::string_view key, std::string_view) {
          return visit(key, ReadId8(key.substr(1)));
        }));
  }
  RETURN_IF_ERROR(status);
  response.set_next_page_token(pager.NextToken());
  return response;
}

}  // namespace

absl::StatusOr<v1::ListArtifactsResponse> LineageStore::ListArtifacts(
    const v1::ListNodesRequest& request, std::string_view project) const {
  return ListNodes<v1::Artifact, v1::ListArtifactsResponse>(
      *db_, nodes_, index_, v1::ARTIFACT, request, project,
      [](v1::ListArtifactsResponse* r) { return r->add_artifacts(); });
}

absl::StatusOr<v1::ListExecutionsResponse> LineageStore::ListExecutions(
    const v1::ListNodesRequest& request, std::string_view project) const {
  return ListNodes<v1::Execution, v1::ListExecutionsResponse>(
      *db_, nodes_, index_, v1::EXECUTION, request, project,
      [](v1::ListExecutionsResponse* r) { return r->add_executions(); });
}

absl::StatusOr<v1::ListContextsResponse> LineageStore::ListContexts(
    const v1::ListNodesRequest& request, std::string_view project) const {
  return ListNodes<v1::Context, v1::ListContextsResponse>(
      *db_, nodes_, index_, v1::CONTEXT, request, project,
      [](v1::ListContextsResponse* r) { return r->add_contexts(); });
}

}  // namespace mlops::metadata
