#include "services/scheduler/pipeline_spec.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>

#include "services/common/digest.h"
#include "services/common/names.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "services/scheduler/yaml_tree.h"

namespace mlops::scheduler {
namespace {

constexpr size_t kMaxSteps = 100000;
constexpr size_t kMaxSpecBytes = 32 << 20;
constexpr size_t kMaxParams = 10000;
constexpr size_t kMaxSweepInstances = 1000;

absl::Status ErrorAt(const YamlMark& mark, std::string_view message) {
  return absl::InvalidArgumentError(StrCat("line ", std::to_string(mark.line + 1), ", column ",
                                           std::to_string(mark.column + 1), ": ", message));
}

absl::Status ErrorAt(const YamlNode& node, std::string_view message) {
  return ErrorAt(node.Mark(), message);
}

bool ValidStepName(std::string_view name) {
  return ValidateName(NameKind::kStep, "name", name).ok();
}

bool ValidKey(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> Scalar(const YamlNode& node, std::string_view what) {
  if (!node.IsScalar()) return ErrorAt(node, StrCat(what, ": expected a single value"));
  return node.Scalar();
}

absl::Status ExpectMap(const YamlNode& node, std::string_view what) {
  if (!node.IsMap()) return ErrorAt(node, StrCat(what, ": expected a mapping (key: value)"));
  return absl::OkStatus();
}

// Checks that every key of `node` is one of `allowed`.
absl::Status OnlyKeys(const YamlNode& node, std::string_view what,
                      std::initializer_list<std::string_view> allowed) {
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string& key = node.key(i).Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return ErrorAt(node.key(i),
                     StrCat("unknown key '", key, "' in ", what, " (expected ", list, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> StringMap(const YamlNode& node,
                                                             std::string_view what) {
  RETURN_IF_ERROR(ExpectMap(node, what));
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string& key = node.key(i).Scalar();
    if (!ValidKey(key)) {
      return ErrorAt(node.key(i),
                     StrCat(what, ": key '", key, "' must match [A-Za-z0-9_.-]{1,128}"));
    }
    ASSIGN_OR_RETURN(out[key], Scalar(node.value(i), StrCat(what, ".", key)));
  }
  return out;
}

// A JSON string literal. Written by hand: neither protobuf nor the other dependencies expose a
// JSON string escaper on its own.
void AppendJsonString(std::string_view text, std::string* out) {
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

// A plain YAML scalar that the core schema reads as a number (JSON's syntax: no leading '+', no
// hex, no .inf or .nan, which JSON cannot hold).
bool JsonNumber(const std::string& text) {
  size_t i = text[0] == '-' ? 1 : 0;
  size_t digits = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (digits == 0 || (digits > 1 && text[text[0] == '-' ? 1 : 0] == '0')) return false;
  if (i < text.size() && text[i] == '.') {
    size_t fraction = 0;
    for (++i; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      ++fraction;
    }
    if (fraction == 0) return false;
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    size_t exponent = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i, ++exponent;
    if (exponent == 0) return false;
  }
  return i == text.size();
}

// YAML to JSON as Kubernetes reads its manifests: plain scalars true/false, null/~ and numbers
// are those; everything quoted is a string. Map keys must be scalars.
absl::Status YamlToJson(const YamlNode& node, std::string* out) {
  if (node.IsNull()) {
    out->append("null");
  } else if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    if (node.IsPlainScalar() && (text == "true" || text == "false")) {
      out->append(text);
    } else if (node.IsPlainScalar() && (text == "null" || text == "~")) {
      out->append("null");
    } else if (node.IsPlainScalar() && !text.empty() && JsonNumber(text)) {
      out->append(text);
    } else {
      AppendJsonString(text, out);
    }
  } else if (node.IsSequence()) {
    out->push_back('[');
    for (size_t i = 0; i < node.size(); ++i) {
      if (i > 0) out->push_back(',');
      RETURN_IF_ERROR(YamlToJson(node[i], out));
    }
    out->push_back(']');
  } else {
    out->push_back('{');
    for (size_t i = 0; i < node.size(); ++i) {
      if (!node.key(i).IsScalar()) return ErrorAt(node.key(i), "a key must be a single value");
      if (i > 0) out->push_back(',');
      AppendJsonString(node.key(i).Scalar(), out);
      out->push_back(':');
      RETURN_IF_ERROR(YamlToJson(node.value(i), out));
    }
    out->push_back('}');
  }
  return absl::OkStatus();
}

// A step's `kubernetes:` settings as the JSON of a PodTemplateSpec: `pod` is one, written as
// YAML; service_account, node_selector and tolerations are short for its spec's
// serviceAccountName, nodeSelector and tolerations (naming both is an error).
absl::StatusOr<std::string> ParseKubernetes(const YamlNode& node, const std::string& where) {
  RETURN_IF_ERROR(ExpectMap(node, where + ": kubernetes"));
  RETURN_IF_ERROR(OnlyKeys(node, where + ": kubernetes",
                           {"pod", "service_account", "node_selector", "tolerations"}));
  const YamlNode pod = node["pod"];
  if (pod) {
    RETURN_IF_ERROR(ExpectMap(pod, where + ": kubernetes.pod (a PodTemplateSpec)"));
    RETURN_IF_ERROR(OnlyKeys(pod, where + ": kubernetes.pod", {"metadata", "spec"}));
    if (pod["spec"]) RETURN_IF_ERROR(ExpectMap(pod["spec"], where + ": kubernetes.pod.spec"));
  }
  // The shorthands, as spec fields.
  std::vector<std::pair<std::string, std::string>> extra;
  struct Shorthand {
    const char* key;
    const char* field;
  };
  for (const Shorthand& shorthand :
       {Shorthand{"service_account", "serviceAccountName"},
        Shorthand{"node_selector", "nodeSelector"}, Shorthand{"tolerations", "tolerations"}}) {
    const YamlNode value = node[shorthand.key];
    if (!value) continue;
    if (pod && pod["spec"] && pod["spec"][shorthand.field]) {
      return ErrorAt(value,
                     StrCat(where, ": kubernetes.", shorthand.key, " and kubernetes.pod.spec.",
                            shorthand.field, " both given: keep one"));
    }
    std::string json;
    if (std::string_view(shorthand.key) == "service_account") {
      ASSIGN_OR_RETURN(std::string name, Scalar(value, where + ": kubernetes.service_account"));
      AppendJsonString(name, &json);
    } else if (std::string_view(shorthand.key) == "node_selector") {
      ASSIGN_OR_RETURN(auto labels, StringMap(value, where + ": kubernetes.node_selector"));
      json = "{";
      for (const auto& [k, v] : labels) {
        if (json.size() > 1) json.push_back(',');
        AppendJsonString(k, &json);
        json.push_back(':');
        AppendJsonString(v, &json);
      }
      json.push_back('}');
    } else {
      if (!value.IsSequence()) {
        return ErrorAt(value, where + ": kubernetes.tolerations: expected a list");
      }
      RETURN_IF_ERROR(YamlToJson(value, &json));
    }
    extra.emplace_back(shorthand.field, std::move(json));
  }
  std::string out = "{";
  auto write_spec = [&](const YamlNode& spec) -> absl::Status {
    out.append("\"spec\":{");
    size_t written = 0;
    if (spec) {
      for (size_t i = 0; i < spec.size(); ++i) {
        if (!spec.key(i).IsScalar()) return ErrorAt(spec.key(i), "a key must be a single value");
        if (written++ > 0) out.push_back(',');
        AppendJsonString(spec.key(i).Scalar(), &out);
        out.push_back(':');
        RETURN_IF_ERROR(YamlToJson(spec.value(i), &out));
      }
    }
    for (const auto& [field, json] : extra) {
      if (written++ > 0) out.push_back(',');
      AppendJsonString(field, &out);
      out.push_back(':');
      out.append(json);
    }
    out.push_back('}');
    return absl::OkStatus();
  };
  if (pod && pod["metadata"]) {
    out.append("\"metadata\":");
    RETURN_IF_ERROR(YamlToJson(pod["metadata"], &out));
    out.push_back(',');
  }
  RETURN_IF_ERROR(write_spec(pod ? pod["spec"] : YamlNode()));
  out.push_back('}');
  return out;
}

absl::StatusOr<InputRef> ParseInputRef(const YamlNode& node, std::string_view what) {
  ASSIGN_OR_RETURN(std::string text, Scalar(node, what));
  InputRef ref;
  if (text.rfind("dataset:", 0) == 0) {
    ref.kind = InputRef::Kind::kDataset;
    std::string rest = text.substr(8);
    size_t at = rest.find('@');
    ref.dataset = rest.substr(0, at);
    ref.ref = at == std::string::npos ? "" : rest.substr(at + 1);
    if (ref.dataset.empty()) return ErrorAt(node, StrCat(what, ": dataset:NAME[@VERSION|TAG]"));
    return ref;
  }
  // step.outputs.name
  size_t first = text.find(".outputs.");
  if (first == std::string::npos || first == 0 || first + 9 >= text.size()) {
    return ErrorAt(
        node, StrCat(what, " '", text, "': expected STEP.outputs.NAME or dataset:NAME[@VERSION]"));
  }
  ref.step = text.substr(0, first);
  ref.output = text.substr(first + 9);
  return ref;
}

// An environment variable's name as a shell would take it.
bool ValidEnvName(std::string_view name) {
  if (name.empty() || name.size() > 128 || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

// secretEnv: {NAME: {secret: S, key: K}}.
absl::StatusOr<std::map<std::string, SecretRef>> ParseSecretEnv(
    const YamlNode& node, const std::string& what, const std::map<std::string, std::string>& env) {
  RETURN_IF_ERROR(ExpectMap(node, what));
  std::map<std::string, SecretRef> out;
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string& name = node.key(i).Scalar();
    if (!ValidEnvName(name)) {
      return ErrorAt(node.key(i), StrCat(what, ": variable '", name,
                                         "' must match [A-Za-z_][A-Za-z0-9_]{0,127}"));
    }
    if (env.count(name) > 0) {
      return ErrorAt(node.key(i), StrCat(what, ": variable '", name, "' is in env too"));
    }
    if (name.starts_with("MLOPS_")) {
      return ErrorAt(node.key(i),
                     StrCat(what, ": variable '", name, "': MLOPS_ variables are the scheduler's"));
    }
    const YamlNode ref = node.value(i);
    const std::string at = StrCat(what, ".", name);
    RETURN_IF_ERROR(ExpectMap(ref, at));
    RETURN_IF_ERROR(OnlyKeys(ref, at, {"secret", "key"}));
    if (!ref["secret"] || !ref["key"]) {
      return ErrorAt(ref, StrCat(at, ": expected {secret: NAME, key: KEY}"));
    }
    SecretRef& out_ref = out[name];
    ASSIGN_OR_RETURN(out_ref.secret, Scalar(ref["secret"], StrCat(at, ".secret")));
    ASSIGN_OR_RETURN(out_ref.key, Scalar(ref["key"], StrCat(at, ".key")));
    if (!ValidSecretName(out_ref.secret)) {
      return ErrorAt(ref["secret"], StrCat(at, ".secret '", out_ref.secret,
                                           "' must be a Secret's name: lower-case letters, digits, "
                                           "'-' and '.', at most 253, starting and ending with a "
                                           "letter or digit"));
    }
    if (!ValidSecretKey(out_ref.key)) {
      return ErrorAt(ref["key"],
                     StrCat(at, ".key '", out_ref.key, "' must match [A-Za-z0-9_.-]{1,253}"));
    }
  }
  return out;
}

// `validate: {dataset: REF, schema: NAME[@VERSION]}`: a built-in step. It takes nothing a process
// would (command, image, inputs, outputs, env, resources, sweeps, ...).
absl::Status ParseValidate(const YamlNode& node, const YamlNode& validate, const std::string& where,
                           StepSpec* step) {
  for (const char* key :
       {"command", "image", "inputs", "outputs", "env", "secretEnv", "resources", "replicas",
        "sweep", "objective", "params", "kubernetes", "checkpoint", "cache"}) {
    if (node[key]) {
      return ErrorAt(node[key],
                     StrCat(where, ": a validate step runs no process: it takes no '", key, "'"));
    }
  }
  RETURN_IF_ERROR(ExpectMap(validate, where + ": validate"));
  RETURN_IF_ERROR(OnlyKeys(validate, where + ": validate", {"dataset", "schema"}));
  if (!validate["dataset"]) {
    return ErrorAt(validate, where + ": validate: 'dataset' is required (dataset:NAME[@REF] or " +
                                 "STEP.outputs.NAME)");
  }
  ASSIGN_OR_RETURN(InputRef ref, ParseInputRef(validate["dataset"], where + ": validate.dataset"));
  if (const YamlNode schema = validate["schema"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(schema, where + ": validate.schema"));
    size_t at = text.find('@');
    step->validate_schema = text.substr(0, at);
    if (at != std::string::npos) {
      char* end = nullptr;
      long long version = std::strtoll(text.c_str() + at + 1, &end, 10);
      if (at + 1 == text.size() || *end != '\0' || version < 1) {
        return ErrorAt(schema, where + ": validate.schema '" + text +
                                   "': expected NAME or NAME@VERSION (a version number)");
      }
      step->validate_schema_version = version;
    }
    if (!ValidateName(NameKind::kIdentifier, "schema", step->validate_schema).ok()) {
      return ErrorAt(schema, where + ": validate.schema '" + text + "': a dataset's name");
    }
  } else if (ref.kind != InputRef::Kind::kDataset) {
    return ErrorAt(validate, where + ": validate: a step's output is checked against a named " +
                                 "schema: add schema: NAME");
  }
  step->validate = true;
  step->cache = false;
  step->inputs["data"] = std::move(ref);
  // An attempt the scheduler's restart or an unreachable monitoring service interrupted is lost,
  // not failed, and tried again after this (anomalies fail it: `retries` as for any step).
  step->retries.backoff_ms = 2000;
  return absl::OkStatus();
}

absl::StatusOr<StepSpec> ParseStep(const YamlNode& node,
                                   const std::map<std::string, std::string>& params) {
  RETURN_IF_ERROR(ExpectMap(node, "step"));
  RETURN_IF_ERROR(
      OnlyKeys(node, "step",
               {"name", "needs", "image", "command", "inputs", "outputs", "env", "secretEnv",
                "resources", "replicas", "retries", "timeout", "cache", "sweep", "objective",
                "params", "kubernetes", "checkpoint", "validate"}));
  StepSpec step;
  step.line = node.Mark().line + 1;
  if (!node["name"]) return ErrorAt(node, "step: 'name' is required");
  ASSIGN_OR_RETURN(step.name, Scalar(node["name"], "name"));
  if (!ValidStepName(step.name)) {
    return ErrorAt(node["name"],
                   StrCat("step name '", step.name, "' must match [A-Za-z][A-Za-z0-9_-]{0,62}"));
  }
  std::string where = "step " + step.name;
  if (const YamlNode needs = node["needs"]) {
    if (!needs.IsSequence()) return ErrorAt(needs, where + ": needs: expected a list of steps");
    for (size_t i = 0; i < needs.size(); ++i) {
      ASSIGN_OR_RETURN(std::string need, Scalar(needs[i], where + ": needs"));
      step.needs.push_back(need);
    }
  }
  if (const YamlNode image = node["image"]) {
    ASSIGN_OR_RETURN(step.image, Scalar(image, where + ": image"));
  }
  const YamlNode command = node["command"];
  if (const YamlNode validate = node["validate"]) {
    RETURN_IF_ERROR(ParseValidate(node, validate, where, &step));
  } else if (!command) {
    return ErrorAt(node, where + ": 'command' is required (or 'validate', a built-in step)");
  }
  for (size_t i = 0; command && i < command.size(); ++i) {
    if (!command.IsSequence() || command.size() == 0) {
      return ErrorAt(command, where + ": command: expected a non-empty list of arguments");
    }
    ASSIGN_OR_RETURN(std::string value, Scalar(command[i], where + ": command"));
    step.command.push_back(value);
  }
  if (const YamlNode inputs = node["inputs"]) {
    RETURN_IF_ERROR(ExpectMap(inputs, where + ": inputs"));
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::string& key = inputs.key(i).Scalar();
      if (!ValidKey(key)) return ErrorAt(inputs.key(i), where + ": input name '" + key + "'");
      ASSIGN_OR_RETURN(step.inputs[key], ParseInputRef(inputs.value(i), where + ": inputs." + key));
    }
  }
  if (const YamlNode outputs = node["outputs"]) {
    ASSIGN_OR_RETURN(step.outputs, StringMap(outputs, where + ": outputs"));
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string& path = step.outputs[outputs.key(i).Scalar()];
      if (path.empty() || path[0] == '/' || path.find("..") != std::string::npos) {
        return ErrorAt(outputs.value(i),
                       where + ": output path '" + path +
                           "' must be relative to the step's work dir, without '..'");
      }
    }
  }
  if (const YamlNode env = node["env"]) {
    ASSIGN_OR_RETURN(step.env, StringMap(env, where + ": env"));
  }
  if (const YamlNode secret_env = node["secretEnv"]) {
    ASSIGN_OR_RETURN(step.secret_env, ParseSecretEnv(secret_env, where + ": secretEnv", step.env));
  }
  if (const YamlNode resources = node["resources"]) {
    RETURN_IF_ERROR(ExpectMap(resources, where + ": resources"));
    RETURN_IF_ERROR(OnlyKeys(resources, where + ": resources", {"cpu", "memory", "gpu"}));
    if (const YamlNode cpu = resources["cpu"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(cpu, "cpu"));
      if (!ParseCpu(text, &step.resources.cpu_millis)) {
        return ErrorAt(cpu, where + ": cpu '" + text +
                                "': expected cores (1, 0.5) or 500m, at most 1024 cores");
      }
    }
    if (const YamlNode memory = resources["memory"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(memory, "memory"));
      if (!ParseMemory(text, &step.resources.memory_bytes)) {
        return ErrorAt(memory, where + ": memory '" + text +
                                   "': expected bytes, 512Mi, 2Gi, 1G (decimal, at most 1Pi)");
      }
    }
    if (const YamlNode gpu = resources["gpu"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(gpu, "gpu"));
      char* end = nullptr;
      long long n = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || n < 0 || n > 64) {
        return ErrorAt(gpu, where + ": gpu '" + text + "': expected 0 to 64");
      }
      step.resources.gpus = n;
    }
  }
  if (const YamlNode replicas = node["replicas"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(replicas, "replicas"));
    char* end = nullptr;
    long n = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || n < 1 || n > 1024) {
      return ErrorAt(replicas, where + ": replicas '" + text + "': expected 1 to 1024");
    }
    step.replicas = static_cast<int>(n);
  }
  if (const YamlNode kubernetes = node["kubernetes"]) {
    ASSIGN_OR_RETURN(step.pod_template_json, ParseKubernetes(kubernetes, where));
  }
  if (const YamlNode retries = node["retries"]) {
    RETURN_IF_ERROR(ExpectMap(retries, where + ": retries"));
    RETURN_IF_ERROR(OnlyKeys(retries, where + ": retries", {"limit", "backoff", "factor"}));
    if (const YamlNode limit = retries["limit"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(limit, "limit"));
      char* end = nullptr;
      long n = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || n < 0 || n > 100) {
        return ErrorAt(limit, where + ": retries.limit '" + text + "': expected 0 to 100");
      }
      step.retries.limit = static_cast<int>(n);
    }
    if (const YamlNode backoff = retries["backoff"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(backoff, "backoff"));
      if (!ParseDuration(text, &step.retries.backoff_ms)) {
        return ErrorAt(backoff, where + ": retries.backoff '" + text +
                                    "': expected a duration such as 5s, 1m30s, 250ms");
      }
    }
    if (const YamlNode factor = retries["factor"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(factor, "factor"));
      char* end = nullptr;
      double f = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(f >= 1) || f > 10) {
        return ErrorAt(factor, where + ": retries.factor '" + text + "': expected 1 to 10");
      }
      step.retries.factor = f;
    }
  }
  if (const YamlNode timeout = node["timeout"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(timeout, "timeout"));
    if (!ParseDuration(text, &step.timeout_ms) || step.timeout_ms <= 0) {
      return ErrorAt(timeout, where + ": timeout '" + text +
                                  "': expected a positive duration such as 30m, 2h, 90s");
    }
  }
  if (const YamlNode checkpoint = node["checkpoint"]) {
    ASSIGN_OR_RETURN(step.checkpoint, Scalar(checkpoint, where + ": checkpoint"));
    if (step.checkpoint.empty() || step.checkpoint[0] == '/' ||
        step.checkpoint.find("..") != std::string::npos) {
      return ErrorAt(checkpoint, where + ": checkpoint path '" + step.checkpoint +
                                     "' must be relative to the step's work dir, without '..'");
    }
  }
  if (const YamlNode cache = node["cache"]) {
    ASSIGN_OR_RETURN(std::string text, Scalar(cache, "cache"));
    if (text == "true") {
      step.cache = true;
    } else if (text == "false") {
      step.cache = false;
    } else {
      return ErrorAt(cache, where + ": cache '" + text + "': expected true or false");
    }
  }
  if (const YamlNode sweep = node["sweep"]) {
    RETURN_IF_ERROR(ExpectMap(sweep, where + ": sweep"));
    for (size_t i = 0; i < sweep.size(); ++i) {
      const std::string& key = sweep.key(i).Scalar();
      if (!params.contains(key)) {
        return ErrorAt(sweep.key(i), where + ": sweep over '" + key +
                                         "', which is not a pipeline param (declare it in params)");
      }
      const YamlNode values = sweep.value(i);
      if (!values.IsSequence() || values.size() == 0) {
        return ErrorAt(values, where + ": sweep." + key + ": expected a non-empty list");
      }
      for (size_t v = 0; v < values.size(); ++v) {
        ASSIGN_OR_RETURN(std::string value, Scalar(values[v], "sweep value"));
        std::vector<std::string>& list = step.sweep[key];
        if (std::find(list.begin(), list.end(), value) != list.end()) {
          return ErrorAt(values[v], where + ": sweep." + key + ": the value '" + value +
                                        "' is listed twice (each value makes one step)");
        }
        list.push_back(value);
      }
    }
    size_t combinations = 1;
    for (const auto& [key, values] : step.sweep) {
      combinations *= values.size();
      if (combinations > kMaxSweepInstances) {
        return ErrorAt(sweep, where + ": the sweep makes more than 1000 steps");
      }
    }
  }
  if (const YamlNode objective = node["objective"]) {
    RETURN_IF_ERROR(ExpectMap(objective, where + ": objective"));
    RETURN_IF_ERROR(OnlyKeys(objective, where + ": objective", {"metric", "goal"}));
    if (step.sweep.empty()) {
      return ErrorAt(objective, where + ": objective: only a step with a sweep has one");
    }
    if (!objective["metric"])
      return ErrorAt(objective, where + ": objective: 'metric' is required");
    ASSIGN_OR_RETURN(step.objective_metric,
                     Scalar(objective["metric"], where + ": objective.metric"));
    if (!ValidKey(step.objective_metric)) {
      return ErrorAt(objective["metric"], where + ": objective.metric: a metrics.json key");
    }
    if (const YamlNode goal = objective["goal"]) {
      ASSIGN_OR_RETURN(std::string text, Scalar(goal, where + ": objective.goal"));
      if (text == "maximize" || text == "max") {
        step.maximize = true;
      } else if (text == "minimize" || text == "min") {
        step.maximize = false;
      } else {
        return ErrorAt(goal, where + ": objective.goal: maximize or minimize, not '" + text + "'");
      }
    }
  }
  // Every placeholder is checked now, at submission, and the step keeps only the params it uses:
  // those its command names, those it declares (`params: [seed]`, read from MLOPS_PARAM_SEED) and
  // those it sweeps. Its environment and its fingerprint hold exactly these.
  std::set<std::string> used;
  for (size_t i = 0; i < step.command.size(); ++i) {
    const std::string& arg = step.command[i];
    for (size_t pos = arg.find("{{"); pos != std::string::npos; pos = arg.find("{{", pos)) {
      size_t close = arg.find("}}", pos + 2);
      if (close == std::string::npos) {
        return ErrorAt(command[i], where + ": unclosed '{{' in '" + arg + "'");
      }
      std::string name = arg.substr(pos + 2, close - pos - 2);
      name.erase(0, name.find_first_not_of(' '));
      name.erase(name.find_last_not_of(' ') + 1);
      pos = close + 2;
      if (name.rfind("params.", 0) == 0) {
        std::string key = name.substr(7);
        if (!params.contains(key)) {
          return ErrorAt(command[i], where + ": {{" + name + "}}: '" + key +
                                         "' is not a pipeline param (declare it in params)");
        }
        used.insert(key);
      } else if (name.rfind("inputs.", 0) == 0) {
        if (!step.inputs.contains(name.substr(7))) {
          return ErrorAt(command[i], where + ": {{" + name + "}}: the step has no input '" +
                                         name.substr(7) + "'");
        }
      } else if (name.rfind("outputs.", 0) == 0) {
        if (!step.outputs.contains(name.substr(8))) {
          return ErrorAt(command[i], where + ": {{" + name + "}}: the step has no output '" +
                                         name.substr(8) + "'");
        }
      } else if (name != "step.name") {
        return ErrorAt(command[i], where + ": unknown placeholder {{" + name +
                                       "}} (params.K, inputs.K, outputs.K, step.name)");
      }
    }
  }
  if (const YamlNode declared = node["params"]) {
    if (!declared.IsSequence()) {
      return ErrorAt(declared, where + ": params: expected a list of pipeline param names");
    }
    for (size_t i = 0; i < declared.size(); ++i) {
      ASSIGN_OR_RETURN(std::string key, Scalar(declared[i], where + ": params"));
      if (!params.contains(key)) {
        return ErrorAt(declared[i], where + ": params: '" + key +
                                        "' is not a pipeline param (declare it in params)");
      }
      used.insert(key);
    }
  }
  for (const auto& [key, values] : step.sweep) used.insert(key);
  std::map<std::string, std::string> visible;
  for (const std::string& key : used) visible[key] = params.at(key);
  step.params = std::move(visible);
  return step;
}

}  // namespace

