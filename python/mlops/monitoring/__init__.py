"""Monitoring from Python: a serving process hands rows to `ingest`, which batches them like the
tracking sender (a log call appends; one background thread sends IngestSamples streams every
0.5 s), so predictions are never slowed by the monitoring service.

(The generated stubs of mlops.monitoring.v1 live beside this file.)"""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .. import errors
from .._client import method
from ..tracking import connection
from .v1 import monitoring_pb2 as mon

_INGEST = method("monitoring", "MonitoringService", "IngestSamples")
_MAX_ROWS_BUFFERED = 1_000_000  # per process; over it the oldest rows are dropped and counted


class _Ingester:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.rows: Dict[Tuple, List[Tuple]] = {}
        self.count = 0
        self.dropped = 0
        self.errors: List[errors.MlopsError] = []
        self.wake = threading.Event()
        self.idle = threading.Condition(self.lock)
        self.sending = False
        self.thread = threading.Thread(target=self.loop, name="mlops-ingest", daemon=True)
        self.thread.start()

    def add(self, monitor: str, numeric: Sequence[str], categorical: Sequence[str],
            rows: List[Tuple]) -> None:
        # Rows with and without request ids or predictions travel in batches of their own.
        key = (monitor, tuple(numeric), tuple(categorical), rows[0][2] is not None,
               rows[0][3] is not None)
        with self.lock:
            self.rows.setdefault(key, []).extend(rows)
            self.count += len(rows)
            while self.count > _MAX_ROWS_BUFFERED:
                key = next(iter(self.rows))
                extra = min(len(self.rows[key]), self.count - _MAX_ROWS_BUFFERED)
                del self.rows[key][:extra]
                self.count -= extra
                self.dropped += extra

    def loop(self) -> None:
        while True:
            self.wake.wait(0.5)
            self.wake.clear()
            with self.lock:
                batches, self.rows, self.count = self.rows, {}, 0
                self.sending = True
            failed = {}
            for key, rows in batches.items():
                try:
                    self.send(key[0], key[1], key[2], rows)
                except errors.Unavailable:
                    failed[key] = rows  # kept for the next round
                except errors.MlopsError as e:
                    with self.lock:
                        self.errors.append(e)
            with self.lock:
                for key, rows in failed.items():
                    self.rows.setdefault(key, [])[:0] = rows
                    self.count += len(rows)
                self.sending = False
                self.idle.notify_all()

    @staticmethod
    def send(monitor: str, numeric: Tuple[str, ...], categorical: Tuple[str, ...],
             rows: List[Tuple]) -> None:
        def batches():
            for start in range(0, len(rows), 10000):
                part = rows[start:start + 10000]
                batch = mon.SampleBatch()
                if start == 0:
                    batch.monitor = connection().qualify(monitor)
                    batch.numeric_columns.extend(numeric)
                    batch.categorical_columns.extend(categorical)
                for values, labels, request_id, prediction in part:
                    batch.numeric.extend(values)
                    batch.categorical.extend(labels)
                    if request_id is not None:
                        batch.request_ids.append(request_id)
                    if prediction is not None:
                        batch.predictions.append(prediction)
                yield batch
        connection().client_stream("monitoring", _INGEST, batches(), mon.IngestSamplesResponse,
                                   timeout=60)

    def flush(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.wake.set()
        with self.lock:
            while self.count or self.sending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.wake.set()
                self.idle.wait(min(left, 0.5) if left is not None else 0.5)
            done = not self.count and not self.sending
            failures, self.errors = self.errors, []
        if failures:
            raise failures[0]
        return done


_ingester: Optional[_Ingester] = None
_lock = threading.Lock()


def _the_ingester() -> _Ingester:
    global _ingester
    with _lock:
        if _ingester is None or _ingester.pid != os.getpid():
            _ingester = _Ingester()
        return _ingester


def ingest(monitor: str, rows: Iterable[Mapping[str, Any]], *,
           request_ids: Optional[Sequence[str]] = None,
           predictions: Optional[Sequence[float]] = None) -> None:
    """Queues `rows` (dicts column -> value: numbers are numeric columns, strings categorical,
    None a null) for monitor `monitor`; returns at once. Every row of one call has the columns of
    the first. `request_ids` and `predictions`, when given, have one entry per row (labels that
    arrive later are matched by request id). Raises InvalidArgument for rows that do not fit."""
    rows = list(rows)
    if not rows:
        return
    first = rows[0]
    numeric = sorted(k for k, v in first.items() if not isinstance(v, str))
    categorical = sorted(k for k, v in first.items() if isinstance(v, str))
    for given, what in ((request_ids, "request_ids"), (predictions, "predictions")):
        if given is not None and len(given) != len(rows):
            raise errors.InvalidArgument(f"{what}: {len(given)} for {len(rows)} rows")
    prepared = []
    for i, row in enumerate(rows):
        if set(row) != set(first):
            raise errors.InvalidArgument(f"row {i}: columns {sorted(row)}, not {sorted(first)}")
        try:
            values = tuple(math.nan if row[k] is None else float(row[k]) for k in numeric)
        except (TypeError, ValueError):
            raise errors.InvalidArgument(f"row {i}: a numeric column holds a non-number") from None
        labels = tuple("" if row[k] is None else str(row[k]) for k in categorical)
        prepared.append((values, labels, None if request_ids is None else str(request_ids[i]),
                         None if predictions is None else float(predictions[i])))
    _the_ingester().add(monitor, numeric, categorical, prepared)


def flush(timeout: Optional[float] = None) -> bool:
    """Waits until every queued row is sent: True, or False when `timeout` passed first. Raises
    the error of rows the service refused."""
    return _the_ingester().flush(timeout)
