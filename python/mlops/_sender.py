"""The background sender: logging that never slows the training loop and never loses a point.

A log call only appends to this process's buffer (arrays per run and metric key, dicts of params
and tags) under one lock. One sender thread per process wakes every `interval` seconds (or when
the buffer is half full, or on flush), takes the whole buffer, encodes it into LogBatch requests
of at most 10,000 points (the MetricSeries form: arrays copied as bytes, no message per point)
numbered with this process's writer id and an increasing sequence, and sends them in order.

When a send fails for a reason that passes (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
ABORTED, CANCELLED), that batch and every later one go to this process's spool file,
$MLOPS_SPOOL_DIR or ~/.mlops/spool/<writer>.spool (0600 in a 0700 directory), in order; the
sender retries the oldest with a growing pause (0.1 s to 2 s) and, once the server answers,
replays the spool in order and removes it. The server applies each (writer, sequence) once, so a
batch sent again after an answer that never came is not applied twice. A spool left by a process
that died (its lock is free) is replayed by the next process that logs. The end of a run
(UpdateRun) travels in the same ordered stream, after the run's points.

Bounds: the buffer holds at most `max_buffer_bytes` (64 MiB); over it a log call waits until the
sender has taken the buffer (sent or spooled). The spool holds at most `max_spool_bytes` (4 GiB);
when it is full the sender stops taking the buffer, so log calls wait: back-pressure only then.
A batch the server refuses for good (INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, ...) is
dropped and its error raised by the next flush() (and by the end of the run).
"""
from __future__ import annotations

import array
import errno
import fcntl
import glob
import os
import struct
import sys
import threading
import time
import uuid
import zlib
from typing import Collection, Dict, List, Optional, Tuple

import grpc
import numpy as np

from . import errors
from ._client import Connection, method
from .metadata.v1 import metadata_pb2

MAX_POINTS_PER_BATCH = 10000
MAX_ENTRIES_PER_BATCH = 1000  # params, and tags, per LogBatch (the server's limits)
_LOG_BATCH = method("metadata", "MetadataService", "LogBatch")
_UPDATE_RUN = method("metadata", "MetadataService", "UpdateRun")
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
              grpc.StatusCode.CANCELLED}
_KIND_LOG = 1
_KIND_UPDATE_RUN = 2
# A spool record: payload length, CRC-32 of kind + payload, kind; then the payload (a serialized
# LogBatchRequest or UpdateRunRequest).
_RECORD = struct.Struct("<IIB")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def append_series(out: bytearray, key: bytes, values: np.ndarray, steps: np.ndarray,
                  stamps: np.ndarray) -> None:
    """Appends to `out` LogBatchRequest field 5 (a MetricSeries) holding these points, encoded by
    hand: the arrays (contiguous, little-endian 8-byte values: packed double and sfixed64) are
    copied in as they are, once."""
    length = _varint(8 * len(values))
    packed = 3 * (1 + len(length) + 8 * len(values))
    key_length = _varint(len(key))
    out += b"\x2a" + _varint(1 + len(key_length) + len(key) + packed)
    out += b"\x0a" + key_length + key
    out += b"\x12" + length
    out += memoryview(values).cast("B")
    out += b"\x1a" + length
    out += memoryview(steps).cast("B")
    out += b"\x22" + length
    out += memoryview(stamps).cast("B")


class _Rows:
    """The points of the log calls of one run with the same keys, in call order: one row of
    values per call (row-major, len(keys) values a row), its step and its time. The sender turns
    the rows into one series per key (a transposition), so a log call does no work per key."""
    __slots__ = ("values", "steps", "stamps")

    def __init__(self) -> None:
        self.values = array.array("d")
        self.steps = array.array("q")
        self.stamps = array.array("q")


class _RunBuffer:
    __slots__ = ("rows", "params", "tags")

    def __init__(self) -> None:
        self.rows: Dict[Tuple[str, ...], _Rows] = {}
        self.params: Dict[str, str] = {}
        self.tags: Dict[str, str] = {}