int64_t RetryPolicy::DelayBeforeAttempt(int attempt) const {
  if (attempt <= 1) return 0;
  double delay = static_cast<double>(backoff_ms) * std::pow(factor, attempt - 2);
  return static_cast<int64_t>(std::min(delay, 24.0 * 3600 * 1000));
}

absl::StatusOr<PipelineSpec> ParsePipelineSpec(std::string_view yaml) {
  // Bounded before any parsing: the work of a parse grows with the text.
  if (yaml.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError("spec: " + std::to_string(yaml.size()) +
                                      " bytes, at most 33554432 (32 MiB)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<YamlDocument> document, YamlDocument::Parse(yaml));
  const YamlNode root = document->root();
  if (!root.IsMap()) return ErrorAt(root, "a pipeline is a mapping with name, params and steps");
  RETURN_IF_ERROR(OnlyKeys(root, "pipeline", {"name", "params", "steps", "description"}));
  PipelineSpec spec;
  if (!root["name"]) return ErrorAt(root, "pipeline: 'name' is required");
  ASSIGN_OR_RETURN(spec.name, Scalar(root["name"], "name"));
  if (!ValidStepName(spec.name)) {
    return ErrorAt(root["name"],
                   "pipeline name '" + spec.name + "' must match [A-Za-z][A-Za-z0-9_-]{0,62}");
  }
  if (const YamlNode params = root["params"]) {
    if (params.size() > kMaxParams) {
      return ErrorAt(params, "params: " + std::to_string(params.size()) +
                                 " given, at most 10000 per pipeline");
    }
    ASSIGN_OR_RETURN(spec.params, StringMap(params, "params"));
  }
  const YamlNode steps = root["steps"];
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    return ErrorAt(steps ? steps : root, "pipeline: 'steps' must be a non-empty list");
  }
  if (steps.size() > kMaxSteps) return ErrorAt(steps, "pipeline: more than 100000 steps");
  std::map<std::string, size_t> index;
  std::vector<YamlNode> step_nodes;
  spec.steps.reserve(steps.size());
  step_nodes.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const YamlNode node = steps[i];
    ASSIGN_OR_RETURN(StepSpec step, ParseStep(node, spec.params));
    if (index.contains(step.name)) {
      return ErrorAt(node["name"], "step '" + step.name + "' is defined twice");
    }
    index[step.name] = spec.steps.size();
    spec.steps.push_back(std::move(step));
    step_nodes.push_back(node);
  }
  // References: needs and step inputs must name existing steps and declared outputs.
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    StepSpec& step = spec.steps[i];
    const YamlNode& node = step_nodes[i];
    std::set<std::string> needs(step.needs.begin(), step.needs.end());
    for (size_t n = 0; n < step.needs.size(); ++n) {
      if (!index.contains(step.needs[n])) {
        return ErrorAt(node["needs"][n], "step " + step.name + " needs '" + step.needs[n] +
                                             "', which is not a step of this pipeline");
      }
      if (step.needs[n] == step.name) {
        return ErrorAt(node["needs"][n], "step " + step.name + " needs itself");
      }
    }
    for (const auto& [name, ref] : step.inputs) {
      if (ref.kind != InputRef::Kind::kStepOutput) continue;
      auto it = index.find(ref.step);
      if (it == index.end()) {
        return ErrorAt(node["inputs"][name], "step " + step.name + ": input " + name +
                                                 " comes from '" + ref.step +
                                                 "', which is not a step of this pipeline");
      }
      if (!spec.steps[it->second].outputs.contains(ref.output)) {
        return ErrorAt(node["inputs"][name], "step " + step.name + ": input " + name + ": step " +
                                                 ref.step + " declares no output '" + ref.output +
                                                 "'");
      }
      needs.insert(ref.step);
    }
    step.needs.assign(needs.begin(), needs.end());
  }
  // Topological order (Kahn, ties by file position); a leftover means a cycle: name it.
  std::vector<int> pending(spec.steps.size());
  std::vector<std::vector<size_t>> dependents(spec.steps.size());
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    pending[i] = static_cast<int>(spec.steps[i].needs.size());
    for (const auto& need : spec.steps[i].needs) dependents[index[need]].push_back(i);
  }
  std::set<size_t> ready;
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    if (pending[i] == 0) ready.insert(i);
  }
  std::vector<size_t> order;
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t d : dependents[i]) {
      if (--pending[d] == 0) ready.insert(d);
    }
  }
  if (order.size() != spec.steps.size()) {
    // Walk needs from a step still pending until a step repeats: that loop is the cycle.
    size_t start = 0;
    while (pending[start] == 0) ++start;
    std::vector<size_t> path;
    std::map<size_t, size_t> seen;
    size_t at = start;
    while (!seen.contains(at)) {
      seen[at] = path.size();
      path.push_back(at);
      for (const auto& need : spec.steps[at].needs) {
        if (pending[index[need]] > 0) {
          at = index[need];
          break;
        }
      }
    }
    // Named in full when short; a long cycle is named by its first steps and its length, so that
    // the message stays small (it travels in gRPC metadata).
    constexpr size_t kNamed = 10;
    size_t length = path.size() - seen[at];
    std::string cycle;
    for (size_t k = seen[at]; k < path.size() && k - seen[at] < kNamed; ++k) {
      cycle += spec.steps[path[k]].name + " -> ";
    }
    cycle +=
        length > kNamed ? "... (" + std::to_string(length) + " steps in all)" : spec.steps[at].name;
    return ErrorAt(step_nodes[at], "the steps form a cycle: " + cycle + " (each needs the next)");
  }
  std::vector<StepSpec> sorted;
  for (size_t i : order) sorted.push_back(std::move(spec.steps[i]));
  spec.steps = std::move(sorted);
  return spec;
}

