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
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/metadata/filter.h"
#include "services/metadata/registry_store.h"
#include "services/metadata/run_index_internal.h"

namespace mlops::metadata {
namespace {

using google::protobuf::Map;
using internal::FieldValue;

constexpr size_t kMaxNameBytes = 1024;
constexpr size_t kMaxExternalIdBytes = 512;
constexpr size_t kMaxPathBytes = 1024;
constexpr int64_t kListScanBudget = 200000;

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
  return ValidateName(NameKind::kType, what, name);
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

struct NodeRef {
  v1::NodeKind kind;
  const v1::Artifact* artifact = nullptr;
  const v1::Execution* execution = nullptr;
  const v1::Context* context = nullptr;
};

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
  if (expr == nullptr) return true;
  switch (expr->type) {
    case Expr::Type::kAnd:
      for (const auto& child : expr->children) {
        if (!NodeMatches(child.get(), node)) return false;
      }
      return true;
    case Expr::Type::kOr:
      for (const auto& child : expr->children) {
        if (NodeMatches(child.get(), node)) return true;
      }
      return false;
    case Expr::Type::kCompare: {
      Expr leaf_copy;  // kind/state values compare case-insensitively as the enums print
      const Expr* leaf = expr;
      if (expr->field.attribute == Attribute::kState || expr->field.attribute == Attribute::kKind) {
        leaf_copy.type = expr->type;
        leaf_copy.field = expr->field;
        leaf_copy.op = expr->op;
        leaf_copy.values = expr->values;
        for (auto& v : leaf_copy.values) {
          v.text = expr->field.attribute == Attribute::kState ? ToUpper(v.text) : ToLower(v.text);
        }
        leaf = &leaf_copy;
      }
      return internal::MatchesLeaf(*leaf, NodeFieldValue(node, *leaf));
    }
  }
  return false;
}

int64_t NextTime(int64_t previous) { return std::max(NowMs(), previous + 1); }

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

// Locks a sorted, unique set of stripes.
class StripeLocks {
 public:
  explicit StripeLocks(std::vector<std::mutex*> mutexes) : mutexes_(std::move(mutexes)) {
    std::sort(mutexes_.begin(), mutexes_.end());
    mutexes_.erase(std::unique(mutexes_.begin(), mutexes_.end()), mutexes_.end());
    for (std::mutex* m : mutexes_) m->lock();
  }
  ~StripeLocks() {
    for (auto it = mutexes_.rbegin(); it != mutexes_.rend(); ++it) (*it)->unlock();
  }

 private:
  std::vector<std::mutex*> mutexes_;
};

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

LineageStore::LineageStore(Db* db)
    : db_(db),
      types_(db->Cf(kLineageTypesCf)),
      nodes_(db->Cf(kLineageNodesCf)),
      keys_(db->Cf(kLineageKeysCf)),
      edges_(db->Cf(kLineageEdgesCf)),
      index_(db->Cf(kLineageIndexCf)) {}

absl::StatusOr<std::unique_ptr<LineageStore>> LineageStore::Create(Db* db) {
  std::unique_ptr<LineageStore> store(new LineageStore(db));
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
  if (!type) {
    return absl::NotFoundError(StrCat(KindName(kind), " type \"", name.substr(0, 200),
                                      "\" not found (register it with PutType)"));
  }
  return *std::move(type);
}

absl::StatusOr<std::vector<v1::NodeType>> LineageStore::ListTypes(v1::NodeKind kind) const {
  std::vector<v1::NodeType> out;
  std::string prefix =
      kind == v1::NODE_KIND_UNSPECIFIED ? std::string() : std::string(1, KindByte(kind));
  RETURN_IF_ERROR(
      db_->ScanProto<v1::NodeType>(types_, prefix, {}, [&](std::string_view, v1::NodeType& type) {
        out.push_back(std::move(type));
        return true;
      }));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Nodes

namespace {

template <typename Node>
absl::StatusOr<std::optional<Node>> LoadNode(const Db& db, rocksdb::ColumnFamilyHandle* cf,
                                             v1::NodeKind kind, int64_t id) {
  return db.GetProto<Node>(cf, NodeKey(kind, id));
}

template <typename Node>
absl::StatusOr<Node> MustLoad(const Db& db, rocksdb::ColumnFamilyHandle* cf, v1::NodeKind kind,
                              int64_t id) {
  ASSIGN_OR_RETURN(auto node, LoadNode<Node>(db, cf, kind, id));
  if (!node) {
    return absl::NotFoundError(StrCat(KindName(kind), " ", std::to_string(id), " not found"));
  }
  return std::move(*node);
}

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

}  // namespace

absl::StatusOr<v1::Artifact> LineageStore::PutArtifact(const v1::PutArtifactRequest& request) {
  v1::Artifact a = request.artifact();
  RETURN_IF_ERROR(ValidateArtifactFields(a));
  int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  if (a.id() > 0) {
    std::lock_guard lock(Stripe(NodeKey(v1::ARTIFACT, a.id())));
    ASSIGN_OR_RETURN(v1::Artifact stored,
                     MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, a.id()));
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

absl::StatusOr<v1::Artifact> LineageStore::GetArtifact(const v1::GetNodeRequest& request) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::ARTIFACT, request));
  return MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id);
}

