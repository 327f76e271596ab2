"""Pipelines, monitoring and lineage from Python against a real mlops-server."""
import random
import subprocess
import time

import pytest

import mlops
from mlops.monitoring.v1 import monitoring_pb2 as mon
from mlops.scheduler.v1 import scheduler_pb2 as spb
from mlops.tracking import connection

from conftest import CLI

SPEC = """
name: py-pipeline
params: {word: hello, code: "0"}
steps:
  - name: say
    command: ["sh", "-c", "echo {{params.word}} > {{outputs.out}}"]
    outputs: {out: out.txt}
  - name: fail
    needs: [say]
    command: ["sh", "-c", "exit {{params.code}}"]
"""

SLOW = """
name: py-slow
steps:
  - name: sleep
    command: ["sleep", "60"]
"""


def test_a_pipeline_is_submitted_and_watched_to_its_end(sdk_env):
    done = mlops.pipelines.submit(SPEC, {"code": "0"}, watch=True, timeout=120)
    assert done.state == spb.SUCCEEDED, done.steps
    assert [s.name for s in done.steps] == ["say", "fail"]
    failed = mlops.pipelines.submit(SPEC, {"code": "3"}, watch=True, timeout=120)
    assert failed.state == spb.FAILED
    again = mlops.pipelines.submit(SPEC, {"code": "0"}, request_id="py-same")
    assert mlops.pipelines.submit(SPEC, {"code": "0"}, request_id="py-same").id == again.id
    assert mlops.pipelines.wait(again.id, timeout=120).state == spb.SUCCEEDED
    with pytest.raises(mlops.InvalidArgument):
        mlops.pipelines.submit("name: broken\nsteps: 7\n")
    slow = mlops.pipelines.submit(SLOW)
    assert mlops.pipelines.get(slow.id).id == slow.id
    mlops.pipelines.cancel(slow.id)
    assert mlops.pipelines.wait(slow.id, timeout=60).state == spb.CANCELED


def test_ingested_rows_reach_the_monitor_in_windows(server, sdk_env, tmp_path):
    rng = random.Random(1)
    data = tmp_path / "train"
    data.mkdir()
    rows = ["x,color"] + [f"{rng.gauss(0, 1):.4f},{rng.choice('rgb')}" for _ in range(500)]
    (data / "train.csv").write_text("\n".join(rows) + "\n")
    mlops.data.push(str(data), "py-monitor-data", tags=["v1"])
    for args in (["profile", "create", "py-profile", "--dataset", "py-monitor-data@v1"],
                 ["monitor", "create", "py-watch", "--profile", "py-profile", "--window-rows",
                  "100"]):
        done = subprocess.run([str(CLI), "--server", server.address, *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    served = [{"x": rng.gauss(3, 1), "color": "r"} for _ in range(250)]
    mlops.monitoring.ingest("py-watch", served[:120], predictions=[0.5] * 120)
    mlops.monitoring.ingest("py-watch", served[120:])
    assert mlops.monitoring.flush(30)
    reports = connection().unary(
        "monitoring", "/mlops.monitoring.v1.MonitoringService/ListReports",
        mon.ListReportsRequest(monitor="py-watch"), mon.ListReportsResponse).reports
    assert len(reports) == 2 and all(r.rows == 100 for r in reports)
    assert all(r.drifted for r in reports)  # the served x is shifted by 3 sigma
    with pytest.raises(mlops.InvalidArgument, match="columns"):
        mlops.monitoring.ingest("py-watch", [{"x": 1.0}, {"y": 2.0}])
    mlops.monitoring.ingest("no-such-monitor", [{"x": 1.0}])
    with pytest.raises(mlops.NotFound):
        mlops.monitoring.flush(30)


def test_lineage_of_a_pipeline_step_run(sdk_env, tmp_path):
    done = mlops.pipelines.submit(SPEC, {"code": "0", "word": "lineage"}, watch=True, timeout=120)
    assert done.state == spb.SUCCEEDED
    say = done.steps[0]
    run_id = say.tracking_run_id
    assert run_id
    # The scheduler records a finished step's lineage execution just after the run's state (in
    # the background): wait for it rather than race it.
    deadline = time.monotonic() + 15
    while True:
        try:
            graph = mlops.lineage(run_id, upstream=False, downstream=True, depth=2)
            break
        except mlops.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert graph.total_nodes >= 2  # the step's execution and its output
    with pytest.raises(mlops.InvalidArgument):
        mlops.lineage("bogus:1")
    assert mlops.lineage(f"run:{run_id}", upstream=False, downstream=True).total_nodes == \
        graph.total_nodes
    # A model registered from a file nothing in the graph produced has no node to start from.
    model = tmp_path / "m.bin"
    model.write_bytes(b"m")
    mlops.models.register(None, str(model), "py-lineage-model")
    with pytest.raises(mlops.NotFound, match="no artifact in the lineage graph"):
        mlops.lineage("model:py-lineage-model@1")
