#!/bin/sh
# The demo pipeline's register step: the best model becomes a version of model "demo" in the
# registry (linked to this step's run; its digest links it to the lineage), and `production`
# moves to it. Registering the same model bytes again returns the same version. The CLI finds the
# registry through MLOPS_METADATA_SERVER, which the scheduler gives every step.
set -e
model=$1
cli=$2
report=$3
digest=$(sha256sum "$model" | cut -c1-64)
version=$("$cli" --output json models register demo --digest "$digest" \
  --run "$MLOPS_RUN_ID" --request-id "$digest" --description "$(tr '\n' ' ' < "$report")" |
  sed -n 's/.*"version": "\{0,1\}\([0-9][0-9]*\)"\{0,1\}.*/\1/p' | head -1)
"$cli" models alias demo production "$version" \
  --reason "pipeline run $MLOPS_PIPELINE_RUN_ID"
echo "registered demo version $version (sha256 $digest); production -> $version"
