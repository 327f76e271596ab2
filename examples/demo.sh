#!/usr/bin/env bash
# The end-to-end demo (README command 1 runs it through tools/quickstart.sh; so does
# tests/integration/demo_test.cc): ingest -> validate -> preprocess -> train/tune -> evaluate ->
# register, a second submission served from the cache, a monitored deployment whose drift triggers
# retraining and a new model version, and a run reproduced bit for bit.
#   examples/demo.sh BUILD_DIR        with MLOPS_SERVER naming a running mlops-server
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=tools/lib.sh
source tools/lib.sh
bin=$(cd "$1" && pwd)
: "${MLOPS_SERVER:?set MLOPS_SERVER to a running mlops-server}"
cli="$bin/tools/cli/mlops"
example="$bin/examples/mlops-example"
mlops() { "$cli" "$@"; }
work=$(mktemp -d /tmp/mlops-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
params=(--param "bin=$bin/examples" --param "cli=$cli" --param "examples=$root/examples")

# Waits for a pipeline run to finish; prints its DAG; fails the demo unless it succeeded.
finish() {
  local id=$1 state=""
  for _ in $(seq 1 600); do
    state=$(mlops pipeline status "$id" | sed -n 's/^state: *//p')
    case "$state" in SUCCEEDED | FAILED | CANCELED) break ;; esac
    sleep 0.2
  done
  run mlops pipeline status "$id"
  [ "$state" = SUCCEEDED ] || { echo "pipeline run $id: $state" >&2; exit 1; }
}

say "Demo 1. Ingest: 50,000 rows of a two-class table, pushed as dataset demo-data (versioned by content)"
mkdir -p "$work/data"
run "$example" generate --rows 50000 --seed 7 --out "$work/data/customers.csv"
head -3 "$work/data/customers.csv"
run mlops data push "$work/data" --dataset demo-data --tag v1 -m "training data"

say "Demo 2-6. The pipeline: validate, preprocess, train x 3 learning rates, evaluate the best, register it"
cat examples/pipeline.yaml | sed -n '/^steps:/,$p' | grep -E '^  - name:|sweep|objective' || true
first=$(mlops pipeline submit examples/pipeline.yaml "${params[@]}" --watch | head -1)
finish "$first"
run mlops pipeline logs "$first" evaluate
run mlops models show demo@production
run mlops lineage model:demo@production --depth 4

say "Demo 9. The same pipeline again: every unchanged step is a cache hit, nothing runs"
second=$(mlops pipeline submit examples/pipeline.yaml "${params[@]}" --watch | head -1)
finish "$second"
cached=$(mlops --output json pipeline status "$second" | grep -c '"state": "CACHED"' || true)
total=$(mlops --output json pipeline status "$second" | grep -c '"state": "' || true)
echo "cached steps: $cached of $((total - 1))"

say "Demo 7. Deploy and monitor: production data drifts, an alert fires, retraining registers a new model"
# A demo run again on the same server gets a monitor of its own (a monitor retrains once per
# cooldown, and its name is taken by the earlier run).
monitor=demo
if mlops monitor list | awk 'NR > 1 { print $1 }' | grep -qx demo; then
  monitor="demo-$(date +%Y%m%d-%H%M%S)"
fi
run mlops profile create demo-train --dataset demo-data@v1
run mlops monitor create "$monitor" --profile demo-train --model demo@production \
  --features f1,f2,f3,f4,segment --window-rows 5000 --drift-share 0.3 \
  --retrain examples/pipeline.yaml \
  --retrain-param "bin=$bin/examples" --retrain-param "cli=$cli" \
  --retrain-param "examples=$root/examples" --cooldown 1h
mkdir -p "$work/production"
run "$example" generate --rows 20000 --seed 8 --shift 1.5 --out "$work/production/customers.csv"
# What production saw becomes the next version of the data the retraining trains on.
run mlops data push "$work/production" --dataset demo-data --tag production -m "production data"
run mlops monitor ingest "$monitor" --file "$work/production/customers.csv" --batch 2000
run mlops monitor report "$monitor"
run mlops monitor alerts "$monitor"
# The alert's retraining is submitted to the scheduler in the background, within moments.
retrain=""
for _ in $(seq 100); do
  retrain=$(mlops --output json monitor alerts "$monitor" | sed -n 's/.*"pipeline_run_id": "\([0-9a-f]*\)".*/\1/p' | tail -1)
  [ -z "$retrain" ] || break
  sleep 0.1
done
[ -n "$retrain" ] || { echo "the drift alert submitted no retraining" >&2; exit 1; }
echo "retraining pipeline run: $retrain"
finish "$retrain"
run mlops models versions demo

say "Demo 8. Reproduce: a training run recorded with mlops run, repeated from its recorded code and data"
cd "$root/examples"
run mlops run --experiment demo-fit --param lr=1.0 --input data=demo-data@v1 --output model.txt \
  -- "$example" fit --data .mlops-run/inputs/data --lr 1.0 --out model.txt
fit=$(mlops --output json runs search --experiment demo-fit --max 1 |
  sed -n 's/.*"id": "\([0-9a-f]\{32\}\)".*/\1/p' | head -1)
run mlops reproduce "$fit"
cd "$root"

cat <<MSG

Demo done: the pipeline ran, was served from the cache, drift triggered a retraining that
registered model version 2 as production, and a recorded run was reproduced bit for bit.
MSG