absl::StatusOr<v1::Execution> LineageStore::GetExecution(const v1::GetNodeRequest& request) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::EXECUTION, request));
  return MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, id);
}

absl::StatusOr<v1::Context> LineageStore::GetContext(const v1::GetNodeRequest& request) const {
  ASSIGN_OR_RETURN(int64_t id, ResolveNodeId(*db_, keys_, v1::CONTEXT, request));
  return MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, id);
}

namespace {

// Lists nodes of one kind: by type through the type index, else every node; filtered in memory,
// paged by the last key seen, at most kListScanBudget entries examined per call.
template <typename Node, typename Response>
absl::StatusOr<Response> ListNodes(const Db& db, rocksdb::ColumnFamilyHandle* nodes,
                                   rocksdb::ColumnFamilyHandle* index, v1::NodeKind kind,
                                   const v1::ListNodesRequest& request,
                                   std::function<Node*(Response*)> add) {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  ASSIGN_OR_RETURN(auto filter, ParseFilter(request.filter(), FilterDialect::kLineage));
  uint64_t fingerprint =
      Fingerprint({"nodes", std::string(1, KindByte(kind)), request.type(), request.filter()});
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db.page_token_key(), request.page_token(), fingerprint));
    after = cursor.after;
  }
  Response response;
  bool more = false;
  std::string last;
  int64_t scanned = 0;
  int matched = 0;
  absl::Status status = absl::OkStatus();
  auto visit = [&](std::string_view key, int64_t id) {
    if (++scanned > kListScanBudget) {
      more = true;  // partial page: continue from here
      return false;
    }
    auto node = LoadNode<Node>(db, nodes, kind, id);
    if (!node.ok()) {
      status = node.status();
      return false;
    }
    last = std::string(key);
    if (!*node) return true;
    NodeRef ref{kind};
    if constexpr (std::is_same_v<Node, v1::Artifact>) ref.artifact = &**node;
    if constexpr (std::is_same_v<Node, v1::Execution>) ref.execution = &**node;
    if constexpr (std::is_same_v<Node, v1::Context>) ref.context = &**node;
    if (!NodeMatches(filter.get(), ref)) return true;
    *add(&response) = std::move(**node);
    if (++matched == page_size) {
      more = true;  // (the next call may find nothing more: a token can end in an empty page)
      return false;
    }
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
  if (more) response.set_next_page_token(EncodePageToken(db.page_token_key(), {fingerprint, last}));
  return response;
}

}  // namespace

absl::StatusOr<v1::ListArtifactsResponse> LineageStore::ListArtifacts(
    const v1::ListNodesRequest& request) const {
  return ListNodes<v1::Artifact, v1::ListArtifactsResponse>(
      *db_, nodes_, index_, v1::ARTIFACT, request,
      [](v1::ListArtifactsResponse* r) { return r->add_artifacts(); });
}

absl::StatusOr<v1::ListExecutionsResponse> LineageStore::ListExecutions(
    const v1::ListNodesRequest& request) const {
  return ListNodes<v1::Execution, v1::ListExecutionsResponse>(
      *db_, nodes_, index_, v1::EXECUTION, request,
      [](v1::ListExecutionsResponse* r) { return r->add_executions(); });
}

absl::StatusOr<v1::ListContextsResponse> LineageStore::ListContexts(
    const v1::ListNodesRequest& request) const {
  return ListNodes<v1::Context, v1::ListContextsResponse>(
      *db_, nodes_, index_, v1::CONTEXT, request,
      [](v1::ListContextsResponse* r) { return r->add_contexts(); });
}

