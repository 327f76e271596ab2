#include <algorithm>
#include <cmath>

#include "services/common/encoding.h"
#include "services/metadata/run_index_internal.h"

namespace mlops::metadata::internal {

void AppendBinaryId(std::string* out, std::string_view hex_id) {
  auto nibble = [](char c) {
    return static_cast<unsigned char>(c <= '9' ? c - '0' : c - 'a' + 10);
  };
  for (size_t i = 0; i + 1 < hex_id.size(); i += 2) {
    out->push_back(static_cast<char>((nibble(hex_id[i]) << 4) | nibble(hex_id[i + 1])));
  }
}

std::string BinaryToHexId(std::string_view binary) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(binary.size() * 2);
  for (char c : binary) {
    unsigned char b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

Field AttributeField(Attribute attribute) {
  Field field;
  field.kind = FieldKind::kAttribute;
  field.attribute = attribute;
  switch (attribute) {
    case Attribute::kStatus:
      field.key = "status";
      break;
    case Attribute::kStartTime:
      field.key = "start_time";
      break;
    case Attribute::kEndTime:
      field.key = "end_time";
      break;
    case Attribute::kName:
      field.key = "name";
      break;
    case Attribute::kRunId:
      field.key = "run_id";
      break;
    case Attribute::kExperimentId:
      field.key = "experiment_id";
      break;
    case Attribute::kLifecycle:
      field.key = "lifecycle";
      break;
    default:  // kNone and the lineage-dialect attributes
      break;
  }
  return field;
}

const std::vector<Field>& AttributeFields() {
  static const std::vector<Field> fields = {
      AttributeField(Attribute::kStatus),   AttributeField(Attribute::kStartTime),
      AttributeField(Attribute::kEndTime),  AttributeField(Attribute::kName),
      AttributeField(Attribute::kRunId),    AttributeField(Attribute::kExperimentId),
      AttributeField(Attribute::kLifecycle)};
  return fields;
}

FieldValue GetFieldValue(const v1::Run& run, const Field& field) {
  FieldValue value;
  value.numeric = field.numeric();
  switch (field.kind) {
    case FieldKind::kMetric:
      for (const auto& metric : run.latest_metrics()) {
        if (metric.key() == field.key) {
          value.present = true;
          value.number = metric.value();
          break;
        }
      }
      return value;
    case FieldKind::kParam: {
      auto it = run.params().find(field.key);
      if (it != run.params().end()) {
        value.present = true;
        value.text = it->second;
      }
      return value;
    }
    case FieldKind::kTag: {
      auto it = run.tags().find(field.key);
      if (it != run.tags().end()) {
        value.present = true;
        value.text = it->second;
      }
      return value;
    }
    case FieldKind::kAttribute:
      break;
    case FieldKind::kProperty:
    case FieldKind::kCustomProperty:
      return value;  // lineage dialect only
  }
  value.present = true;
  switch (field.attribute) {
    case Attribute::kStatus:
      value.text = v1::RunStatus_Name(run.status());
      break;
    case Attribute::kStartTime:
      value.number = static_cast<double>(run.start_time_ms());
      break;
    case Attribute::kEndTime:
      value.number = static_cast<double>(run.end_time_ms());
      break;
    case Attribute::kName:
      value.text = run.name();
      break;
    case Attribute::kRunId:
      value.text = run.id();
      break;
    case Attribute::kExperimentId:
      value.text = run.experiment_id();
      break;
    case Attribute::kLifecycle:
      value.text = v1::LifecycleStage_Name(run.lifecycle_stage());
      break;
    case Attribute::kNone:
    default:  // lineage-dialect attributes: not fields of a run
      value.present = false;
      break;
  }
  return value;
}

std::string IndexPrefix(const Field& field) {
  std::string out;
  switch (field.kind) {
    case FieldKind::kMetric:
      out = "m";
      break;
    case FieldKind::kParam:
      out = "p";
      break;
    case FieldKind::kTag:
      out = "t";
      break;
    case FieldKind::kAttribute:
    case FieldKind::kProperty:  // never indexed for runs
    case FieldKind::kCustomProperty:
      out = "a";
      break;
  }
  AppendOrderedString(&out, field.key);
  return out;
}

bool IsIntegerAttribute(const Field& field) {
  return field.kind == FieldKind::kAttribute &&
         (field.attribute == Attribute::kStartTime || field.attribute == Attribute::kEndTime);
}

void AppendIndexValue(std::string* out, const Field& field, const FieldValue& value) {
  if (IsIntegerAttribute(field)) {
    AppendOrderedInt64(out, static_cast<int64_t>(value.number));
  } else if (field.numeric()) {
    AppendOrderedDouble(out, value.number);
  } else {
    AppendOrderedString(out, value.text);
  }
}

bool DecodeIndexValue(std::string_view encoded, const Field& field, FieldValue* value) {
  value->present = true;
  value->numeric = field.numeric();
  if (IsIntegerAttribute(field)) {
    int64_t number;
    if (!ConsumeOrderedInt64(&encoded, &number)) return false;
    value->number = static_cast<double>(number);
    return encoded.empty();
  }
  if (field.numeric()) return ConsumeOrderedDouble(&encoded, &value->number) && encoded.empty();
  return ConsumeOrderedString(&encoded, &value->text) && encoded.empty();
}

namespace {

void AddKey(std::vector<std::string>* keys, const Field& field, const FieldValue& value,
            const std::string& run_id) {
  std::string key = IndexPrefix(field);
  AppendIndexValue(&key, field, value);
  AppendBinaryId(&key, run_id);
  keys->push_back(std::move(key));
}

}  // namespace

std::vector<std::string> IndexKeys(const v1::Run& run) {
  std::vector<std::string> keys;
  keys.reserve(AttributeFields().size() + run.params_size() + run.tags_size() +
               run.latest_metrics_size());
  for (const Field& field : AttributeFields())
    AddKey(&keys, field, GetFieldValue(run, field), run.id());
  Field field;
  FieldValue value;
  value.present = true;
  field.kind = FieldKind::kParam;
  for (const auto& [key, text] : run.params()) {
    field.key = key;
    value.text = text;
    AddKey(&keys, field, value, run.id());
  }
  field.kind = FieldKind::kTag;
  for (const auto& [key, text] : run.tags()) {
    field.key = key;
    value.text = text;
    AddKey(&keys, field, value, run.id());
  }
  field.kind = FieldKind::kMetric;
  value.numeric = true;
  for (const auto& metric : run.latest_metrics()) {
    field.key = metric.key();
    value.number = metric.value();
    AddKey(&keys, field, value, run.id());
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

bool Matches(const Expr* expr, const v1::Run& run) {
  return metadata::Matches(expr, [&](const Expr& leaf) { return GetFieldValue(run, leaf.field); });
}

}  // namespace mlops::metadata::internal
