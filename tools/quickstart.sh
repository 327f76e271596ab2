#!/usr/bin/env bash
# README command 1: installs what is missing, builds, starts mlops-server (the embedded default) in
# the background, runs the end-to-end demo (examples/demo.sh), then a short tour of each service
# through the `mlops` CLI.
#   tools/quickstart.sh             build, start the server on :50051 (metrics :9464), run the tour
#   MLOPS_PORT=6000 tools/quickstart.sh   use another gRPC port (metrics: MLOPS_METRICS_PORT)
#   MLOPS_PREFIX=/opt/mlops tools/quickstart.sh   install mlops and mlops-server there (default
#                                                 ~/.local: they land in ~/.local/bin)
# Safe to run again: it reuses the server it started (or any that answers on the port), and the
# demo and the tour run again on it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# shellcheck source=tools/lib.sh
source tools/lib.sh

say "Installing build dependencies (Debian packages; needs root or sudo)"
tools/bootstrap.sh

say "Building (cmake --preset default, -j2): the server, the CLI and the demo's program"
cmake --preset default >/dev/null
cmake --build --preset default -j2 --target mlops-server mlops mlops-example

bin="$root/build/default"
prefix=${MLOPS_PREFIX:-$HOME/.local}
say "Installing mlops, mlops-server and mlops-example (the demo's program) into $prefix/bin"
for component in cli server examples; do
  cmake --install build/default --prefix "$prefix" --component "$component" >/dev/null
done
on_path=yes
case ":$PATH:" in *":$prefix/bin:"*) ;; *) on_path=no; export PATH="$prefix/bin:$PATH" ;; esac
port=${MLOPS_PORT:-50051}
metrics_port=${MLOPS_METRICS_PORT:-9464}
data_dir="$root/.mlops"
export MLOPS_SERVER="localhost:$port"

if mlops experiments list >/dev/null 2>&1; then
  say "An mlops server already answers on $MLOPS_SERVER: using it"
else
  say "Starting mlops-server in the background (data in $data_dir, log in $data_dir/server.log)"
  mkdir -p "$data_dir"
  rm -f "$data_dir/server.ports"
  nohup mlops-server --port="$port" --metrics_port="$metrics_port" \
    --data_dir="$data_dir" --port_file="$data_dir/server.ports" >>"$data_dir/server.log" 2>&1 &
  echo $! > "$data_dir/server.pid"
  for _ in $(seq 1 100); do
    [ -s "$data_dir/server.ports" ] && break
    sleep 0.1
  done
  if ! [ -s "$data_dir/server.ports" ]; then
    echo "mlops-server did not start; see $data_dir/server.log" >&2
    exit 1
  fi
  echo "mlops-server pid $(cat "$data_dir/server.pid"): gRPC on :$port, metrics on :$metrics_port"
fi

say "The end-to-end demo (examples/demo.sh): a pipeline from data to a registered model, the cache,"
say "drift in production triggering retraining, and a run reproduced bit for bit"
examples/demo.sh "$bin"

say "A tour of the rest, feature by feature"
say "1. An experiment groups the runs of one modelling question"
name="iris-quickstart-$(date +%Y%m%d-%H%M%S)"
run mlops experiments create "$name" --description "Iris classifier, quickstart tour" --tag team=tour

say "2. Three training runs: parameters, the code version, then metric curves"
declare -a run_ids
i=0
for lr in 0.1 0.03 0.01; do
  id=$(mlops runs create --experiment "$name" --name "lr-$lr" --param lr=$lr --param optimizer=adam \
       --param seed=7 --tag team=tour --tag commit="$(git rev-parse --short HEAD 2>/dev/null || echo none)")
  run_ids[$i]=$id
  echo "run $id: lr=$lr"
  args=()
  for step in 1 2 3 4 5 6 7 8 9 10; do
    # A made-up learning curve: higher learning rates learn faster here.
    acc=$(awk -v s=$step -v lr=$lr 'BEGIN { printf "%.4f", 1 - 0.6 * exp(-s * lr * 3) }')
    loss=$(awk -v s=$step -v lr=$lr 'BEGIN { printf "%.4f", 1.2 * exp(-s * lr * 3) }')
    args+=(--metric "accuracy=$acc@$step" --metric "loss=$loss@$step")
  done
  mlops runs log "$id" "${args[@]}" >/dev/null
  mlops runs finish "$id" >/dev/null
  i=$((i + 1))
done

say "3. Search: which finished runs reached 75% accuracy, best first?"
run mlops runs search --experiment "$name" \
  --filter 'metrics.accuracy > 0.75 and params.optimizer = "adam" and status = "FINISHED"' \
  --order-by "metrics.accuracy DESC"

