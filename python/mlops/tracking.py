"""Runs: start one, log params, tags, metrics and artifacts to it, end it.

The active run is per thread and per asyncio task (a contextvars.ContextVar): a thread or task
that starts a run sees its own, and a task created inside `with start_run()` sees that one. A
forked child (os.fork, multiprocessing fork or forkserver, a DataLoader worker) starts with no
active run, its own sender and its own channels; it logs to its parent's run when given the Run
object (which also pickles for spawn). Only the process that started a run ends it.
"""
from __future__ import annotations

import array
import atexit
import contextvars
import math
import multiprocessing.util
import operator
import os
import re
import signal
import sys
import threading
import time
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from . import errors
from ._client import Connection, method
from ._sender import Sender
from .metadata.v1 import metadata_pb2 as mpb

_KEY = re.compile(r"[A-Za-z0-9_\-./: ]{1,250}")
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_INT64 = (-(1 << 63), (1 << 63) - 1)
_STATUS = {"RUNNING": mpb.RUNNING, "FINISHED": mpb.FINISHED, "FAILED": mpb.FAILED,
           "KILLED": mpb.KILLED}

_lock = threading.RLock()
_connection: Optional[Connection] = None
_connection_args: Dict[str, Any] = {}
_sender: Optional[Sender] = None
_sender_pid = 0
_active: contextvars.ContextVar[Tuple["Run", ...]] = contextvars.ContextVar("mlops_active_runs",
                                                                            default=())
_started: List["Run"] = []  # runs this process started and has not ended
_attached_env_run = False   # MLOPS_RUN_ID was taken by a start_run of this process
_exit_status: Optional[str] = None  # KILLED after SIGTERM/SIGINT, FAILED after an uncaught error
_handlers_installed = False


def _md(name: str) -> str:
    return method("metadata", "MetadataService", name)


def set_server(server: Optional[str] = None, *, token: Optional[str] = None,
               token_file: Optional[str] = None, ca: Optional[str] = None,
               cert: Optional[str] = None, key: Optional[str] = None,
               project: Optional[str] = None) -> None:
    """Where the services are and how to reach them (defaults: the MLOPS_* variables, as the CLI).
    Call it before the first run; later calls apply to runs started after them."""
    global _connection, _connection_args
    args = dict(server=server, token=token, token_file=token_file, ca=ca, cert=cert, key=key,
                project=project)
    connection = Connection(**args)
    global _sender
    with _lock:
        _connection, _connection_args = connection, args
        old, _sender = (_sender if _sender_pid == os.getpid() else None), None
    if old is not None:  # what it holds goes where it was logged to
        old.stop(float(os.environ.get("MLOPS_END_TIMEOUT_S", 10)))


def connection() -> Connection:
    global _connection
    with _lock:
        if _connection is None:
            _connection = Connection(**_connection_args)
        return _connection


def _the_sender() -> Sender:
    global _sender, _sender_pid
    sender = _sender
    if sender is not None:  # a forked child starts with none (_after_fork_in_child)
        return sender
    with _lock:
        if _sender is None or _sender_pid != os.getpid():
            env = os.environ
            _sender = Sender(
                connection(),
                max_buffer_bytes=int(env.get("MLOPS_BUFFER_BYTES", 64 << 20)),
                max_spool_bytes=int(env.get("MLOPS_SPOOL_MAX_BYTES", 4 << 30)),
                interval=float(env.get("MLOPS_FLUSH_INTERVAL_S", 0.5)),
                send_timeout=float(env.get("MLOPS_SEND_TIMEOUT_S", 10)))
            _sender_pid = os.getpid()
            # multiprocessing children leave through os._exit, which skips atexit.
            multiprocessing.util.Finalize(None, _at_exit, exitpriority=100)
        return _sender


def _after_fork_in_child() -> None:
    # The parent's sender thread, buffer, lock and channels are not ours: start afresh.
    global _sender, _sender_pid, _lock, _attached_env_run
    _lock = threading.RLock()
    _sender, _sender_pid = None, 0
    _started.clear()
    _active.set(())
    if _connection is not None:
        _connection.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_key(what: str, key: Any) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise errors.InvalidArgument(
            f"{what} key {key!r}: 1 to 250 characters of letters, digits and _ - . / : space")
    return key


