#!/usr/bin/env python3
"""The Python SDK benchmark: `python/bench.py --json` prints one flat JSON object of figures.

  sdk_enqueue_p99_us        p99 of one log_metric call while the sender is busy sending
  sdk_enqueue_p50_us
  sdk_points_per_s          points per second from one process, logged and acknowledged
  sdk_training_overhead_pct a CPU-bound numpy loop at 1,000 steps/s (its work calibrated to that
                            on the machine at hand) logging 10 metrics per step,
                            against the same loop without logging: the median over 41 adjacent
                            pairs of rounds of their wall-time ratio (..._cpu_pct: of the
                            process's CPU time, the sender thread's included)
  sdk_log_call_pct_of_step  the time spent inside the log calls (the dict of 10 metrics built
                            and logged) as a share of the logged loop's time: the direct count
                            of the main thread's cost, free of the pairs' noise (median)
  sync_training_overhead_pct the same loop with MLflow-style synchronous unary calls per metric
  floor_unary_log_us        the floor: one synchronous unary LogBatch of one point (median)
  enqueue_vs_unary_ratio    floor_unary_log_us / sdk_enqueue_p50_us
  sdk_outage_points_lost    points missing after a server outage of --outage_s seconds (0)

It starts its own mlops-server (MLOPS_BUILD_DIR, default build/default) on loopback, with data in
a temp dir. Run with PYTHONPATH=build/default/python /usr/bin/python3 python/bench.py --json.
"""
import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
# python/ (this script's directory) holds the sources without their generated stubs: import the
# package from PYTHONPATH (the build tree or an install) instead.
sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != ROOT / "python"]


class Server:
    def __init__(self, binary: pathlib.Path, directory: str) -> None:
        self.binary, self.directory, self.port, self.process = binary, directory, 0, None

    def start(self) -> None:
        ports = os.path.join(self.directory, "ports")
        if os.path.exists(ports):
            os.unlink(ports)
        log = open(os.path.join(self.directory, "server.log"), "ab")
        self.process = subprocess.Popen(
            [str(self.binary), "--host=127.0.0.1", f"--port={self.port}", "--metrics_port=0",
             f"--data_dir={self.directory}/data", f"--port_file={ports}", "--shutdown_grace_s=1"],
            stdout=log, stderr=log)
        for _ in range(1500):
            if os.path.exists(ports) and len(open(ports).read().split()) >= 2:
                self.port = int(open(ports).read().split()[0])
                return
            time.sleep(0.02)
        raise SystemExit("mlops-server did not start")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


WORK_ROUNDS = 6  # set by calibrate() so that a step takes a millisecond on this machine


def step_work(state: np.ndarray) -> np.ndarray:
    # The training step of the overhead benchmark: numpy on one core, WORK_ROUNDS rounds.
    for _ in range(WORK_ROUNDS):
        state = np.tanh(state @ state.T @ state * 1e-3)
    return state


def calibrate(target_s: float = 1e-3) -> None:
    """Sets WORK_ROUNDS so that a step takes `target_s` (the issue's 1,000 steps/s): the median of
    five timings of 200 steps at the current count, scaled."""
    global WORK_ROUNDS
    for _ in range(3):  # rescaling twice absorbs the per-step overhead that does not scale
        per_step = statistics.median(timed_loop(200, None) / 200 for _ in range(5))
        WORK_ROUNDS = max(1, round(WORK_ROUNDS * target_s / per_step))