absl::Status ApplyParams(PipelineSpec* spec, const std::map<std::string, std::string>& params) {
  for (const auto& [key, value] : params) {
    if (!spec->params.contains(key)) {
      return absl::InvalidArgumentError("param '" + key + "' is not declared by pipeline " +
                                        spec->name);
    }
    spec->params[key] = value;
  }
  // Per step, only the few params it uses are looked up: linear in the steps, not steps x params.
  for (StepSpec& step : spec->steps) {
    for (auto& [key, value] : step.params) {
      auto given = params.find(key);
      if (given != params.end()) value = given->second;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PipelineSpec> ExpandSweeps(PipelineSpec spec) {
  PipelineSpec out;
  out.name = spec.name;
  out.params = spec.params;
  out.steps.reserve(spec.steps.size());
  std::map<std::string, std::vector<std::string>> instances;  // swept step -> instance names
  std::set<std::string> with_objective;                       // swept steps that pick a best
  for (StepSpec& step : spec.steps) {
    for (auto& [name, ref] : step.inputs) {
      if (ref.kind != InputRef::Kind::kStepOutput || !instances.contains(ref.step)) continue;
      if (!with_objective.contains(ref.step)) {
        return absl::InvalidArgumentError(
            "line " + std::to_string(step.line) + ": step " + step.name + " takes input " + name +
            " from " + ref.step +
            ", which is swept without an objective: give it one to take its best instance's "
            "output, or list it in needs");
      }
      ref.best_of = true;
    }
    std::vector<std::string> needs;
    for (const auto& need : step.needs) {
      auto it = instances.find(need);
      if (it == instances.end()) {
        needs.push_back(need);
      } else {
        needs.insert(needs.end(), it->second.begin(), it->second.end());
      }
    }
    std::sort(needs.begin(), needs.end());
    step.needs = std::move(needs);
    if (step.sweep.empty()) {
      out.steps.push_back(std::move(step));
      continue;
    }
    const StepSpec& base = step;
    if (!step.objective_metric.empty()) with_objective.insert(step.name);
    size_t combinations = 1;
    for (const auto& [key, values] : step.sweep) {
      combinations *= values.size();
      if (combinations > kMaxSweepInstances) {
        return absl::InvalidArgumentError("line " + std::to_string(step.line) + ": step " +
                                          step.name + ": the sweep makes more than 1000 steps");
      }
    }
    std::vector<size_t> digit(step.sweep.size(), 0);
    for (size_t n = 0; n < combinations; ++n) {
      StepSpec instance = base;
      instance.sweep.clear();
      instance.sweep_of = step.name;
      std::string label;
      size_t k = 0;
      for (const auto& [key, values] : step.sweep) {
        instance.params[key] = values[digit[k]];
        label += (label.empty() ? "" : ",") + key + "=" + values[digit[k]];
        ++k;
      }
      instance.name = step.name + "[" + label + "]";
      instances[step.name].push_back(instance.name);
      out.steps.push_back(std::move(instance));
      for (size_t d = digit.size(); d-- > 0;) {  // next combination, last key fastest
        auto it = std::next(step.sweep.begin(), static_cast<long>(d));
        if (++digit[d] < it->second.size()) break;
        digit[d] = 0;
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> RenderCommand(
    const StepSpec& step, const std::map<std::string, std::string>& input_paths,
    const std::map<std::string, std::string>& output_paths) {
  std::vector<std::string> out;
  for (const std::string& arg : step.command) {
    std::string rendered;
    size_t pos = 0;
    while (true) {
      size_t open = arg.find("{{", pos);
      if (open == std::string::npos) {
        rendered.append(arg, pos, std::string::npos);
        break;
      }
      size_t close = arg.find("}}", open + 2);
      if (close == std::string::npos) {
        return absl::InvalidArgumentError("step " + step.name + ": unclosed '{{' in '" + arg + "'");
      }
      rendered.append(arg, pos, open - pos);
      std::string name = arg.substr(open + 2, close - open - 2);
      name.erase(0, name.find_first_not_of(' '));
      name.erase(name.find_last_not_of(' ') + 1);
      const std::map<std::string, std::string>* source = nullptr;
      std::string key;
      if (name.rfind("params.", 0) == 0) {
        source = &step.params;
        key = name.substr(7);
      } else if (name.rfind("inputs.", 0) == 0) {
        source = &input_paths;
        key = name.substr(7);
      } else if (name.rfind("outputs.", 0) == 0) {
        source = &output_paths;
        key = name.substr(8);
      } else if (name == "step.name") {
        rendered += step.name;
        pos = close + 2;
        continue;
      }
      if (source == nullptr || !source->contains(key)) {
        return absl::InvalidArgumentError("step " + step.name + ": unknown placeholder {{" + name +
                                          "}} (params.K, inputs.K, outputs.K, step.name)");
      }
      rendered += source->at(key);
      pos = close + 2;
    }
    out.push_back(std::move(rendered));
  }
  return out;
}

namespace {

// `arg` with {{params.K}} and {{step.name}} replaced by their values; {{inputs.K}} and
// {{outputs.K}} kept (normalised) for what they stand for.
std::string CanonicalArgument(const StepSpec& step, const std::string& arg) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = arg.find("{{", pos);
    size_t close = open == std::string::npos ? open : arg.find("}}", open + 2);
    if (close == std::string::npos) {
      out.append(arg, pos, std::string::npos);
      return out;
    }
    out.append(arg, pos, open - pos);
    std::string name = arg.substr(open + 2, close - open - 2);
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    auto param =
        name.rfind("params.", 0) == 0 ? step.params.find(name.substr(7)) : step.params.end();
    if (param != step.params.end()) {
      out += param->second;
    } else if (name == "step.name") {
      out += step.name;
    } else {
      out += "{{" + name + "}}";
    }
    pos = close + 2;
  }
}

}  // namespace

bool ValidSecretName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
  }
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  return alnum(name.front()) && alnum(name.back());
}

bool ValidSecretKey(std::string_view key) {
  if (key.empty() || key.size() > 253) return false;
  return ValidKey(key.substr(0, 128)) && (key.size() <= 128 || ValidKey(key.substr(128)));
}

std::string StepFingerprint(const StepSpec& step,
                            const std::map<std::string, std::string>& input_digests,
                            std::string_view executor_settings,
                            const std::map<std::string, std::string>& secret_versions) {
  Sha256 hash;
  auto put = [&](std::string_view field) {
    std::string length = std::to_string(field.size()) + ":";
    hash.Update(length);
    hash.Update(field);
  };
  auto put_map = [&](std::string_view label, const std::map<std::string, std::string>& map) {
    put(label);
    put(std::to_string(map.size()));
    for (const auto& [k, v] : map) {
      put(k);
      put(v);
    }
  };
  // v2: the command as rendered (params and the step name substituted; input and output
  // placeholders stay, as their paths differ per attempt while their digests and names are below),
  // and only the params the step uses.
  put("mlops-step-v2");
  put("command");
  put(std::to_string(step.command.size()));
  for (const auto& arg : step.command) put(CanonicalArgument(step, arg));
  put("image");
  put(step.image);
  put_map("env", step.env);
  put_map("params", step.params);
  put_map("outputs", step.outputs);
  put("replicas");
  put(std::to_string(step.replicas));
  put_map("inputs", input_digests);
  // Only when set, so that the keys of steps cached before these existed stay valid.
  if (step.validate) {
    put("validate");
    put(step.validate_schema);
    put(std::to_string(step.validate_schema_version));
  }
  if (!step.secret_env.empty()) {
    // The references and the version of each value, never the value.
    put("secretEnv");
    put(std::to_string(step.secret_env.size()));
    for (const auto& [name, ref] : step.secret_env) {
      put(name);
      put(ref.secret);
      put(ref.key);
      auto version = secret_versions.find(name);
      put(version == secret_versions.end() ? "" : version->second);
    }
  }
  if (!step.pod_template_json.empty()) {
    put("pod");
    put(step.pod_template_json);
  }
  if (!executor_settings.empty()) {
    put("executor");
    put(executor_settings);
  }
  return DigestHex(hash.Final());
}

}  // namespace mlops::scheduler