// ---------------------------------------------------------------------------------------------
// Executions and contexts

absl::StatusOr<v1::PutExecutionResponse> LineageStore::PutExecution(
    const v1::PutExecutionRequest& request) {
  const v1::Execution& in = request.execution();
  if (request.artifacts_size() > kMaxArtifactsPerExecution) {
    return absl::InvalidArgumentError("artifacts: more than 10000 in one call");
  }
  if (request.contexts_size() > kMaxContextsPerExecution) {
    return absl::InvalidArgumentError("contexts: more than 100 in one call");
  }
  RETURN_IF_ERROR(CheckLength("execution.name", in.name(), kMaxNameBytes));
  RETURN_IF_ERROR(CheckLength("execution.external_id", in.external_id(), kMaxExternalIdBytes));
  RETURN_IF_ERROR(CheckLength("execution.run_id", in.run_id(), 64));
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
    if (entry.artifact().id() == 0) {
      RETURN_IF_ERROR(ValidateArtifactFields(entry.artifact()));
      ASSIGN_OR_RETURN(v1::NodeType type, type_of(v1::ARTIFACT, entry.artifact().type()));
      RETURN_IF_ERROR(CheckProperties(type, entry.artifact().properties(),
                                      entry.artifact().custom_properties()));
    }
  }
  for (int i = 0; i < request.contexts_size(); ++i) {
    const v1::Context& c = request.contexts(i);
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
      ASSIGN_OR_RETURN(v1::Execution stored, MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION,
                                                                     response.execution_id()));
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
                     MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, in.id()));
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
      ASSIGN_OR_RETURN(auto exists, db_->Get(nodes_, NodeKey(v1::ARTIFACT, a.id())));
      if (!exists) {
        return absl::NotFoundError(StrCat("artifact ", std::to_string(a.id()), " not found"));
      }
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
      ASSIGN_OR_RETURN(auto exists, db_->Get(nodes_, NodeKey(v1::CONTEXT, c.id())));
      if (!exists) {
        return absl::NotFoundError(StrCat("context ", std::to_string(c.id()), " not found"));
      }
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

absl::StatusOr<v1::Context> LineageStore::PutContext(const v1::PutContextRequest& request) {
  v1::Context c = request.context();
  RETURN_IF_ERROR(CheckLength("context.name", c.name(), kMaxNameBytes));
  RETURN_IF_ERROR(CheckLength("context.external_id", c.external_id(), kMaxExternalIdBytes));
  rocksdb::WriteBatch batch;
  if (c.id() > 0) {
    std::lock_guard lock(Stripe(NodeKey(v1::CONTEXT, c.id())));
    ASSIGN_OR_RETURN(v1::Context stored, MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, c.id()));
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

absl::Status LineageStore::AddParentContext(int64_t child_id, int64_t parent_id) {
  if (child_id <= 0 || parent_id <= 0) {
    return absl::InvalidArgumentError("child_id and parent_id: required");
  }
  if (child_id == parent_id) {
    return absl::InvalidArgumentError(
        StrCat("context ", std::to_string(child_id), " cannot be its own parent"));
  }
  // One link at a time, so that two links cannot close a cycle together.
  std::lock_guard lock(types_mu_);
  RETURN_IF_ERROR(MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, child_id).status());
  RETURN_IF_ERROR(MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, parent_id).status());
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
    const v1::GetContextMembersRequest& request) const {
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 100, 1000));
  RETURN_IF_ERROR(MustLoad<v1::Context>(*db_, nodes_, v1::CONTEXT, request.context_id()).status());
  uint64_t fingerprint = Fingerprint({"members", Id8(request.context_id())});
  std::string prefix = StrCat("C", Id8(request.context_id()));
  std::string after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    after = StrCat(prefix, cursor.after);
  }
  v1::GetContextMembersResponse response;
  int count = 0;
  bool more = false;
  std::string last;
  absl::Status status = absl::OkStatus();
  RETURN_IF_ERROR(
      db_->ScanPrefix(edges_, prefix, after, [&](std::string_view key, std::string_view) {
        if (count == page_size) {
          more = true;
          return false;
        }
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
        ++count;
        last = std::string(key.substr(prefix.size()));
        return status.ok();
      }));
  RETURN_IF_ERROR(status);
  if (request.page_token().empty()) {
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
  if (more)
    response.set_next_page_token(EncodePageToken(db_->page_token_key(), {fingerprint, last}));
  return response;
}