def _param_value(key: str, value: Any, limit: int, what: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, (bool, int, float)) or type(value).__module__ == "numpy":
        text = str(value.item() if hasattr(value, "item") else value)
    else:
        raise errors.InvalidArgument(
            f"{what} {key!r}: a {type(value).__name__}; give a string or a number")
    if len(text.encode()) > limit:
        raise errors.InvalidArgument(f"{what} {key!r}: longer than {limit} bytes")
    return text


def _step(step: Any) -> int:
    try:
        value = operator.index(step)
    except TypeError:
        raise errors.InvalidArgument(f"step {step!r}: must be an integer") from None
    if not _INT64[0] <= value <= _INT64[1]:
        raise errors.InvalidArgument(f"step {value}: outside the 64-bit range")
    return value


def _value(key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise errors.InvalidArgument(
            f"metric {key!r}: {value!r} is not a number") from None


class Run:
    """A run of the metadata service. Logging is asynchronous (see the mlops._sender docs)."""

    def __init__(self, run_id: str, experiment_id: str = "", name: str = "", *,
                 owner: bool = False, attached: bool = False,
                 connection_args: Optional[Dict[str, Any]] = None) -> None:
        self.id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self._owner_pid = os.getpid() if owner else 0
        self._attached = attached  # the run of the `mlops run` around this process: not ours to end
        self._connection_args = connection_args
        self._ended = False
        self._params: Dict[str, str] = {}
        self._next_step: Dict[str, int] = {}
        self._key_sets: Set[Tuple[str, ...]] = set()  # of metrics, validated
        self._outputs: List[str] = []
        self._work_dir = os.getcwd()
        self._token: Optional[contextvars.Token] = None

    def __repr__(self) -> str:
        return f"<mlops.Run {self.id}>"

    def __reduce__(self):
        return (_unpickle_run, (self.id, self.experiment_id, self.name, _connection_args))

    # ---- logging ----

    def log_metric(self, key: str, value: float, step: Optional[int] = None,
                   timestamp_ms: Optional[int] = None) -> None:
        """Appends a point; `step` defaults to the next step of that key in this process (0, 1,
        ...), `timestamp_ms` to now. NaN and infinities are values. Raises InvalidArgument for a
        bad key, a value that is not a number, or a step that is not an integer."""
        self.log_metrics({key: value}, step, timestamp_ms)

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None,
                    timestamp_ms: Optional[int] = None) -> None:
        """log_metric for every item, at one step and time."""
        # The hot path of a training loop: one row of values for the set of keys (validated once
        # per set), no work per key beyond the default steps.
        if type(metrics) is dict:
            keys = tuple(metrics)
            values = metrics.values()
        else:
            items = list(metrics.items())
            keys = tuple(key for key, _ in items)
            values = [value for _, value in items]
        if not keys:
            return
        if keys not in self._key_sets:
            self._check_key_set(keys)
        next_step = self._next_step
        if step is None:
            step = max([next_step.get(key, 0) for key in keys])
        elif type(step) is not int or not _INT64[0] <= step <= _INT64[1]:
            step = _step(step)
        stamp = time.time_ns() // 1000000 if timestamp_ms is None else _step(timestamp_ms)
        try:  # the sender's row takes the values as they are when all are numbers
            _the_sender().log_points(self.id, keys, values, step, stamp)
        except (TypeError, OverflowError):  # strings of numbers, or not numbers (raises)
            row = array.array("d", [_value(key, value) for key, value in zip(keys, values)])
            _the_sender().log_points(self.id, keys, row, step, stamp)
        next_step.update(dict.fromkeys(keys, step + 1))

    def _check_key_set(self, keys: Tuple[str, ...]) -> None:
        for key in keys:
            _check_key("metric", key)
        if len(self._key_sets) >= 4096:  # sets of keys that change every call: keep it bounded
            self._key_sets.clear()
        self._key_sets.add(keys)

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are immutable: FailedPrecondition at once when this process logged the key with
        another value; when another process did, the error is raised by flush() or the run's end.
        Values are strings, or numbers (logged as str(value)); anything else is InvalidArgument."""
        clean = {}
        for key, value in params.items():
            text = _param_value(_check_key("param", key), value, _MAX_PARAM_VALUE, "param")
            old = self._params.get(key)
            if old is not None and old != text:
                raise errors.FailedPrecondition(
                    f"param {key!r} of run {self.id} is already {old!r}; params are immutable "
                    f"(tried {text!r})")
            clean[key] = text
        self._params.update(clean)
        if clean:
            _the_sender().log_entries(self.id, clean, {})

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        clean = {_check_key("tag", k): _param_value(k, v, _MAX_TAG_VALUE, "tag")
                 for k, v in tags.items()}
        if clean:
            _the_sender().log_entries(self.id, {}, clean)

    def log_artifact(self, path: str, name: Optional[str] = None) -> str:
        """Stores the file `path` in the artifact service (chunked, deduplicated; only chunks the
        server lacks are sent) and tags the run with mlops.artifact.<name> = its digest (name:
        the file's name). Returns "sha256:<hex>". Synchronous."""
        from ._artifacts import Artifacts
        name = name or os.path.basename(path)
        _check_key("artifact", "mlops.artifact." + name)
        blob = Artifacts(connection()).upload_file(path)
        digest = "sha256:" + blob.digest
        self.set_tags({"mlops.artifact." + name: digest})
        return digest

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until everything logged so far is acknowledged by the server: True, or False when
        `timeout` passed first (the rest stays queued or spooled and is sent later). Raises the
        error of a batch the server refused since the last flush."""
        return _the_sender().flush(timeout)

    def info(self) -> mpb.Run:
        """The run as the server has it now (GetRun)."""
        return connection().unary("metadata", _md("GetRun"), mpb.GetRunRequest(run_id=self.id),
                                  mpb.Run)

    # ---- ending ----

    def end(self, status: str = "FINISHED", timeout: Optional[float] = None) -> bool:
        """Ends the run with `status` (FINISHED, FAILED or KILLED) after everything logged to it.
        The end travels behind the points, so it is as lossless as they are; returns flush()'s
        answer (waiting at most `timeout`, default MLOPS_END_TIMEOUT_S or 10 s). A run that this
        process did not start (or the `mlops run` around it) is only flushed."""
        if status not in _STATUS or status == "RUNNING":
            raise errors.InvalidArgument(f"status {status!r}: FINISHED, FAILED or KILLED")
        if timeout is None:
            timeout = float(os.environ.get("MLOPS_END_TIMEOUT_S", 10))
        with _lock:
            if self._ended:
                return True
            self._ended = True
            if self in _started:
                _started.remove(self)
        active = _active.get()
        if self in active:  # no longer the active run of this thread or task
            _active.set(tuple(r for r in active if r is not self))
        if self._outputs:
            self._store_outputs()
        if self._owner_pid == os.getpid() and not self._attached:
            request = mpb.UpdateRunRequest(
                run=mpb.Run(id=self.id, status=_STATUS[status],
                            end_time_ms=time.time_ns() // 1000000))
            request.update_mask.paths.extend(["status", "end_time_ms"])
            _the_sender().end_run(request)
        return _the_sender().flush(timeout)

    def _store_outputs(self) -> None:
        # The declared outputs, by digest, as `mlops run` records them (mlops reproduce compares
        # them bit for bit).
        tags = {}
        for path in self._outputs:
            full = os.path.join(self._work_dir, path)
            if os.path.isfile(full):
                from ._artifacts import Artifacts
                tags["mlops.output." + path] = Artifacts(connection()).upload_file(full).digest
        if tags:
            self.set_tags(tags)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None or (issubclass(kind, SystemExit) and value.code in (None, 0)):
                status = "FINISHED"
            elif issubclass(kind, (KeyboardInterrupt, Terminated)):
                status = "KILLED"
            else:
                status = "FAILED"
            if kind is not None and status == "FAILED":
                self.set_tags({"mlops.message": f"{kind.__name__}: {value}"[:_MAX_TAG_VALUE]})
            self.end(status)
        finally:
            if self._token is not None:
                try:
                    _active.reset(self._token)
                except ValueError:  # ended in another context than it was started in
                    _active.set(tuple(r for r in _active.get() if r is not self))
                self._token = None


class Terminated(SystemExit):
    """Raised in the main thread by SIGTERM while a run is active: the run ends KILLED."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


def _unpickle_run(run_id: str, experiment_id: str, name: str,
                  args: Optional[Dict[str, Any]]) -> Run:
    global _connection, _connection_args
    if args and _connection is None and not _connection_args:
        _connection_args = dict(args)
    return Run(run_id, experiment_id, name)


def _experiment_id(name: str) -> str:
    c = connection()
    qualified = c.qualify(name)
    try:
        return c.unary("metadata", _md("GetExperimentByName"),
                       mpb.GetExperimentByNameRequest(name=qualified), mpb.Experiment).id
    except errors.NotFound:
        pass
    try:
        return c.unary("metadata", _md("CreateExperiment"),
                       mpb.CreateExperimentRequest(name=qualified), mpb.Experiment).id
    except errors.AlreadyExists:  # made by another process meanwhile
        return c.unary("metadata", _md("GetExperimentByName"),
                       mpb.GetExperimentByNameRequest(name=qualified), mpb.Experiment).id


def _record_source(source: mpb.RunSource, outputs: List[str]) -> str:
    from . import _source
    from ._artifacts import Artifacts
    artifacts = Artifacts(connection())
    work_dir = os.getcwd()
    source.command.extend([sys.executable, *sys.argv])
    source.working_dir = work_dir
    code, top, patch, warning = _source.snapshot_code(work_dir, outputs)
    if warning:
        print(f"mlops: warning: {warning}", file=sys.stderr)
    source.code.CopyFrom(code)
    if patch:
        source.code.dirty = True
        source.code.diff_digest = "sha256:" + artifacts.upload_bytes(patch).digest
    source.environment.update(_source.capture_environment())
    if os.environ.get("MLOPS_IMAGE_DIGEST"):
        source.image_digest = os.environ["MLOPS_IMAGE_DIGEST"]
    for key, path in _source.lockfiles(work_dir, top):
        source.dependency_digests[key] = "sha256:" + artifacts.upload_file(path).digest
    source.dependency_digests["python:installed"] = (
        "sha256:" + artifacts.upload_bytes(_source.installed_distributions()).digest)
    return os.path.relpath(work_dir, top) if top else ""


def start_run(experiment: Optional[str] = None, *, name: str = "",
              params: Optional[Mapping[str, Any]] = None,
              tags: Optional[Mapping[str, Any]] = None, outputs: Iterable[str] = (),
              nested: bool = False, run_id: Optional[str] = None,
              record_source: bool = True) -> Run:
    """Starts a run and makes it the active run of this thread or task; use it as a context
    manager (`with mlops.start_run(...) as run:`), which ends it FINISHED, FAILED when the block
    raises, KILLED on SIGINT or SIGTERM. Without `with`, call run.end() (or it ends when the
    process exits).

    experiment: its name (created when missing; default MLOPS_EXPERIMENT or "default").
    params, tags: logged with the run. outputs: files (relative to the working directory) stored
    and recorded by digest when the run ends, as `mlops run --output` does.
    nested: start a child of the active run (tag mlops.parent_run_id); without it, starting a run
    while one is active is FailedPrecondition. run_id: log to that existing run instead.
    record_source: record code, command, environment and dependencies (what `mlops reproduce`
    needs). Under `mlops run` (MLOPS_RUN_ID set) the first start_run logs to that run.
    """
    global _attached_env_run
    _install_handlers()
    active = _active.get()
    if active and not nested:
        raise errors.FailedPrecondition(
            f"run {active[-1].id} is active in this thread; end it first or pass nested=True")
    params = dict(params or {})
    tags = {k: v for k, v in (tags or {}).items()}
    outputs = list(outputs)
    c = connection()
    env_run = os.environ.get("MLOPS_RUN_ID")
    if run_id is None and env_run and not active and not _attached_env_run:
        _attached_env_run = True
        run = Run(env_run, os.environ.get("MLOPS_EXPERIMENT_ID", ""), owner=True, attached=True)
    elif run_id is not None:
        got = c.unary("metadata", _md("GetRun"), mpb.GetRunRequest(run_id=run_id), mpb.Run)
        run = Run(got.id, got.experiment_id, got.name, owner=True)
    else:
        experiment = experiment or os.environ.get("MLOPS_EXPERIMENT") or "default"
        experiment_id = _patiently(lambda: _experiment_id(experiment))
        request = mpb.CreateRunRequest(experiment_id=experiment_id, name=name,
                                       request_id=uuid.uuid4().hex)
        for key, value in params.items():
            request.params[_check_key("param", key)] = _param_value(key, value,
                                                                    _MAX_PARAM_VALUE, "param")
        for key, value in tags.items():
            request.tags[_check_key("tag", key)] = _param_value(key, value, _MAX_TAG_VALUE, "tag")
        if active:
            request.tags["mlops.parent_run_id"] = active[-1].id
        if outputs:
            request.tags["mlops.outputs"] = ",".join(outputs)
        if record_source:
            repo_path = _record_source(request.source, outputs)
            if repo_path:
                request.tags["mlops.repo_path"] = repo_path
        created = _create_run(c, request)
        run = Run(created.id, created.experiment_id, created.name, owner=True)
        run._params.update(request.params)
        params, tags = {}, {}
    run._outputs = outputs
    if params:
        run.log_params(params)
    if tags:
        run.set_tags(tags)
    run._token = _active.set(active + (run,))
    with _lock:
        _started.append(run)
    return run


def _patiently(call):
    # Starting a run waits for a server that is away for up to MLOPS_START_TIMEOUT_S (default
    # 60 s); CreateRun's request id makes a retry after a lost answer return the same run.
    deadline = time.monotonic() + float(os.environ.get("MLOPS_START_TIMEOUT_S", 60))
    pause = 0.1
    while True:
        try:
            return call()
        except (errors.Unavailable, errors.DeadlineExceeded):
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2.0, pause * 2)


