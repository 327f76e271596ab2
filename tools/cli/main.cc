// mlops: the command-line client. See `mlops help` and the README (commands, exit codes).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mlops/metadata/v1/metadata.grpc.pb.h"
#include "mlops_version.h"
#include "services/common/ids.h"
#include "services/common/status.h"
#include "services/common/strings.h"
#include "tools/cli/auth_cli.h"
#include "tools/cli/cli_util.h"
#include "tools/cli/commands.h"
#include "tools/cli/data_cli.h"
#include "tools/cli/lineage_cli.h"
#include "tools/cli/monitoring_cli.h"
#include "tools/cli/pipeline_cli.h"
#include "tools/cli/run_cli.h"
#include "tools/cli/step_runner.h"
#include "tools/cli/tracking_cli.h"

namespace v1 = mlops::metadata::v1;
using mlops::StrCat;

using namespace mlops::cli;  // NOLINT: the CLI helpers

namespace {

constexpr char kUsage[] = R"(mlops: reproducible machine learning, from the command line.

Usage: mlops [--server HOST:PORT] [--output table|json] <group> <command> [args]

  --server    the mlops server (default $MLOPS_SERVER, else localhost:50051)
  --metadata_server, --artifact_server, --scheduler_server, --monitoring_server
              where each service runs when they are apart (default --server, then
              $MLOPS_METADATA_SERVER, ... then $MLOPS_SERVER)
  --ca        a PEM file of the CA that signs the server's certificate: connect with TLS
              (default $MLOPS_CA; unset: plaintext)
  --cert, --key  PEM files of a client certificate and its key, for servers that require one
              (mTLS, --tls_client_ca; default $MLOPS_CERT, $MLOPS_KEY); with --ca
  --token-file  a file holding the bearer token to present (default $MLOPS_TOKEN_FILE;
              $MLOPS_TOKEN, the token itself, wins); see docs/security.md
  --project   the project to act in (default $MLOPS_PROJECT, else "default"): names and ids
              given without projects/P/ are put in it, lists list it; "*" lists every project
              (see docs/api.md, "Projects")
  --output    table (default), json, or dot (lineage)
  mlops --version                   the version and the commit it was built from
  mlops completion bash             tab completion: source <(mlops completion bash)

Runs of your own code (recorded: git commit + uncommitted diff, command, environment, lockfiles,
params, input dataset versions; then logs, outputs, metrics.json, exit code):
  mlops run [--experiment E] [--name N] [--param K=V]... [--input NAME=DATASET@VERSION]...
            [--output PATH]... [--tag K=V]... -- COMMAND ARGS...
  mlops reproduce RUN [--tolerance 1e-6] [--keep]
                       reruns RUN from its recorded commit, diff, inputs and params; exit 0 only
                       when every output digest and metric matches
  mlops runs compare RUN RUN...        params, inputs and code that differ; metrics side by side

Experiments:
  mlops experiments create NAME [--description TEXT] [--tag K=V]...
  mlops experiments list [--deleted | --all]
  mlops experiments get EXPERIMENT
  mlops experiments rename EXPERIMENT NEW_NAME
  mlops experiments delete EXPERIMENT
  mlops experiments restore EXPERIMENT

Runs (EXPERIMENT is a name or an id; RUN is a run id):
  mlops runs create --experiment EXPERIMENT [--name NAME] [--param K=V]... [--tag K=V]...
                    [--request-id ID]
  mlops runs log RUN [--metric KEY=VALUE[@STEP]]... [--param K=V]... [--tag K=V]...
  mlops runs show RUN
  mlops runs finish RUN [--status FINISHED|FAILED|KILLED]
  mlops runs delete RUN
  mlops runs restore RUN
  mlops runs untag RUN KEY
  mlops runs search --experiment EXPERIMENT [--experiment ...] [--filter FILTER]
                    [--order-by "metrics.acc DESC"] [--max N] [--deleted | --all]
  mlops runs history RUN KEY [--max-points N]

Datasets (versions are content digests; REF is a tag, a digest or a digest prefix):
  mlops data push DIR|FILE --dataset NAME [--tag T]... [-m MESSAGE] [--chunk-size BYTES]
                  [--follow-symlinks]
  mlops data pull NAME[@REF] DIR [--verify]
  mlops data diff NAME@REF NAME@REF|REF [--max N]
  mlops data log NAME [--max N]
  mlops data list
  mlops data show NAME[@REF] [--files]
  mlops data tag NAME@REF TAG [--remove]

Artifacts (blobs addressed by the SHA-256 that sha256sum prints):
  mlops artifact put FILE [--no-pin]          prints the digest
  mlops artifact get DIGEST FILE|-
  mlops artifact stat DIGEST [--chunks]
  mlops artifact list [--max N]
  mlops artifact gc [--grace SECONDS] [--dry-run]
  mlops artifact scrub [--repair]

Lineage (REF: artifact:ID, execution:ID, run:RUN_ID or model:NAME@ALIAS|VERSION):
  mlops lineage REF [--upstream | --downstream | --both] [--depth N] [--stop FILTER]
                [--output table|json|dot]           (dot renders with Graphviz: dot -Tsvg)

Model registry:
  mlops models create NAME [--description TEXT] [--tag K=V]...
  mlops models register NAME --file MODEL_FILE | --digest SHA256 [--run RUN] [--artifact-id ID]
                       [--request-id ID]     --file uploads it and gives it a lineage node
  mlops models list
  mlops models versions NAME [--max N]
  mlops models show NAME[@ALIAS|VERSION]
  mlops models alias NAME ALIAS VERSION [--expect VERSION] [--reason TEXT]
  mlops models alias NAME ALIAS --delete
  mlops models history NAME ALIAS [--at TIME]         (TIME: ms or 2026-11-27T05:00:00Z)
  mlops models delete-version NAME VERSION
  mlops models evaluate NAME[@ALIAS|VERSION] --dataset D@V [--task classification|regression]
        [--label label] [--prediction prediction] [--score COLUMN] [--positive 1]
        [--slice FEATURE]... [--cross A,B]... [--buckets 4] [--sensitive FEATURE]
        [--policy "accuracy >= 0.9"]... [--champion production]
        [--champion-prediction COLUMN [--champion-score COLUMN]]
                                       metrics overall, per slice, fairness (docs/analysis.md);
                                       with a policy the verdict is the version's blessing
                                       (exit 3 when not blessed)
  mlops models watch NAME ALIAS [--count N] [--after MOVE]
                                       where the alias points, then every move (reconnects)
  mlops models alias-policy NAME ALIAS --require-blessing|--none
  mlops models alias NAME ALIAS VERSION --override --reason TEXT   past a missing blessing
  mlops models evaluations NAME[@VERSION] [--max N]

Pipelines (the scheduler; FILE is a pipeline spec in YAML, see docs/api.md):
  mlops pipeline submit FILE [--param K=V]... [--queue Q] [--no-cache] [--watch]
  mlops pipeline list [--max N]
  mlops pipeline status RUN [--watch]  the DAG: each step's state, duration, attempts, cache hits
                                       (--watch: once the run has ended; exit 1 unless it succeeded)
  mlops pipeline logs RUN STEP [--follow] [--stderr] [--attempt N]
  mlops pipeline cancel RUN
  mlops pipeline retry RUN             reruns only what failed or did not run
  mlops pipeline schedule FILE --name N --cron "0 3 * * *" [--param K=V]... [--queue Q]
  mlops pipeline schedules; mlops pipeline unschedule NAME
  mlops queues list
  mlops step run -- COMMAND...         in a step's pod (Kubernetes executor): inputs, outputs, report
  mlops queues put NAME [--priority P] [--max-concurrency N] [--cpu 4] [--memory 8Gi] [--gpu 1]
                  [--pod-template FILE]   (JSON of a PodTemplateSpec: the Kubernetes executor)
                  [--kueue LOCALQUEUE]    (Kueue admits the queue's steps: the Kubernetes executor)
                  [--open-to PROJECT]...  (only runs of these projects may use it; default: every)

Monitoring (drift of production data against the training data):
  mlops profile create NAME --dataset DATASET@VERSION [--categorical a,b] [--max-categories N]
  mlops profile show NAME[@VERSION]; mlops profile list
  mlops drift DATASET@VERSION --against PROFILE[@VERSION] [--test ks,psi:0.1,chi2,js]
                                       a table per feature; exit 3 when the dataset drifted
  mlops drift DATASET@VERSION --monitor NAME      stored as the monitor's report
  mlops monitor create NAME --profile P[@V] [--model M[@VERSION|ALIAS]] [--features a,b]
        [--schema DATASET[@V]]             (rows checked against it: training/serving skew)
        [--test ks,psi] [--window-rows N | --window 10m] [--drift-share 0.5]
        [--task classification|regression --baseline B --max-degradation D]
        [--retrain FILE [--retrain-param K=V]... [--queue Q] [--cooldown 1h]]
  mlops monitor list; mlops monitor report NAME [--max N]
  mlops monitor ingest NAME --file ROWS.csv [--batch 1000]    stream production rows
  mlops monitor alerts [NAME] [--open]; mlops monitor ack ALERT [--by USER]

Data validation (docs/validation.md):
  mlops schema infer DATASET@VERSION [--categorical a,b] [--max-categories N] [--save]
                                       prints the schema as YAML (--save: stored, versioned)
  mlops schema put FILE.yaml [--name DATASET]; mlops schema show DATASET[@VERSION]
  mlops validate DATASET@VERSION [--schema DATASET[@VERSION] | --schema FILE.yaml]
                                       the anomalies; exit 3 when there is one
  mlops validations DATASET [--max N]  past validations of the dataset

Security (docs/security.md; `auth token create` needs no server):
  mlops auth token create --subject S --auth-token-file FILE [--grant PROJECT=viewer|editor|admin]...
                          [--operator] [--expires 2027-06-30T00:00:00Z]
                          appends the token's SHA-256 to the server's token file and prints the
                          token once (it is stored nowhere)
  mlops audit list [--project P] [--subject S] [--since TIME] [--until TIME] [--max N]
                          every call of a mutating RPC (who, what, which resource, request id,
                          result), oldest first; each server's log (an admin's token)

Filters: metrics.acc > 0.9 and params.opt = "adam" and tags.team != "x" and status = "FINISHED"
         (and, or, parentheses, = != < <= > >= in (...) like ilike; see docs/api.md)
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> raw(argv + 1, argv + argc);
  try {
    Args args(raw);
    if (raw.empty() || args.TakeFlag("--help") || args.TakeFlag("-h") ||
        (raw.size() == 1 && raw[0] == "help")) {
      std::cout << kUsage;
      return raw.empty() ? 2 : 0;
    }
    if (raw.size() == 1 && (raw[0] == "--version" || raw[0] == "version")) {
      std::cout << "mlops " << MLOPS_VERSION << " (commit " << MLOPS_COMMIT << ")\n";
      return 0;
    }
    // `mlops run` passes its own flags (--output PATH among them) and the command's: there the
    // global flags are only those before the word "run".
    Args prefix({});
    Args* globals = &args;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == "--server" || raw[i] == "--output" || raw[i] == "--metadata_server" ||
          raw[i] == "--artifact_server" || raw[i] == "--scheduler_server" ||
          raw[i] == "--monitoring_server" || raw[i] == "--ca" || raw[i] == "--cert" ||
          raw[i] == "--key" || raw[i] == "--token-file" || raw[i] == "--project") {
        ++i;
        continue;
      }
      if (raw[i].rfind("--", 0) == 0) continue;
      if (raw[i] == "run" || raw[i] == "reproduce" || raw[i] == "step") {
        prefix = Args({raw.begin(), raw.begin() + static_cast<long>(i)});
        args = Args({raw.begin() + static_cast<long>(i), raw.end()});
        globals = &prefix;
      }
      break;
    }
    Endpoints endpoints = TakeEndpoints(*globals);
    std::string output = globals->Take("--output").value_or("table");
    if (output != "table" && output != "json" && output != "dot") {
      throw UsageError{"--output must be table, json or dot"};
    }
    std::optional<std::string> word = args.OptionalPositional();
    if (!word) throw UsageError{"missing command group; groups: " + ValidWords("")};
    const CommandGroup* found = FindGroup(*word);
    if (found == nullptr) {
      throw UsageError{"unknown command group '" + *word + "'; groups: " + ValidWords("")};
    }
    std::string group = *word;
    if (found->name == "audit") {
      TakeCommand("audit", args);
      return AuditListCommandLine(args, endpoints, output == "json");
    }
    if (found->name == "auth") {
      TakeCommand("auth", args);
      return AuthTokenCommandLine(args, output == "json");
    }
    if (found->name == "completion") {
      TakeCommand("completion", args);
      args.ExpectEmpty();
      std::cout << BashCompletion();
      return 0;
    }
    if (output == "dot" && group != "lineage") throw UsageError{"--output dot: lineage only"};
    auto metadata = ServiceChannel(endpoints.metadata, endpoints);
    auto artifact = endpoints.artifact == endpoints.metadata
                        ? metadata
                        : ServiceChannel(endpoints.artifact, endpoints);
    if (group == "step") {
      TakeCommand("step", args);
      std::vector<std::string> argv = args.Rest();
      args.ExpectEmpty();
      const char* manifest = std::getenv("MLOPS_STEP_MANIFEST");
      if (manifest == nullptr) {
        throw UsageError{"mlops step run is for a step's pod: MLOPS_STEP_MANIFEST is not set"};
      }
      auto exit_code =
          RunStep(manifest, argv, artifact, ServiceChannel(endpoints.scheduler, endpoints));
      if (!exit_code.ok()) throw UsageError{std::string(exit_code.status().message())};
      return *exit_code;
    }
    if (group == "run") {
      return RunCommandLine(args, metadata, artifact, endpoints, output == "json");
    }
    if (group == "reproduce") {
      return ReproduceCommandLine(args, metadata, artifact, endpoints, output == "json");
    }
    if (group == "profile" || group == "profiles" || group == "monitor" || group == "monitors" ||
        group == "drift") {
      return RunMonitoringCommand(group.rfind("profile", 0) == 0   ? "profile"
                                  : group.rfind("monitor", 0) == 0 ? "monitor"
                                                                   : "drift",
                                  args, ServiceChannel(endpoints.monitoring, endpoints),
                                  output == "json");
    }
    if (group == "schema" || group == "schemas" || group == "validate" || group == "validations") {
      return RunValidationCommand(group == "schemas" ? "schema" : group, args,
                                  ServiceChannel(endpoints.monitoring, endpoints),
                                  output == "json");
    }
    std::string command = group == "lineage" ? "" : TakeCommand(found->name, args);
    if ((group == "runs") && command == "compare") {
      return CompareRunsCommandLine(args, metadata, artifact, output == "json");
    }
    if (group == "pipeline" || group == "pipelines" || group == "queues" || group == "queue") {
      return RunPipelineCommand(group.rfind("queue", 0) == 0 ? "queues" : "pipeline", command, args,
                                ServiceChannel(endpoints.scheduler, endpoints), output == "json");
    }
    if ((group == "models" || group == "model") &&
        (command == "evaluate" || command == "evaluations")) {
      return RunAnalysisCommand(command, args, ServiceChannel(endpoints.monitoring, endpoints),
                                output == "json");
    }
    if (group == "lineage" || group == "models" || group == "model") {
      return RunLineageCommand(group == "model" ? "models" : group, command, args, metadata,
                               artifact, output);
    }
    if (group == "data" || group == "artifact" || group == "artifacts") {
      return RunDataCommand(group, command, args, artifact, output == "json");
    }
    return RunTrackingCommand(group, command, args, metadata, output == "json");
  } catch (const UsageError& e) {
    std::cerr << "mlops: " << e.message << "\n(see mlops --help)\n";
    return 2;
  }
}
