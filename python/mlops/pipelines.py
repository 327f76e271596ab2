"""Pipelines from Python: submit a spec (YAML text or a file), watch it to the end."""
from __future__ import annotations

import os
import uuid
from typing import Mapping, Optional

from . import errors
from ._client import method
from .scheduler.v1 import scheduler_pb2 as spb
from .tracking import connection

_DONE = {spb.SUCCEEDED, spb.FAILED, spb.CANCELED}


def _call(name: str, request, response_type):
    return connection().unary("scheduler", method("scheduler", "SchedulerService", name),
                              request, response_type)


def submit(spec: str, params: Optional[Mapping[str, str]] = None, *, queue: str = "",
           no_cache: bool = False, watch: bool = False, timeout: Optional[float] = None,
           request_id: Optional[str] = None) -> spb.PipelineRun:
    """Submits pipeline `spec` (a path to a YAML file, or the YAML itself) with `params`; with
    watch=True, waits (up to `timeout` seconds) until it has SUCCEEDED, FAILED or was CANCELED and
    returns the final run. A retried submit with the same request_id returns the first run."""
    if "\n" not in spec and os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            spec = f.read()
    c = connection()
    run = _call("SubmitPipeline", spb.SubmitPipelineRequest(
        spec_yaml=spec, params={k: str(v) for k, v in (params or {}).items()}, queue=queue,
        no_cache=no_cache, request_id=request_id or uuid.uuid4().hex,
        project="" if c.project == "default" else c.project), spb.PipelineRun)
    return wait(run.id, timeout) if watch else run


def get(run_id: str) -> spb.PipelineRun:
    return _call("GetPipelineRun", spb.GetPipelineRunRequest(id=run_id), spb.PipelineRun)


def wait(run_id: str, timeout: Optional[float] = None) -> spb.PipelineRun:
    """Follows the run (WatchPipelineRun) until it ends; DeadlineExceeded after `timeout`."""
    last = None
    for last in connection().server_stream(
            "scheduler", method("scheduler", "SchedulerService", "WatchPipelineRun"),
            spb.GetPipelineRunRequest(id=run_id), spb.PipelineRun, timeout=timeout):
        if last.state in _DONE:
            return last
    return last if last is not None else get(run_id)


def cancel(run_id: str) -> spb.PipelineRun:
    return _call("CancelPipelineRun", spb.CancelPipelineRunRequest(id=run_id), spb.PipelineRun)