def _create_run(c: Connection, request: mpb.CreateRunRequest) -> mpb.Run:
    return _patiently(lambda: c.unary("metadata", _md("CreateRun"), request, mpb.Run))


def active_run() -> Optional[Run]:
    """The innermost active run of this thread or task, or None."""
    active = _active.get()
    return active[-1] if active else None


def _need_run() -> Run:
    run = active_run()
    if run is None:
        raise errors.FailedPrecondition("no active run: call mlops.start_run() first")
    return run


def log_metric(key: str, value: float, step: Optional[int] = None) -> None:
    _need_run().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: Optional[int] = None) -> None:
    _need_run().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    _need_run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _need_run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _need_run().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _need_run().set_tags(tags)


def log_artifact(path: str, name: Optional[str] = None) -> str:
    return _need_run().log_artifact(path, name)


def end_run(status: str = "FINISHED") -> None:
    """Ends the active run of this thread or task."""
    _need_run().end(status)


def flush(timeout: Optional[float] = None) -> bool:
    """Waits until everything this process logged is acknowledged (see Run.flush). Also replays
    the spool files that processes which died left behind."""
    return _the_sender().flush(timeout)


# ---- process exit and signals ----

def _at_exit() -> None:
    if _sender is None or _sender_pid != os.getpid():
        return
    status = _exit_status or "FINISHED"
    for run in list(_started):
        try:
            run.end(status, timeout=0)
        except errors.MlopsError as e:
            print(f"mlops: ending run {run.id}: {e}", file=sys.stderr)
    timeout = float(os.environ.get("MLOPS_EXIT_TIMEOUT_S", 10))
    if not _sender.stop(timeout) and _sender.pending_spool:
        print(f"mlops: the server did not take everything within {timeout:g} s; the rest is in "
              f"{_sender.directory} and is sent by the next process that logs", file=sys.stderr)


atexit.register(_at_exit)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def on_term(signum, frame):
            global _exit_status
            _exit_status = "KILLED"
            raise Terminated()
        signal.signal(signal.SIGTERM, on_term)
    previous = sys.excepthook

    def hook(kind, value, traceback):
        global _exit_status
        if _exit_status is None:
            _exit_status = "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        previous(kind, value, traceback)
    sys.excepthook = hook
