# Writes OUT (mlops_version.h) with the version and the commit of the source tree; rewritten only
# when they change, so that an unchanged tree recompiles nothing. Run at every build by the
# mlops_version target (tools/cli/CMakeLists.txt).
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE git_failed ERROR_QUIET)
if(git_failed)
  set(commit "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT changes STREQUAL "")
    set(commit "${commit}-dirty")
  endif()
endif()
set(content "#pragma once\n#define MLOPS_VERSION \"${VERSION}\"\n#define MLOPS_COMMIT \"${commit}\"\n")
file(WRITE "${OUT}.tmp" "${content}")
configure_file("${OUT}.tmp" "${OUT}" COPYONLY)
