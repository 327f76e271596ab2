// Every command group of the CLI and its commands, in one table: usage errors list the valid
// words from it, and `mlops completion bash` is generated from it.
#pragma once

#include <string>
#include <vector>

namespace mlops::cli {

struct CommandGroup {
  std::string name;                   // as documented ("runs")
  std::vector<std::string> aliases;   // other spellings accepted ("run" is not one: it is a group)
  std::vector<std::string> commands;  // empty: the group is a command itself ("run", "lineage")
};

const std::vector<CommandGroup>& CommandGroups();

// The group named `word` (by name or alias), or nullptr.
const CommandGroup* FindGroup(const std::string& word);

// "create, search, log, ..." of the group, or every group's name when `group` is empty.
std::string ValidWords(const std::string& group);

// Throws UsageError naming the unknown command of `group` and listing the valid ones.
[[noreturn]] void UnknownCommand(const std::string& group, const std::string& command);

// The next positional argument as the command of `group`, checked against the table (throws
// UsageError listing the commands when it is missing or unknown).
class Args;
std::string TakeCommand(const std::string& group, Args& args);

// A bash completion script for the CLI (`source <(mlops completion bash)`).
std::string BashCompletion();

}  // namespace mlops::cli
