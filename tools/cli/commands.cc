#include "tools/cli/commands.h"

#include <algorithm>

#include "tools/cli/cli_util.h"

namespace mlops::cli {

const std::vector<CommandGroup>& CommandGroups() {
  static const std::vector<CommandGroup> groups = {
      {"run", {}, {}},
      {"reproduce", {}, {}},
      {"experiments",
       {"experiment", "exp"},
       {"create", "list", "get", "show", "rename", "delete", "restore"}},
      {"runs",
       {},
       {"create", "search", "log", "show", "get", "finish", "delete", "restore", "untag", "history",
        "compare"}},
      {"data", {}, {"push", "pull", "diff", "log", "list", "show", "tag"}},
      {"artifact", {"artifacts"}, {"put", "get", "stat", "list", "gc", "scrub"}},
      {"lineage", {}, {}},
      {"models",
       {"model"},
       {"create", "register", "list", "versions", "show", "alias", "history", "delete-version",
        "evaluate", "evaluations", "alias-policy", "watch"}},
      {"pipeline",
       {"pipelines"},
       {"submit", "list", "status", "logs", "cancel", "retry", "schedule", "schedules",
        "unschedule"}},
      {"queues", {"queue"}, {"list", "put"}},
      {"step", {}, {"run"}},
      {"profile", {"profiles"}, {"create", "show", "list"}},
      {"monitor", {"monitors"}, {"create", "list", "report", "reports", "alerts", "ack", "ingest"}},
      {"drift", {}, {}},
      {"schema", {"schemas"}, {"infer", "put", "show"}},
      {"validate", {}, {}},
      {"validations", {}, {}},
      {"auth", {}, {"token"}},
      {"audit", {}, {"list"}},
      {"completion", {}, {"bash"}},
  };
  return groups;
}

const CommandGroup* FindGroup(const std::string& word) {
  for (const CommandGroup& group : CommandGroups()) {
    if (group.name == word ||
        std::find(group.aliases.begin(), group.aliases.end(), word) != group.aliases.end()) {
      return &group;
    }
  }
  return nullptr;
}

namespace {
std::string Join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& word : words) out += (out.empty() ? "" : ", ") + word;
  return out;
}
}  // namespace

std::string ValidWords(const std::string& group) {
  if (group.empty()) {
    std::vector<std::string> names;
    for (const CommandGroup& g : CommandGroups()) names.push_back(g.name);
    return Join(names);
  }
  const CommandGroup* found = FindGroup(group);
  return found == nullptr ? "" : Join(found->commands);
}

void UnknownCommand(const std::string& group, const std::string& command) {
  throw UsageError{"unknown command '" + group + " " + command + "'; " + group +
                   " commands: " + ValidWords(group)};
}

std::string TakeCommand(const std::string& group, Args& args) {
  std::optional<std::string> command = args.OptionalPositional();
  if (!command) {
    throw UsageError{"missing command; " + group + " commands: " + ValidWords(group)};
  }
  const CommandGroup* found = FindGroup(group);
  if (found != nullptr && std::find(found->commands.begin(), found->commands.end(), *command) ==
                              found->commands.end()) {
    UnknownCommand(group, *command);
  }
  return *command;
}

std::string BashCompletion() {
  std::string groups;
  std::string cases;
  for (const CommandGroup& group : CommandGroups()) {
    std::string names = group.name;
    for (const std::string& alias : group.aliases) names += "|" + alias;
    groups += (groups.empty() ? "" : " ") + group.name;
    if (!group.commands.empty()) {
      std::string words;
      for (const std::string& c : group.commands) words += (words.empty() ? "" : " ") + c;
      cases += "    " + names + ") words=\"" + words + "\" ;;\n";
    }
  }
  return "# bash completion for mlops: source <(mlops completion bash), or save it as\n"
         "# ~/.local/share/bash-completion/completions/mlops\n"
         "_mlops() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} i word group='' words=''\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    word=${COMP_WORDS[i]}\n"
         "    case $word in --server|--output) ((i++)); continue ;; -*) continue ;; esac\n"
         "    if [ -z \"$group\" ]; then group=$word; else return 0; fi\n"
         "  done\n"
         "  if [ -z \"$group\" ]; then\n"
         "    words=\"" +
         groups +
         " --server --output --help --version\"\n"
         "  else\n"
         "    case $group in\n" +
         cases +
         "    *) return 0 ;;\n"
         "    esac\n"
         "  fi\n"
         "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
         "}\n"
         "complete -o default -F _mlops mlops\n";
}

}  // namespace mlops::cli