def timed_loop(steps: int, log) -> float:
    state = np.random.default_rng(0).standard_normal((64, 64))
    start = time.perf_counter()
    for step in range(steps):
        state = step_work(state)
        if log is not None:
            log(step, float(state[0, 0]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--outage_s", type=float, default=60)
    args = parser.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    build = pathlib.Path(os.environ.get("MLOPS_BUILD_DIR", ROOT / "build" / "default"))
    scratch = tempfile.mkdtemp(prefix="mlops-pybench-")
    server = Server(build / "tools" / "server" / "mlops-server", scratch)
    server.start()
    figures = {}
    try:  # the server is stopped whatever fails, the import included
        os.environ["MLOPS_SPOOL_DIR"] = os.path.join(scratch, "spool")
        import mlops
        from mlops.metadata.v1 import metadata_pb2 as mpb
        from mlops.tracking import connection
        mlops.set_server(f"127.0.0.1:{server.port}")
        # Throughput and enqueue latency while the sender works.
        run = mlops.start_run(experiment="bench", record_source=False)
        keys = [f"m{i}" for i in range(10)]
        latencies = []
        clock = time.perf_counter_ns
        start = time.perf_counter()
        for i in range(args.points // 10):
            values = {k: float(i) for k in keys}
            before = clock()
            run.log_metrics(values, step=i)
            latencies.append(clock() - before)
        assert run.flush(600)
        elapsed = time.perf_counter() - start
        figures["sdk_points_per_s"] = round(args.points / elapsed)
        # Single-point calls, timed alone (the p99 the issue names is per log call).
        single = []
        for i in range(200_000):
            before = clock()
            run.log_metric("single", 1.0, step=i)
            single.append(clock() - before)
        assert run.flush(600)
        single.sort()
        figures["sdk_enqueue_p50_us"] = round(single[len(single) // 2] / 1000, 2)
        figures["sdk_enqueue_p99_us"] = round(single[int(len(single) * 0.99)] / 1000, 2)
        latencies.sort()
        figures["sdk_log_metrics10_p99_us"] = round(latencies[int(len(latencies) * 0.99)] / 1000, 2)
        say(f"throughput {figures['sdk_points_per_s']} points/s, enqueue p99 "
            f"{figures['sdk_enqueue_p99_us']} us")

        # The floor: a synchronous unary LogBatch of one point.
        c = connection()
        unary = []
        for i in range(2000):
            request = mpb.LogBatchRequest(run_id=run.id, metrics=[mpb.Metric(key="sync", value=1,
                                                                             step=i)])
            before = clock()
            c.unary("metadata", "/mlops.metadata.v1.MetadataService/LogBatch", request,
                    mpb.LogBatchResponse)
            unary.append(clock() - before)
        figures["floor_unary_log_us"] = round(statistics.median(unary) / 1000, 1)
        figures["enqueue_vs_unary_ratio"] = round(
            figures["floor_unary_log_us"] / max(figures["sdk_enqueue_p50_us"], 0.01), 1)

        # Training overhead: alternate rounds without and with logging.
        spent = [0]

        def async_log(step, value):
            before = clock()
            run.log_metrics({k: value for k in keys}, step=step)
            spent[0] += clock() - before

        def sync_log(step, value):
            for k in keys:
                c.unary("metadata", "/mlops.metadata.v1.MetadataService/LogBatch",
                        mpb.LogBatchRequest(run_id=run.id, metrics=[mpb.Metric(
                            key="s" + k, value=value, step=step)]), mpb.LogBatchResponse)

        # Adjacent pairs (plain, then logged) cancel the machine's slow drift; the figure is the
        # median of the pairs' ratios, by wall time and by the process's CPU time (which counts
        # the sender thread too).
        ratios, cpu_ratios, sync_ratios, plain, call_shares = [], [], [], [], []
        calibrate()
        for _ in range(args.rounds):
            cpu0 = time.process_time()
            wall_plain = timed_loop(args.steps, None)
            cpu1 = time.process_time()
            spent[0] = 0
            wall_logged = timed_loop(args.steps, async_log)
            cpu2 = time.process_time()
            call_shares.append(spent[0] / 1e9 / wall_logged)
            plain.append(wall_plain)
            ratios.append(wall_logged / wall_plain)
            cpu_ratios.append((cpu2 - cpu1) / (cpu1 - cpu0))
            if len(ratios) % 4 == 1:  # the synchronous loop is slow, and far from the others
                sync_steps = max(100, args.steps // 10)
                sync_ratios.append(timed_loop(sync_steps, sync_log) * args.steps / sync_steps /
                                   wall_plain)
        assert run.flush(600)
        figures["training_steps_per_s"] = round(args.steps / statistics.median(plain))
        figures["sdk_training_overhead_pct"] = round(100 * (statistics.median(ratios) - 1), 2)
        figures["sdk_training_overhead_cpu_pct"] = round(
            100 * (statistics.median(cpu_ratios) - 1), 2)
        figures["sdk_log_call_pct_of_step"] = round(100 * statistics.median(call_shares), 3)
        figures["sync_training_overhead_pct"] = round(100 * (statistics.median(sync_ratios) - 1),
                                                      1)
        run.end()
        say(f"overhead {figures['sdk_training_overhead_pct']}% (sync "
            f"{figures['sync_training_overhead_pct']}%)")

        # An outage: the server is killed for outage_s seconds while a run logs 100 points/s.
        outage = mlops.start_run(experiment="bench", record_source=False)
        logged_points = 0
        t0 = time.monotonic()
        killed = restarted = False
        while time.monotonic() - t0 < args.outage_s + 10:
            outage.log_metric("x", 1.0, step=logged_points)
            logged_points += 1
            now = time.monotonic() - t0
            if not killed and now > 3:
                server.kill9()
                killed = True
            if killed and not restarted and now > 3 + args.outage_s:
                server.start()
                restarted = True
            time.sleep(0.01)
        assert outage.end(timeout=300)
        history = c.unary("metadata", "/mlops.metadata.v1.MetadataService/GetMetricHistory",
                          mpb.GetMetricHistoryRequest(run_id=outage.id, key="x",
                                                      page_size=100000),
                          mpb.GetMetricHistoryResponse)
        figures["sdk_outage_s"] = args.outage_s
        figures["sdk_outage_points_logged"] = logged_points
        figures["sdk_outage_points_lost"] = logged_points - len(history.metrics)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
