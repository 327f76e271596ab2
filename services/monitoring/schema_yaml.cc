#include "services/monitoring/schema_yaml.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <string>

#include "services/common/status.h"
#include "services/common/strings.h"

namespace mlops::monitoring {
namespace {

using v1::FeatureSchema;

constexpr std::pair<FeatureSchema::Type, const char*> kTypes[] = {
    {FeatureSchema::INT, "int"},           {FeatureSchema::FLOAT, "float"},
    {FeatureSchema::STRING, "string"},     {FeatureSchema::BOOL, "bool"},
    {FeatureSchema::CATEGORY, "category"}, {FeatureSchema::TYPE_UNSPECIFIED, "any"},
};

// A plain scalar stays plain only when YAML would read it back as the same string.
std::string Quoted(const std::string& text) {
  YAML::Emitter out;
  out << YAML::DoubleQuoted << text;
  return out.c_str();
}

std::string Scalar(const std::string& text) {
  bool plain =
      !text.empty() && (std::isalnum(static_cast<unsigned char>(text[0])) || text[0] == '_');
  for (char c : text) {
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
                      c == '.' || c == '/');
  }
  // Words YAML reads as something else, and numbers (which a domain may hold as text) are quoted.
  static const char* const kSpecial[] = {"true", "false", "yes", "no", "on", "off", "null", "~"};
  for (const char* word : kSpecial) plain = plain && !EqualsIgnoreCase(text, word);
  return plain ? text : Quoted(text);
}

absl::Status ErrorAt(const YAML::Node& node, std::string_view message) {
  const YAML::Mark mark = node.Mark();
  return absl::InvalidArgumentError(StrCat("line ", std::to_string(mark.line + 1), ", column ",
                                           std::to_string(mark.column + 1), ": ", message));
}

absl::StatusOr<std::string> String(const YAML::Node& node, std::string_view key) {
  if (!node.IsScalar()) return ErrorAt(node, StrCat(key, ": a string"));
  // Escapes ("\uD800", "\0") can make what the text was not.
  const std::string& text = node.Scalar();
  if (!IsUtf8(text) || text.find('\0') != std::string::npos) {
    return ErrorAt(node, StrCat(key, ": not UTF-8 text"));
  }
  return text;
}

absl::StatusOr<double> Number(const YAML::Node& node, std::string_view key) {
  double value;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value) || !std::isfinite(value)) {
    return ErrorAt(node, StrCat(key, ": a finite number"));
  }
  return value;
}

absl::StatusOr<bool> Bool(const YAML::Node& node, std::string_view key) {
  bool value;
  if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) {
    return ErrorAt(node, StrCat(key, ": true or false"));
  }
  return value;
}

absl::StatusOr<uint64_t> Rows(const YAML::Node& node, std::string_view key) {
  uint64_t value;
  if (!node.IsScalar() || node.Scalar().starts_with('-') ||
      !YAML::convert<uint64_t>::decode(node, value)) {
    return ErrorAt(node, StrCat(key, ": a row count (a whole number >= 0)"));
  }
  return value;
}

absl::StatusOr<std::vector<std::string>> Strings(const YAML::Node& node, std::string_view key) {
  if (!node.IsSequence()) return ErrorAt(node, StrCat(key, ": a list"));
  std::vector<std::string> out;
  for (const YAML::Node& item : node) {
    ASSIGN_OR_RETURN(std::string value, String(item, key));
    out.push_back(std::move(value));
  }
  return out;
}

absl::StatusOr<FeatureSchema> Feature(const YAML::Node& node) {
  if (!node.IsMap()) return ErrorAt(node, "a feature is a map (name, type, ...)");
  FeatureSchema f;
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    const YAML::Node& value = entry.second;
    if (key == "name") {
      ASSIGN_OR_RETURN(*f.mutable_name(), String(value, key));
    } else if (key == "type") {
      ASSIGN_OR_RETURN(std::string type, String(value, key));
      bool known = false;
      for (auto [t, name] : kTypes) {
        if (type == name) f.set_type(t), known = true;
      }
      if (!known) {
        return ErrorAt(value, "type: one of int, float, string, bool, category, any; not " + type);
      }
    } else if (key == "required") {
      ASSIGN_OR_RETURN(bool required, Bool(value, key));
      f.set_required(required);
    } else if (key == "min") {
      ASSIGN_OR_RETURN(double min, Number(value, key));
      f.set_min(min);
    } else if (key == "max") {
      ASSIGN_OR_RETURN(double max, Number(value, key));
      f.set_max(max);
    } else if (key == "values") {
      ASSIGN_OR_RETURN(auto values, Strings(value, key));
      for (auto& v : values) f.add_values(std::move(v));
    } else if (key == "max_missing") {
      ASSIGN_OR_RETURN(double max_missing, Number(value, key));
      f.set_max_missing(max_missing);
    } else if (key == "unique") {
      ASSIGN_OR_RETURN(bool unique, Bool(value, key));
      f.set_unique(unique);
    } else {
      return ErrorAt(entry.first, "unknown key " + key +
                                      " (a feature has name, type, required, min, max, values, "
                                      "max_missing, unique)");
    }
  }
  if (f.name().empty()) return ErrorAt(node, "a feature needs a name");
  return f;
}

}  // namespace

