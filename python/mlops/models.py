"""The model registry: register a run's model file as a numbered version, move aliases such as
"production", and read a version by number or alias ("churn@production", "churn@3")."""
from __future__ import annotations

import getpass
import os
import uuid
from typing import Mapping, Optional, Union

from . import errors
from ._artifacts import Artifacts
from ._client import method
from .metadata.v1 import registry_pb2 as rpb
from .tracking import Run, connection


def _call(name: str, request, response_type):
    return connection().unary("metadata", method("metadata", "ModelRegistry", name), request,
                              response_type)


def register(run: Union[Run, str, None], path: str, name: str, *, description: str = "",
             tags: Optional[Mapping[str, str]] = None,
             metadata: Optional[Mapping[str, str]] = None) -> rpb.ModelVersion:
    """Stores the file `path` (as run.log_artifact does), then registers it as the next version
    of model `name` (created when missing), tied to `run` (a Run, a run id, or None). The run is
    tagged mlops.artifact.<file name> = the digest."""
    run_id = run.id if isinstance(run, Run) else (run or "")
    if isinstance(run, Run):
        digest = run.log_artifact(path)[len("sha256:"):]
        run.flush(30)
    else:
        digest = Artifacts(connection()).upload_file(path).digest
    request = rpb.CreateModelVersionRequest(
        name=connection().qualify(name), source_run_id=run_id, artifact_digest=digest,
        description=description, tags=dict(tags or {}), metadata=dict(metadata or {}),
        request_id=uuid.uuid4().hex, create_model=True)
    return _call("CreateModelVersion", request, rpb.ModelVersion)


def _split(ref: str):
    name, _, which = ref.partition("@")
    return connection().qualify(name), which


def get_version(ref: str) -> rpb.ModelVersion:
    """"NAME@ALIAS" or "NAME@VERSION" (NAME alone: alias production). NotFound when absent."""
    name, which = _split(ref)
    if which.isdigit():
        request = rpb.GetModelVersionRequest(name=name, version=int(which))
    else:
        request = rpb.GetModelVersionRequest(name=name, alias=which or "production")
    return _call("GetModelVersion", request, rpb.ModelVersion)


def set_alias(name: str, alias: str, version: int, *, reason: str = "",
              expected_version: int = 0) -> rpb.AliasMove:
    """Points `alias` of model `name` at `version` (atomically; with expected_version, only if
    the alias points there now: Aborted otherwise)."""
    try:
        actor = getpass.getuser()
    except (KeyError, OSError):
        actor = os.environ.get("USER", "")
    return _call("SetAlias", rpb.SetAliasRequest(
        name=connection().qualify(name), alias=alias, version=version, actor=actor, reason=reason,
        expected_version=expected_version), rpb.AliasMove)


def delete_alias(name: str, alias: str) -> rpb.AliasMove:
    return _call("DeleteAlias", rpb.DeleteAliasRequest(name=connection().qualify(name),
                                                       alias=alias), rpb.AliasMove)


def download(ref: str, path: str) -> rpb.ModelVersion:
    """Writes the model file of version `ref` to `path` (checked against its digest)."""
    version = get_version(ref)
    Artifacts(connection()).download_to_file(version.artifact_digest, path)
    return version