def _series(run: _RunBuffer) -> List[Tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int]]:
    """(key, values, steps, stamps, 0) per key and set of keys, the points in call order (the
    last item is where the points not yet sent start)."""
    out = []
    for keys, rows in run.rows.items():
        if not rows.steps:
            continue  # made by a call whose values were refused
        steps = np.frombuffer(rows.steps, dtype=np.int64).astype("<i8", copy=False)
        stamps = np.frombuffer(rows.stamps, dtype=np.int64).astype("<i8", copy=False)
        # One copy turns the rows into contiguous columns, one per key.
        columns = np.ascontiguousarray(
            np.frombuffer(rows.values, dtype=np.float64).reshape(len(steps), len(keys)).T,
            dtype="<f8")
        for key, column in zip(keys, columns):
            out.append((key.encode(), column, steps, stamps, 0))
    return out


class _Spool:
    """An append-only file of records, read from the front; locked (flock) while its owner lives."""

    def __init__(self, path: str, create: bool) -> None:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        self.path = path
        self.fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise
        self.offset = 0
        self.size = os.fstat(self.fd).st_size

    def append(self, kind: int, payload: bytes) -> None:
        body = bytes((kind,)) + payload
        record = _RECORD.pack(len(payload), zlib.crc32(body), kind) + payload
        written = os.write(self.fd, record)
        if written != len(record):
            raise OSError(errno.ENOSPC, f"short write to {self.path}")
        self.size += len(record)

    def peek(self) -> Optional[Tuple[int, bytes, int]]:
        """The record at the read offset: (kind, payload, next offset); None at the end or at a
        torn last record (its writer died while writing it)."""
        header = os.pread(self.fd, _RECORD.size, self.offset)
        if len(header) < _RECORD.size:
            return None
        length, crc, kind = _RECORD.unpack(header)
        payload = os.pread(self.fd, length, self.offset + _RECORD.size)
        if len(payload) < length or zlib.crc32(bytes((kind,)) + payload) != crc:
            return None
        return kind, payload, self.offset + _RECORD.size + length

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        finally:
            os.close(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def spool_dir() -> str:
    return os.environ.get("MLOPS_SPOOL_DIR") or os.path.join(os.path.expanduser("~"), ".mlops",
                                                               "spool")


class Sender:
    """One per process (see module doc); made by the first log call, never inherited by a fork."""

    def __init__(self, connection: Connection, *, max_buffer_bytes: int = 64 << 20,
                 max_spool_bytes: int = 4 << 30, interval: float = 0.5,
                 send_timeout: float = 10.0, directory: Optional[str] = None) -> None:
        self.connection = connection
        self.writer = "py-" + uuid.uuid4().hex
        self.max_buffer_bytes = max_buffer_bytes
        self.max_spool_bytes = max_spool_bytes
        self.interval = interval
        self.send_timeout = send_timeout
        self.directory = directory or spool_dir()
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # log calls waiting for room
        self._done = threading.Condition(self._lock)   # flush calls waiting for the sender
        self._wake = threading.Event()
        self._runs: Dict[str, _RunBuffer] = {}
        self._ends: List[bytes] = []
        self._bytes = 0
        self._half_buffer = max_buffer_bytes // 2
        self._tickets = 0      # flush requests so far
        self._served = 0       # the flush requests whose data the server has acknowledged
        self._errors: List[errors.MlopsError] = []
        self._stopping = False
        self._sequence = 0
        self._spool: Optional[_Spool] = None
        self._orphans: List[_Spool] = []
        self._pause = 0.0
        self._retry_at = 0.0
        self.sent_batches = 0
        self.spooled_batches = 0
        self._thread = threading.Thread(target=self._run, name="mlops-sender", daemon=True)
        self._thread.start()

    # ---- called by the logging threads ----

    def _room(self, size: int) -> None:
        # Under self._lock. Waits while the buffer is over its budget (the sender empties it).
        self._bytes += size
        if self._bytes > self.max_buffer_bytes // 2:
            self._wake.set()
            while self._bytes > self.max_buffer_bytes and not self._stopping:
                self._space.wait(1.0)

    def log_points(self, run_id: str, keys: Tuple[str, ...], values: Collection[float],
                   step: int, stamp: int) -> None:
        """Appends one row: the values of `keys` (in that order) at one step and time. Raises
        TypeError or OverflowError, appending nothing, when a value is not a float or an int."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                run = self._runs[run_id] = _RunBuffer()
            rows = run.rows.get(keys)
            if rows is None:
                rows = run.rows[keys] = _Rows()
                self._bytes += 100 + sum(map(len, keys))
            row_start = len(rows.values)
            try:
                rows.values.extend(values)
            except (TypeError, OverflowError):
                del rows.values[row_start:]
                raise
            rows.steps.append(step)
            rows.stamps.append(stamp)
            self._bytes += 16 + 8 * len(values)
            if self._bytes > self._half_buffer:
                self._room(0)

    def log_entries(self, run_id: str, params: Dict[str, str], tags: Dict[str, str]) -> None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                run = self._runs[run_id] = _RunBuffer()
            run.params.update(params)
            run.tags.update(tags)
            self._room(sum(100 + len(k) + len(v) for d in (params, tags) for k, v in d.items()))

    def end_run(self, request: metadata_pb2.UpdateRunRequest) -> None:
        payload = request.SerializeToString()
        with self._lock:
            self._ends.append(payload)
            self._room(len(payload))
        self._wake.set()

    def flush(self, timeout: Optional[float]) -> bool:
        """True once everything logged before the call is acknowledged by the server; False when
        `timeout` passed first (what is left stays in the buffer or the spool). Raises the first
        error of a batch the server refused for good since the last flush."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._tickets += 1
            ticket = self._tickets
            self._wake.set()
            while self._served < ticket and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._done.wait(left if left is not None else 1.0)
            done = self._served >= ticket
            failures, self._errors = self._errors, []
        if failures:
            raise failures[0]
        return done

    def stop(self, timeout: float) -> bool:
        """Flushes for up to `timeout` seconds, then spools what is left and ends the thread."""
        done = False
        try:
            done = self.flush(timeout)
        except errors.MlopsError as e:
            print(f"mlops: {e}", file=sys.stderr)
        with self._lock:
            self._stopping = True
            self._space.notify_all()
        self._wake.set()
        self._thread.join(timeout=max(5.0, timeout))
        return done

    @property
    def pending_spool(self) -> bool:
        return self._spool is not None

    # ---- the sender thread ----

    def _run(self) -> None:
        self._find_orphans()
        while True:
            self._wake.wait(self.interval if self._pause == 0 else min(self.interval, self._pause))
            self._wake.clear()
            with self._lock:
                stopping = self._stopping
            try:
                self._cycle(final=stopping)
            except Exception as e:  # noqa: BLE001 - the thread must not die with data in hand
                print(f"mlops: sender: {type(e).__name__}: {e}", file=sys.stderr)
                time.sleep(0.1)
            if stopping:
                return

    def _take(self) -> Tuple[Dict[str, _RunBuffer], List[bytes], int]:
        with self._lock:
            runs, ends, ticket = self._runs, self._ends, self._tickets
            self._runs, self._ends, self._bytes = {}, [], 0
            self._space.notify_all()
            return runs, ends, ticket

    def _cycle(self, final: bool) -> None:
        # Orphans first (their writers' points were logged before ours), then our own spool, then
        # what is new. While anything older waits, new batches join our spool behind it.
        if time.monotonic() >= self._retry_at:
            self._drain_orphans()
            self._drain_spool()
        spool_full = (self._spool is not None and
                      self._spool.size >= self.max_spool_bytes and not final)
        if spool_full:
            return  # the buffer stays: log calls wait once it is over its budget
        runs, ends, ticket = self._take()
        for kind, payload in self._encode(runs, ends):
            self._deliver(kind, payload, final)
        if self._spool is None and not self._orphans:
            with self._lock:
                self._served = max(self._served, ticket)
                self._done.notify_all()

    def _encode(self, runs: Dict[str, _RunBuffer], ends: List[bytes]):
        writer = self.writer
        for run_id, run in runs.items():
            params = list(run.params.items())
            tags = list(run.tags.items())
            series = _series(run)
            while params or tags or series:
                self._sequence += 1
                head = metadata_pb2.LogBatchRequest(
                    run_id=run_id, writer=writer, sequence=self._sequence,
                    params=dict(params[:MAX_ENTRIES_PER_BATCH]),
                    tags=dict(tags[:MAX_ENTRIES_PER_BATCH]))
                params = params[MAX_ENTRIES_PER_BATCH:]
                tags = tags[MAX_ENTRIES_PER_BATCH:]
                out = bytearray(head.SerializeToString())
                room = MAX_POINTS_PER_BATCH
                while series and room > 0:
                    key, values, steps, stamps, start = series[0]
                    n = min(len(values) - start, room)
                    if start + n < len(values):
                        series[0] = (key, values, steps, stamps, start + n)
                    else:
                        series.pop(0)
                    end = start + n
                    append_series(out, key, values[start:end], steps[start:end],
                                  stamps[start:end])
                    room -= n
                yield _KIND_LOG, bytes(out)
        for payload in ends:
            yield _KIND_UPDATE_RUN, payload

    def _send(self, kind: int, payload: bytes) -> bool:
        """True when the server has the record (or refused it for good: recorded, dropped); False
        when it should be sent again later."""
        try:
            if kind == _KIND_LOG:
                self.connection.unary_raw("metadata", _LOG_BATCH, payload,
                                          metadata_pb2.LogBatchResponse, self.send_timeout)
            else:
                self.connection.unary_raw("metadata", _UPDATE_RUN, payload, metadata_pb2.Run,
                                          self.send_timeout)
        except grpc.RpcError as e:
            if e.code() in _RETRYABLE:
                self._pause = min(2.0, max(0.1, self._pause * 2))
                self._retry_at = time.monotonic() + self._pause
                return False
            with self._lock:
                self._errors.append(errors.from_rpc_error(e))
        self._pause = 0.0
        self.sent_batches += 1
        return True

    def _deliver(self, kind: int, payload: bytes, final: bool) -> None:
        if self._spool is None and not self._orphans:
            if not final or time.monotonic() >= self._retry_at:
                if self._send(kind, payload):
                    return
        if self._spool is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._spool = _Spool(os.path.join(self.directory, self.writer + ".spool"), True)
        self._spool.append(kind, payload)
        self.spooled_batches += 1

    def _drain(self, spool: _Spool) -> bool:
        """Sends the spool's records from its read offset; True when all are acknowledged."""
        while True:
            record = spool.peek()
            if record is None:
                return True
            kind, payload, next_offset = record
            if not self._send(kind, payload):
                return False
            spool.offset = next_offset

    def _drain_spool(self) -> None:
        if self._spool is not None and not self._orphans and self._drain(self._spool):
            self._spool.remove()
            self._spool = None

    def _drain_orphans(self) -> None:
        while self._orphans:
            if not self._drain(self._orphans[0]):
                return
            self._orphans.pop(0).remove()

    def _find_orphans(self) -> None:
        for path in sorted(glob.glob(os.path.join(self.directory, "*.spool")),
                           key=lambda p: os.stat(p).st_mtime if os.path.exists(p) else 0):
            try:
                self._orphans.append(_Spool(path, False))
            except OSError:
                continue  # its writer lives (holds the lock) or it went away
