"""Lineage from Python: what produced an artifact, a run or a model version, or what they fed."""
from __future__ import annotations

import re
from typing import Optional

from . import errors
from ._client import method
from .metadata.v1 import lineage_pb2 as lpb
from .tracking import Run, connection

_RUN_ID = re.compile(r"(projects/[A-Za-z0-9][A-Za-z0-9._-]{0,127}/)?[0-9a-f]{32}")


def lineage(ref, *, upstream: bool = True, downstream: bool = False, depth: int = 3,
            stop: str = "") -> lpb.LineageGraph:
    """The lineage graph around `ref`, as `mlops lineage` draws it: a Run or run id, "run:ID",
    "artifact:ID", "execution:ID", or "model:NAME@ALIAS|VERSION" (also "NAME@ALIAS"). Upstream
    (what produced it) by default; `downstream=True` for what it fed (both when both are set).
    All pages, in one LineageGraph."""
    direction = (lpb.GetLineageRequest.BOTH if upstream and downstream else
                 lpb.GetLineageRequest.DOWNSTREAM if downstream else
                 lpb.GetLineageRequest.UPSTREAM)
    c = connection()
    request = lpb.GetLineageRequest(direction=direction, max_hops=depth, stop_filter=stop,
                                    page_size=10000,
                                    project="" if c.project == "default" else c.project)
    if isinstance(ref, Run):
        ref = ref.id
    kind, _, value = ref.partition(":") if ":" in ref else ("", "", ref)
    if not kind:
        kind = "run" if _RUN_ID.fullmatch(value) else "model" if "@" in value else "artifact"
    if kind in ("artifact", "a"):
        request.artifact_id = _int(value, ref)
    elif kind in ("execution", "e"):
        request.execution_id = _int(value, ref)
    elif kind == "run":
        request.run_id = value
    elif kind == "model":
        from .models import get_version
        version = get_version(value)
        if version.artifact_id <= 0:
            raise errors.NotFound(
                f"model {version.name} version {version.version} has no artifact in the lineage "
                "graph (register the file from a run or a pipeline step)")
        request.artifact_id = version.artifact_id
    else:
        raise errors.InvalidArgument(
            f"ref {ref!r}: artifact:ID, execution:ID, run:RUN_ID or model:NAME@ALIAS")
    graph = lpb.LineageGraph()
    call = method("metadata", "LineageService", "GetLineage")
    while True:
        page = c.unary("metadata", call, request, lpb.LineageGraph, timeout=120)
        graph.nodes.extend(page.nodes)
        graph.edges.extend(page.edges)
        graph.total_nodes = page.total_nodes
        if not page.next_page_token:
            return graph
        request.page_token = page.next_page_token


def _int(value: str, ref: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidArgument(f"ref {ref!r}: {value!r} is not a number") from None
