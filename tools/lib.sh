# Shell helpers shared by tools/quickstart.sh and examples/demo.sh (sourced, not run).

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Prints the command as one would type it (arguments with spaces or quotes in single quotes), then
# runs it.
run() {
  local line="$" arg
  for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]\"\'\>\<\|\&] ]]; then line+=" '${arg//\'/\'\\\'\'}'"; else line+=" $arg"; fi
  done
  printf '%s\n' "$line"
  "$@"
}