std::string SchemaToYaml(const v1::Schema& schema) {
  std::string out;
  std::string about;  // the server's part, never read back
  if (schema.version() > 0) about = "version " + std::to_string(schema.version());
  if (!schema.source().empty()) about += (about.empty() ? "" : ", ") + schema.source();
  if (schema.create_time_ms() > 0) {
    about += (about.empty() ? "" : ", ") + FormatRfc3339(schema.create_time_ms());
  }
  if (!about.empty()) out += "# " + about + "\n";
  if (!schema.name().empty()) out += "name: " + Scalar(schema.name()) + "\n";
  if (schema.has_min_rows()) out += "min_rows: " + std::to_string(schema.min_rows()) + "\n";
  if (schema.has_max_rows()) out += "max_rows: " + std::to_string(schema.max_rows()) + "\n";
  if (schema.absent_size() > 0) {
    out += "absent: [";
    for (int i = 0; i < schema.absent_size(); ++i) {
      out += (i ? ", " : "") + Scalar(schema.absent(i));
    }
    out += "]\n";
  }
  if (schema.allow_extra_columns()) out += "allow_extra_columns: true\n";
  out += schema.features_size() == 0 ? "features: []\n" : "features:\n";
  for (const FeatureSchema& f : schema.features()) {
    const char* type = "any";
    for (auto [t, name] : kTypes) {
      if (t == f.type()) type = name;
    }
    out += "  - {name: " + Scalar(f.name()) + ", type: " + type;
    if (f.has_required() && !f.required()) out += ", required: false";
    if (f.has_min()) out += ", min: " + FormatDouble(f.min());
    if (f.has_max()) out += ", max: " + FormatDouble(f.max());
    if (f.max_missing() > 0) out += ", max_missing: " + FormatDouble(f.max_missing());
    if (f.unique()) out += ", unique: true";
    if (f.values_size() > 0) {
      // On the feature's line when it fits in 100 columns, else on lines of its own.
      size_t length = out.size() - out.rfind('\n') + 12;
      for (const std::string& v : f.values()) length += Scalar(v).size() + 2;
      out += length <= 100 ? ", values: [" : ",\n     values: [";
      size_t line = length <= 100 ? out.size() - out.rfind('\n') - 1 : 14;
      for (int i = 0; i < f.values_size(); ++i) {
        std::string value = Scalar(f.values(i));
        if (i > 0) {
          out += ",";
          if (line + value.size() > 90) {
            out += "\n       ";
            line = 7;
          } else {
            out += " ";
          }
        }
        out += value;
        line += value.size() + 2;
      }
      out += "]";
    }
    out += "}\n";
  }
  return out;
}

absl::StatusOr<v1::Schema> SchemaFromYaml(std::string_view yaml) {
  if (!IsUtf8(yaml)) return absl::InvalidArgumentError("a schema is UTF-8 text");
  for (char c : yaml) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t' && c != '\r') {
      return absl::InvalidArgumentError("a schema is text: no control characters");
    }
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("line ", std::to_string(e.mark.line + 1), ", column ",
                                             std::to_string(e.mark.column + 1),
                                             ": not valid YAML: ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError("a schema is a map (name, features, ...)");
  }
  v1::Schema schema;
  try {
    for (const auto& entry : root) {
      const std::string key = entry.first.Scalar();
      const YAML::Node& value = entry.second;
      if (key == "name") {
        ASSIGN_OR_RETURN(*schema.mutable_name(), String(value, key));
      } else if (key == "min_rows") {
        ASSIGN_OR_RETURN(uint64_t rows, Rows(value, key));
        schema.set_min_rows(rows);
      } else if (key == "max_rows") {
        ASSIGN_OR_RETURN(uint64_t rows, Rows(value, key));
        schema.set_max_rows(rows);
      } else if (key == "absent") {
        ASSIGN_OR_RETURN(auto absent, Strings(value, key));
        for (auto& a : absent) schema.add_absent(std::move(a));
      } else if (key == "allow_extra_columns") {
        ASSIGN_OR_RETURN(bool allow, Bool(value, key));
        schema.set_allow_extra_columns(allow);
      } else if (key == "features") {
        if (value.IsNull()) continue;  // `features:` with nothing after it: none
        if (!value.IsSequence()) return ErrorAt(value, "features: a list");
        for (const YAML::Node& item : value) {
          ASSIGN_OR_RETURN(*schema.add_features(), Feature(item));
        }
      } else {
        return ErrorAt(entry.first, "unknown key " + key +
                                        " (a schema has name, min_rows, max_rows, absent, "
                                        "allow_extra_columns, features)");
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(StrCat("line ", std::to_string(e.mark.line + 1), ", column ",
                                             std::to_string(e.mark.column + 1), ": ", e.msg));
  }
  return schema;
}

}  // namespace mlops::monitoring
