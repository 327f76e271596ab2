"""Tracking from Python against a real mlops-server: runs, params, tags, metrics, nesting,
errors, the active run per thread and task, and the recorded source."""
import asyncio
import math
import os
import subprocess
import threading
import time

import grpc
import pytest

import mlops
from mlops.metadata.v1 import metadata_pb2 as mpb
from mlops.tracking import connection

from conftest import child_env, run_python


def history(run_id, key):
    c = connection()
    return list(c.unary("metadata", "/mlops.metadata.v1.MetadataService/GetMetricHistory",
                        mpb.GetMetricHistoryRequest(run_id=run_id, key=key, page_size=100000),
                        mpb.GetMetricHistoryResponse).metrics)


def test_a_run_records_params_tags_and_every_metric_point(sdk_env):
    with mlops.start_run(experiment="py-basics", name="first", params={"lr": 0.1, "layers": 3},
                         tags={"team": "churn"}) as run:
        assert mlops.active_run() is run
        for step in range(1000):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
        run.log_params({"optimizer": "adam"})
        run.set_tag("stage", "trained")
        mlops.log_metric("lr", 0.1)  # fluent, on the active run
        mlops.log_metric("lr", 0.05)
        mlops.log_metric("weird", float("nan"))
        assert run.flush(10)
        for step in range(1000, 6000):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
        started = time.monotonic()
    # The end (after 10,000 unsent points) returns within 2 s with the server up.
    assert time.monotonic() - started < 2.0
    assert mlops.active_run() is None
    info = run.info()
    assert info.status == mpb.FINISHED and info.end_time_ms > 0
    assert dict(info.params) == {"lr": "0.1", "layers": "3", "optimizer": "adam"}
    assert info.tags["team"] == "churn" and info.tags["stage"] == "trained"
    latest = {m.key: m for m in info.latest_metrics}
    assert latest["loss"].step == 5999 and latest["loss"].value == pytest.approx(1 / 6000)
    assert math.isnan(latest["weird"].value)
    loss = history(run.id, "loss")
    assert [p.step for p in loss] == list(range(6000))
    # Steps default to the next step of that key.
    assert [(p.step, p.value) for p in history(run.id, "lr")] == [(0, 0.1), (1, 0.05)]
    # The run says how it was made.
    assert info.source.command[0].endswith("python3") or "python" in info.source.command[0]
    assert info.source.environment["python"].startswith("CPython 3.")
    assert info.source.dependency_digests["python:installed"].startswith("sha256:")


def test_points_of_calls_with_different_sets_of_keys_arrive_in_full(sdk_env):
    # A call appends one row per set of keys; the sender turns rows into one series per key and
    # splits them at 10,000 points a batch. Keys shared by several sets, sets of 1 and of 2,500
    # keys, and refused values (nothing of that call is kept) must all come out exactly.
    wide = {f"w{i}": float(i) for i in range(2500)}
    with mlops.start_run(experiment="py-keysets", record_source=False) as run:
        for step in range(3000):
            if step % 3 == 0:
                run.log_metrics({"loss": step, "acc": -step}, step=step)
            elif step % 3 == 1:
                run.log_metrics({"acc": -step, "loss": step, "lr": 0.5}, step=step)
            else:
                run.log_metric("loss", step, step=step)
            if step % 1000 == 0:
                run.log_metrics(wide, step=step)
        with pytest.raises(mlops.InvalidArgument, match="'acc'.*not a number"):
            run.log_metrics({"loss": 1.0, "acc": "high"}, step=99999)
        with pytest.raises(mlops.InvalidArgument, match="not a number"):
            run.log_metrics({"fresh": 1.0, "set": None}, step=99999)
        run.log_metrics({"loss": "3000.5"}, step=3000)  # a string of a number is a number
        run.log_metrics({"acc": 1.0, "loss": 2.0})  # the default step: one past the largest
    loss = history(run.id, "loss")
    assert [(p.step, p.value) for p in loss] == (
        [(s, float(s)) for s in range(3000)] + [(3000, 3000.5), (3001, 2.0)])
    acc = history(run.id, "acc")
    assert [p.step for p in acc] == [s for s in range(3000) if s % 3 != 2] + [3001]
    assert [p.value for p in acc[:-1]] == [-float(p.step) for p in acc[:-1]]
    assert [p.step for p in history(run.id, "lr")] == list(range(1, 3000, 3))
    for key in ("w0", "w1234", "w2499"):
        assert [(p.step, p.value) for p in history(run.id, key)] == [
            (s, wide[key]) for s in (0, 1000, 2000)]
    assert history(run.id, "fresh") == [] and history(run.id, "set") == []