// ---------------------------------------------------------------------------------------------
// Lineage

absl::StatusOr<v1::LineageGraph> LineageStore::GetLineage(
    const v1::GetLineageRequest& request) const {
  int hops = request.max_hops() == 0 ? 3 : request.max_hops();
  if (hops < 0 || hops > kMaxLineageHops) {
    return absl::InvalidArgumentError(
        StrCat("max_hops ", std::to_string(request.max_hops()), ": 1 to 100"));
  }
  ASSIGN_OR_RETURN(int page_size, NormalizePageSize(request.page_size(), 1000, 10000));
  ASSIGN_OR_RETURN(auto stop, ParseFilter(request.stop_filter(), FilterDialect::kLineage));
  auto direction = request.direction() == v1::GetLineageRequest::DIRECTION_UNSPECIFIED
                       ? v1::GetLineageRequest::UPSTREAM
                       : request.direction();
  bool up = direction != v1::GetLineageRequest::DOWNSTREAM;
  bool down = direction != v1::GetLineageRequest::UPSTREAM;

  // Nodes are (kind, id) packed as kind * 2^62 + id: artifacts before executions at equal hop.
  auto pack = [](v1::NodeKind kind, int64_t id) {
    return (static_cast<uint64_t>(kind == v1::ARTIFACT ? 0 : 1) << 62) | static_cast<uint64_t>(id);
  };
  auto kind_of = [](uint64_t packed) { return (packed >> 62) == 0 ? v1::ARTIFACT : v1::EXECUTION; };
  auto id_of = [](uint64_t packed) {
    return static_cast<int64_t>(packed & ((uint64_t{1} << 62) - 1));
  };

  std::vector<uint64_t> frontier;
  std::string start_key;
  switch (request.start_case()) {
    case v1::GetLineageRequest::kArtifactId:
      RETURN_IF_ERROR(
          MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, request.artifact_id()).status());
      frontier.push_back(pack(v1::ARTIFACT, request.artifact_id()));
      start_key = StrCat("a", Id8(request.artifact_id()));
      break;
    case v1::GetLineageRequest::kExecutionId:
      RETURN_IF_ERROR(
          MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, request.execution_id()).status());
      frontier.push_back(pack(v1::EXECUTION, request.execution_id()));
      start_key = StrCat("e", Id8(request.execution_id()));
      break;
    case v1::GetLineageRequest::kRunId:
      RETURN_IF_ERROR(db_->ScanPrefix(index_, RunIndexPrefix(request.run_id()), {},
                                      [&](std::string_view key, std::string_view) {
                                        frontier.push_back(pack(
                                            v1::EXECUTION, ReadId8(key.substr(key.size() - 8))));
                                        return true;
                                      }));
      if (frontier.empty()) {
        return absl::NotFoundError(
            StrCat("run ", request.run_id(), " has no executions in the lineage graph"));
      }
      start_key = StrCat("r", request.run_id());
      break;
    default:
      return absl::InvalidArgumentError("start: give artifact_id, execution_id or run_id");
  }
  uint64_t fingerprint = Fingerprint({"lineage", start_key, std::to_string(direction),
                                      std::to_string(hops), request.stop_filter()});
  size_t offset = 0;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageCursor cursor,
                     DecodePageToken(db_->page_token_key(), request.page_token(), fingerprint));
    offset = static_cast<size_t>(std::strtoull(cursor.after.c_str(), nullptr, 10));
  }

  // Breadth first. `order` is the output order; `hop_of` the distance of each visited node.
  absl::flat_hash_map<uint64_t, int> hop_of;
  absl::flat_hash_map<uint64_t, bool> stopped;
  std::vector<uint64_t> order;
  std::vector<v1::Event> edges;
  std::sort(frontier.begin(), frontier.end());
  for (uint64_t n : frontier) hop_of[n] = 0;
  absl::Status status = absl::OkStatus();
  for (int hop = 0; !frontier.empty(); ++hop) {
    std::sort(frontier.begin(), frontier.end());
    for (uint64_t n : frontier) order.push_back(n);
    if (order.size() > kMaxLineageNodes) {
      return absl::InvalidArgumentError(StrCat("lineage: more than 1000000 nodes within ",
                                               std::to_string(hops),
                                               " hops; use fewer hops or a stop_filter"));
    }
    std::vector<uint64_t> next;
    for (uint64_t n : frontier) {
      // The start nodes are always expanded; others stop when they match the filter.
      if (hop > 0 && stop != nullptr) {
        NodeRef ref{kind_of(n)};
        std::optional<v1::Artifact> a;
        std::optional<v1::Execution> e;
        if (ref.kind == v1::ARTIFACT) {
          ASSIGN_OR_RETURN(a, LoadNode<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id_of(n)));
          if (!a) continue;
          ref.artifact = &*a;
        } else {
          ASSIGN_OR_RETURN(e, LoadNode<v1::Execution>(*db_, nodes_, v1::EXECUTION, id_of(n)));
          if (!e) continue;
          ref.execution = &*e;
        }
        if (NodeMatches(stop.get(), ref)) {
          stopped[n] = true;
          continue;
        }
      }
      if (hop == hops) continue;
      auto follow = [&](const std::string& prefix, bool from_artifact) -> absl::Status {
        return db_->ScanProto<v1::Event>(
            edges_, prefix, {}, [&](std::string_view key, v1::Event& event) {
              int64_t other = ReadId8(key.substr(key.size() - 8));
              uint64_t neighbor = pack(from_artifact ? v1::EXECUTION : v1::ARTIFACT, other);
              if (hop_of.try_emplace(neighbor, hop + 1).second) next.push_back(neighbor);
              edges.push_back(std::move(event));
              return true;
            });
      };
      int64_t id = id_of(n);
      if (kind_of(n) == v1::ARTIFACT) {
        if (up) RETURN_IF_ERROR(follow(ArtifactEdgePrefix(id, v1::Event::OUTPUT), true));
        if (down) RETURN_IF_ERROR(follow(ArtifactEdgePrefix(id, v1::Event::INPUT), true));
      } else {
        ASSIGN_OR_RETURN(auto stored,
                         db_->GetProto<internal::ExecutionEvents>(edges_, ExecutionEventsKey(id)));
        if (!stored) continue;
        internal::ExecutionEvents& events = *stored;
        for (v1::Event& event : *events.mutable_events()) {
          if (event.type() == v1::Event::INPUT ? !up : !down) continue;
          uint64_t neighbor = pack(v1::ARTIFACT, event.artifact_id());
          if (hop_of.try_emplace(neighbor, hop + 1).second) next.push_back(neighbor);
          edges.push_back(std::move(event));
        }
      }
    }
    frontier = std::move(next);
  }

  v1::LineageGraph graph;
  graph.set_total_nodes(static_cast<int64_t>(order.size()));
  size_t end = std::min(order.size(), offset + static_cast<size_t>(page_size));
  absl::flat_hash_map<uint64_t, size_t> position;
  for (size_t i = 0; i < order.size(); ++i) position[order[i]] = i;
  for (size_t i = offset; i < end; ++i) {
    uint64_t n = order[i];
    v1::LineageNode* node = graph.add_nodes();
    node->set_hop(hop_of[n]);
    node->set_stopped(stopped.contains(n));
    if (kind_of(n) == v1::ARTIFACT) {
      ASSIGN_OR_RETURN(*node->mutable_artifact(),
                       MustLoad<v1::Artifact>(*db_, nodes_, v1::ARTIFACT, id_of(n)));
    } else {
      ASSIGN_OR_RETURN(*node->mutable_execution(),
                       MustLoad<v1::Execution>(*db_, nodes_, v1::EXECUTION, id_of(n)));
    }
  }
  // Each edge once, on the page of its later endpoint.
  absl::flat_hash_set<std::tuple<int64_t, int64_t, int>> seen_edges;
  for (v1::Event& event : edges) {
    auto a = position.find(pack(v1::ARTIFACT, event.artifact_id()));
    auto e = position.find(pack(v1::EXECUTION, event.execution_id()));
    if (a == position.end() || e == position.end()) continue;
    size_t later = std::max(a->second, e->second);
    if (later < offset || later >= end) continue;
    if (!seen_edges.insert({event.artifact_id(), event.execution_id(), event.type()}).second) {
      continue;
    }
    *graph.add_edges() = std::move(event);
  }
  if (end < order.size()) {
    graph.set_next_page_token(
        EncodePageToken(db_->page_token_key(), {fingerprint, std::to_string(end)}));
  }
  return graph;
}

}  // namespace mlops::metadata
