"""The asynchronous path under failures: a server killed -9 and restarted mid-run, an outage
spooled and replayed, a process killed with an unsent spool replayed by the next, and forked,
forkserver and spawned children logging to their parent's run."""
import os
import subprocess
import sys
import time

import pytest

import mlops
from mlops.metadata.v1 import metadata_pb2 as mpb

from conftest import child_env, run_python
from test_tracking import history

# A child that logs `steps` points of "x" (value = step) spread over `seconds`, then ends its run
# and prints the sender's counters.
LOGGER = """
import sys, time, mlops, mlops.tracking as t
steps, seconds = int(sys.argv[1]), float(sys.argv[2])
run = mlops.start_run(experiment="py-reliability", record_source=False)
print(run.id, flush=True)
start = time.monotonic()
for step in range(steps):
    run.log_metric("x", step, step=step)
    delay = start + seconds * (step + 1) / steps - time.monotonic()
    if delay > 0:
        time.sleep(delay)
ok = run.end(timeout=120)
s = t._the_sender()
print("ended", ok, s.sent_batches, s.spooled_batches, flush=True)
"""


def start_logger(env, steps, seconds):
    child = subprocess.Popen([sys.executable, "-c", LOGGER, str(steps), str(seconds)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = child.stdout.readline().strip()
    assert run_id, child.stderr.read()
    return child, run_id


def finish(child):
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err
    fields = out.split()
    assert fields[0] == "ended" and fields[1] == "True", out + err
    return int(fields[2]), int(fields[3])


def assert_every_point_once(run_id, steps):
    points = history(run_id, "x")
    assert [p.step for p in points] == list(range(steps))
    assert all(p.value == p.step for p in points)


def test_a_server_killed_and_restarted_mid_run_loses_and_repeats_nothing(server, sdk_env):
    env = child_env(**sdk_env)
    child, run_id = start_logger(env, 20000, 6)
    time.sleep(1.5)
    server.kill9()
    time.sleep(1.0)
    server.start()  # the same port
    sent, spooled = finish(child)
    assert_every_point_once(run_id, 20000)
    assert mlops.Run(run_id).info().status == mpb.FINISHED


def test_an_outage_is_spooled_and_replayed_in_order(server, sdk_env):
    env = child_env(**sdk_env)
    child, run_id = start_logger(env, 30000, 14)
    time.sleep(2)
    server.kill9()
    time.sleep(10)  # the outage
    server.start()
    sent, spooled = finish(child)
    assert spooled > 0  # the batches of the outage went through the spool
    assert_every_point_once(run_id, 30000)
    assert not os.listdir(sdk_env["MLOPS_SPOOL_DIR"])  # replayed and removed


def test_a_process_killed_with_an_unsent_spool_is_replayed_by_the_next(server, sdk_env):
    env = child_env(**sdk_env)
    code = """
import os, signal, sys, mlops, mlops.tracking as t
run = mlops.start_run(experiment="py-orphan", record_source=False)
print(run.id, flush=True)
sys.stdin.readline()  # the server is down now
for step in range(5000):
    run.log_metric("x", step, step=step)
run.end(timeout=2)  # the end goes behind the points, into the spool
assert t._the_sender().pending_spool
print("spooled", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_id = child.stdout.readline().strip()
    server.kill9()
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "spooled", child.stderr.read()
    child.wait(timeout=30)
    assert len(os.listdir(sdk_env["MLOPS_SPOOL_DIR"])) == 1
    server.start()
    # The next process that logs (here: only flushes) replays the dead one's spool.
    run_python("import mlops; assert mlops.flush(60)", env)
    assert_every_point_once(run_id, 5000)
    assert mlops.Run(run_id).info().status == mpb.FINISHED
    assert not os.listdir(sdk_env["MLOPS_SPOOL_DIR"])


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_children_log_to_their_parents_run(server, sdk_env, method):
    code = """
import multiprocessing as mp, sys, mlops

def work(run, i):
    assert mlops.active_run() is None  # nothing inherited
    for step in range(200):
        run.log_metric(f"w{i}", step, step=step)

if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with mlops.start_run(experiment="py-fork", record_source=False) as run:
        run.log_metric("parent", 1.0)  # the parent's sender thread and channel exist
        procs = [ctx.Process(target=work, args=(run, i)) for i in range(4)]
        for p in procs: p.start()
        for p in procs: p.join(60)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        run.log_metric("parent", 2.0)
    print(run.id)
"""
    path = os.path.join(sdk_env["MLOPS_SPOOL_DIR"] + "-script.py")
    with open(path, "w") as f:
        f.write(code)
    done = subprocess.run([sys.executable, path, method], env=child_env(**sdk_env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    for i in range(4):
        assert [p.step for p in history(run_id, f"w{i}")] == list(range(200))
    assert len(history(run_id, "parent")) == 2
    assert mlops.Run(run_id).info().status == mpb.FINISHED


def test_a_dataloader_style_worker_pool_logs_to_the_parents_run(server, sdk_env):
    # Workers forked once, fed batches through a queue (multiprocessing.Pool), each logging what
    # it loaded, as a PyTorch DataLoader's workers would; the parent trains and logs meanwhile.
    code = """
import multiprocessing as mp, mlops

_run = None

def init(run):
    global _run
    _run = run

def load(batch):
    _run.log_metric("loaded", batch, step=batch)
    return batch * 2

if __name__ == "__main__":
    with mlops.start_run(experiment="py-loader", record_source=False) as run:
        with mp.get_context("fork").Pool(3, initializer=init, initargs=(run,)) as pool:
            for step, out in enumerate(pool.imap(load, range(300))):
                run.log_metric("trained", out, step=step)
            pool.close()
            pool.join()
    print(run.id)
"""
    path = os.path.join(sdk_env["MLOPS_SPOOL_DIR"] + "-loader.py")
    with open(path, "w") as f:
        f.write(code)
    done = subprocess.run([sys.executable, path], env=child_env(**sdk_env), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    assert [p.step for p in history(run_id, "loaded")] == list(range(300))
    assert [p.value for p in history(run_id, "trained")] == [2.0 * i for i in range(300)]