say "4. One run in full"
run mlops runs show "${run_ids[0]}"

say "5. Its accuracy curve (every point is kept; --max-points downsamples server-side)"
run mlops runs history "${run_ids[0]}" accuracy

say "6. Params are immutable: changing one is refused"
run mlops runs log "${run_ids[0]}" --param lr=0.5 || true

say "7. Data versioning: a directory pushed as a dataset version, addressed by content"
tour_data="$data_dir/tour-data"
rm -rf "$tour_data" && mkdir -p "$tour_data/raw"
awk 'BEGIN { srand(7); print "sepal_length,sepal_width,species";
             for (i = 0; i < 3000; i++) printf "%.2f,%.2f,%s\n", 4 + 4 * rand(), 2 + 2 * rand(), (rand() < 0.5 ? "setosa" : "virginica") }' \
  > "$tour_data/raw/iris.csv"
echo "sepal_length: float, sepal_width: float, species: {setosa, virginica}" > "$tour_data/schema.txt"
run mlops data push "$tour_data" --dataset iris-tour --tag v1 -m "first cut"
say "   Pushing it again uploads nothing (digests come from the local hash cache)"
run mlops data push "$tour_data" --dataset iris-tour
say "   One file changes: only its chunks travel; diff and log show what changed"
echo "7.10,3.30,virginica" >> "$tour_data/raw/iris.csv"
run mlops data push "$tour_data" --dataset iris-tour -m "one more row"
run mlops data diff iris-tour@v1 latest
run mlops data log iris-tour
say "   Pull v1 elsewhere; every file is verified against its SHA-256 (compare with sha256sum)"
run mlops data pull iris-tour@v1 "$tour_data-v1"
run sha256sum "$tour_data-v1/schema.txt" "$tour_data/schema.txt"

say "8. Model registry: a model version tied to its run and its content digest; aliases move"
model_file="$data_dir/tour-model.bin"
printf 'weights of %s\n' "$name" > "$model_file"
model_digest=$(mlops artifact put "$model_file" 2>/dev/null)
run mlops models register "$name" --digest "$model_digest" --run "${run_ids[0]}"
run mlops models alias "$name" production 1 --reason "first release"
run mlops models history "$name" production
say "   A version that an alias points at cannot be deleted"
run mlops models delete-version "$name" 1 || true

say "9. Pipelines: a DAG of steps, inputs by content digest, outputs versioned, cached when unchanged;"
say "   a sweep compared on the metric its instances report, the best one's output passed on"
cat > "$data_dir/tour-pipeline.yaml" <<'YAML'
name: tour
params: {threshold: "5.0"}
steps:
  - name: validate
    command: [/bin/sh, -c, "awk -F, 'NR > 1 && NF != 3 { bad = 1 } END { exit bad }' {{inputs.data}}/raw/iris.csv && echo schema ok"]
    inputs: {data: "dataset:iris-tour@v1"}
  - name: split
    needs: [validate]
    command: [/bin/sh, -c, "awk -F, -v t={{params.threshold}} 'NR > 1 && $1 < t' {{inputs.data}}/raw/iris.csv > {{outputs.small}}; wc -l < {{outputs.small}}"]
    inputs: {data: "dataset:iris-tour@v1"}
    outputs: {small: small.csv}
  - name: count
    command: [/bin/sh, -c, "cut -d, -f3 {{inputs.rows}} | sort | uniq -c | tee {{outputs.counts}}"]
    inputs: {rows: split.outputs.small}
    outputs: {counts: counts.txt}
  - name: tune
    needs: [validate]
    command:
      - /bin/sh
      - -c
      - |
        n=$(awk -F, -v t={{params.threshold}} 'NR > 1 && $1 < t' {{inputs.data}}/raw/iris.csv | wc -l)
        echo "{\"kept\": $n}" > metrics.json
        echo "threshold {{params.threshold}} keeps $n rows" | tee {{outputs.report}}
    inputs: {data: "dataset:iris-tour@v1"}
    outputs: {report: report.txt}
    sweep: {threshold: ["4.8", "5.0", "5.5"]}
    objective: {metric: kept, goal: maximize}
  - name: pick
    command: [cat, "{{inputs.report}}"]
    inputs: {report: tune.outputs.report}