def test_the_fluent_functions_act_on_the_active_run(sdk_env, tmp_path):
    run = mlops.start_run(experiment="py-fluent", record_source=False)  # no `with`
    assert mlops.active_run() is run
    mlops.log_param("lr", 0.5)
    mlops.log_params({"epochs": 3})
    mlops.set_tag("stage", "one")
    mlops.set_tags({"owner": "py"})
    mlops.log_metrics({"loss": 1.0, "acc": 0.5})
    (tmp_path / "notes.txt").write_text("notes")
    digest = mlops.log_artifact(str(tmp_path / "notes.txt"), name="notes")
    mlops.end_run()
    assert mlops.active_run() is None
    info = run.info()
    assert info.status == mpb.FINISHED
    assert dict(info.params) == {"lr": "0.5", "epochs": "3"}
    assert info.tags["stage"] == "one" and info.tags["owner"] == "py"
    assert info.tags["mlops.artifact.notes"] == digest
    assert {m.key for m in info.latest_metrics} == {"loss", "acc"}
    with pytest.raises(mlops.FailedPrecondition):
        mlops.end_run()
    with pytest.raises(mlops.InvalidArgument):
        run.end("RUNNING")


def test_a_block_that_raises_ends_failed_and_nested_runs_name_their_parent(sdk_env):
    with pytest.raises(ZeroDivisionError):
        with mlops.start_run(experiment="py-basics", record_source=False) as parent:
            with pytest.raises(mlops.FailedPrecondition, match="nested=True"):
                mlops.start_run(experiment="py-basics")
            with mlops.start_run(experiment="py-basics", nested=True,
                                 record_source=False) as child:
                assert mlops.active_run() is child
            assert mlops.active_run() is parent
            1 / 0
    assert parent.info().status == mpb.FAILED
    assert "ZeroDivisionError" in parent.info().tags["mlops.message"]
    assert child.info().status == mpb.FINISHED
    assert child.info().tags["mlops.parent_run_id"] == parent.id


def test_bad_input_raises_the_mapped_exception(sdk_env):
    with mlops.start_run(experiment="py-errors", params={"lr": "0.1"},
                         record_source=False) as run:
        with pytest.raises(mlops.InvalidArgument, match="metric key"):
            run.log_metric("bad key!", 1.0)
        with pytest.raises(mlops.InvalidArgument, match="250"):
            run.log_metric("k" * 251, 1.0)
        with pytest.raises(mlops.InvalidArgument, match="must be an integer"):
            run.log_metric("loss", 1.0, step=float("nan"))
        with pytest.raises(mlops.InvalidArgument, match="not a number"):
            run.log_metric("loss", "high")
        with pytest.raises(mlops.InvalidArgument, match="a list"):
            run.log_param("layers", [1, 2])
        with pytest.raises(mlops.InvalidArgument, match="6000 bytes"):
            run.log_param("long", "x" * 6001)
        with pytest.raises(mlops.FailedPrecondition, match="immutable"):
            run.log_param("lr", "0.2")
        # A conflict only the server sees (another process set the param) comes back from flush.
        other = mlops.Run(run.id)
        other.log_param("epochs", "5")
        assert other.flush(10)
        run.log_param("epochs", "6")
        with pytest.raises(mlops.FailedPrecondition, match="param 'epochs'"):
            run.flush(10)
        assert isinstance(mlops.FailedPrecondition("x"), mlops.MlopsError)
    with pytest.raises(mlops.NotFound):
        mlops.start_run(run_id="0" * 32)
    with pytest.raises(mlops.InvalidArgument):
        mlops.start_run(run_id="not-an-id")
    with pytest.raises(mlops.FailedPrecondition, match="no active run"):
        mlops.log_metric("loss", 1.0)
    err = mlops.errors.error_for(grpc.StatusCode.PERMISSION_DENIED, "no")
    assert isinstance(err, PermissionError) and err.code == grpc.StatusCode.PERMISSION_DENIED


def test_threads_and_asyncio_tasks_have_their_own_active_runs(sdk_env):
    runs = {}

    def worker(i):
        with mlops.start_run(experiment="py-threads", name=f"t{i}", record_source=False) as run:
            runs[i] = run
            for step in range(50):
                mlops.log_metric("x", i, step=step)  # fluent: this thread's run

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mlops.flush(30)
    assert len({r.id for r in runs.values()}) == 100
    for i in (0, 42, 99):
        points = history(runs[i].id, "x")
        assert len(points) == 50 and {p.value for p in points} == {float(i)}

    async def task(i):
        with mlops.start_run(experiment="py-async", name=f"a{i}", record_source=False) as run:
            await asyncio.sleep(0.01)
            mlops.log_metric("y", i)
            await asyncio.sleep(0.01)
            assert mlops.active_run() is run
            return run

    async def main():
        return await asyncio.gather(*(task(i) for i in range(20)))

    task_runs = asyncio.run(main())
    assert mlops.flush(30)
    for i, run in enumerate(task_runs):
        assert [p.value for p in history(run.id, "y")] == [float(i)]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_run_killed(sdk_env, signal_name):
    code = f"""
import os, signal, sys, mlops
with mlops.start_run(experiment="py-signals", record_source=False) as run:
    print(run.id, flush=True)
    mlops.log_metric("loss", 1.0)
    os.kill(os.getpid(), signal.{signal_name})
"""
    done = run_python(code, child_env(**sdk_env), check=False)
    assert done.returncode != 0, done.stderr
    if signal_name == "SIGTERM":
        assert done.returncode == 143, done.stderr
    run = mlops.Run(done.stdout.split()[0])
    assert run.info().status == mpb.KILLED
    assert len(history(run.id, "loss")) == 1