YAML
run mlops pipeline submit "$data_dir/tour-pipeline.yaml" --watch
pipeline_run=$(mlops pipeline list --max 1 | awk 'NR == 2 { print $1 }')
run mlops pipeline status "$pipeline_run"
run mlops pipeline logs "$pipeline_run" count
run mlops pipeline logs "$pipeline_run" pick
say "   The same pipeline again: every step is a cache hit. A new threshold reruns only the steps that use it (a step sees, and its fingerprint covers, only the params it names or declares)"
run mlops pipeline submit "$data_dir/tour-pipeline.yaml" --watch
run mlops pipeline submit "$data_dir/tour-pipeline.yaml" --param threshold=6.0 --watch

say "10. Monitoring: production data compared with the training data (PSI, KS, chi-squared)"
run mlops profile create iris-train --dataset iris-tour@v1
run mlops profile show iris-train
# Production data: the same flowers measured with sepals 1.5 cm longer and 0.8 cm wider.
prod_data="$data_dir/tour-production"
mkdir -p "$prod_data"
awk -F, 'NR == 1 { print; next } { printf "%.2f,%.2f,%s\n", $1 + 1.5, $2 + 0.8, $3 }' \
  "$tour_data/raw/iris.csv" > "$prod_data/iris.csv"
run mlops data push "$prod_data" --dataset iris-production --tag today
say "   Exit code 3 means the dataset drifted"
run mlops drift iris-production@today --against iris-train || true
run mlops monitor create "$name" --profile iris-train --window-rows 100 --test ks,psi,chi2
run mlops drift iris-production@today --monitor "$name" > /dev/null || true
run mlops monitor alerts "$name"

say "11. Operators: Prometheus metrics (drift gauges, queue depths, RPCs, storage)"
echo "\$ curl -s localhost:$metrics_port/metrics | grep -E '^(mlops_model_drift_share|mlops_feature_drift_psi|mlops_scheduler_queue)'"
curl -s "localhost:$metrics_port/metrics" |
  grep -E '^(mlops_model_drift_share|mlops_feature_drift_psi|mlops_scheduler_queue)' || true
echo "\$ curl -s localhost:$metrics_port/metrics | grep grpc_server_handled_total | head -3"
curl -s "localhost:$metrics_port/metrics" | grep '^grpc_server_handled_total' | head -3 || true

say "12. From Python (docs/python.md): a scikit-learn model trained with the SDK in a git repo,"
say "    then reproduced bit for bit from what start_run recorded"
py_repo="$(mktemp -d /tmp/mlops-python.XXXXXX)"
cp examples/python/train.py "$py_repo/"
git -C "$py_repo" init -q
git -C "$py_repo" add train.py
git -C "$py_repo" -c user.name=quickstart -c user.email=quickstart@localhost commit -qm train
echo "\$ (cd $py_repo && PYTHONPATH=$bin/python /usr/bin/python3 train.py --epochs 20)"
py_out="$(cd "$py_repo" && PYTHONPATH="$bin/python" /usr/bin/python3 train.py --epochs 20 \
  --model python-quickstart)"
echo "$py_out"
py_run="$(echo "$py_out" | awk '/^run / { sub(":", "", $2); print $2; exit }')"
echo "\$ (cd $py_repo && mlops reproduce $py_run)"
(cd "$py_repo" && PYTHONPATH="$bin/python" mlops reproduce "$py_run")

shell_lines=""
[ "$on_path" = no ] && shell_lines+="  export PATH=\"$prefix/bin:\$PATH\"
"
[ "$port" != 50051 ] && shell_lines+="  export MLOPS_SERVER=$MLOPS_SERVER
"
path_hint=""
[ -n "$shell_lines" ] && path_hint="First, in your shell (and in ~/.profile to keep it):
$shell_lines"
cat <<MSG

Done. The server keeps running in the background; mlops, mlops-server and mlops-example are in
$prefix/bin. The README's commands run as they are from here.
${path_hint}Then, for example (the CLI finds the server through MLOPS_SERVER, default localhost:50051):
  mlops --help
  mlops --output json runs search --experiment $name
  mlops data list; mlops data show iris-tour --files
  mlops models list; mlops models show $name@production
  mlops pipeline list; mlops models versions demo; mlops monitor list
  mlops monitor report $name
  web UI:    http://localhost:$metrics_port/   (runs, curves, lineage, models, pipelines, drift)
  metrics:   curl -s http://localhost:$metrics_port/metrics   (also /healthz, /readyz)
  alerting:  charts/mlops/files/prometheus-rules.yaml, charts/mlops/files/grafana-dashboard.json
  benchmark: cmake --build --preset default --target mlops-bench &&
             build/default/tools/bench/mlops-bench metadata --json
  stop:      kill \$(cat $data_dir/server.pid)       (data stays in $data_dir)
  again:     tools/quickstart.sh                      (reuses the running server)
MSG
