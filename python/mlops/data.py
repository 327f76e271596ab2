"""Datasets from Python: push a directory as a new version, pull a version by name@ref into a
directory (recording its digest on the active run), read one file of a version."""
from __future__ import annotations

import os
import uuid
from typing import Iterator, List, Optional

from . import errors
from ._artifacts import Artifacts
from ._client import method
from .artifact.v1 import artifact_pb2 as apb
from .tracking import active_run, connection

_PAGE = 10000


def _call(name: str, request, response_type):
    return connection().unary("artifact", method("artifact", "ArtifactService", name), request,
                              response_type, timeout=300)


def _split(ref: str):
    name, _, which = ref.partition("@")
    if not name:
        raise errors.InvalidArgument(f"dataset ref {ref!r}: NAME[@TAG|DIGEST]")
    return connection().qualify(name), which or "latest"


def entries(ref: str) -> List[apb.VersionEntry]:
    """The files of version `ref` ("churn@v1", "churn@<digest>", "churn" = latest)."""
    name, which = _split(ref)
    out: List[apb.VersionEntry] = []
    request = apb.ListVersionEntriesRequest(dataset=name, ref=which, page_size=_PAGE)
    while True:
        page = _call("ListVersionEntries", request, apb.ListVersionEntriesResponse)
        out.extend(page.entries)
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token


def get_version(ref: str) -> apb.DatasetVersion:
    name, which = _split(ref)
    return _call("GetVersion", apb.GetVersionRequest(dataset=name, ref=which),
                 apb.DatasetVersion)


def _inside(root: str, relative: str) -> str:
    # Paths come from the server's validated entries; still, never write outside `root`.
    parts = relative.split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise errors.InvalidArgument(f"dataset path {relative!r}: not a relative path")
    path = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(os.path.dirname(path))]) != real_root:
        raise errors.InvalidArgument(f"dataset path {relative!r}: leads outside {root}")
    return path


def pull(ref: str, directory: str) -> apb.DatasetVersion:
    """Writes every file of version `ref` under `directory` (each checked against its digest,
    written whole or not at all), and tags the active run, if any, with
    mlops.dataset.<name> = sha256:<version digest>. Returns the version."""
    version = get_version(ref)
    files = entries(f"{ref.partition('@')[0]}@{version.digest}")
    os.makedirs(directory, exist_ok=True)
    artifacts = Artifacts(connection())
    for entry in files:
        path = _inside(directory, entry.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.islink(path):
            os.unlink(path)
        artifacts.download_to_file(entry.digest, path)
        os.chmod(path, entry.mode & 0o777 or 0o644)
    run = active_run()
    if run is not None:
        name = ref.partition("@")[0].rsplit("/", 1)[-1]
        run.set_tag("mlops.dataset." + name, "sha256:" + version.digest)
    return version


def open(ref: str, path: str) -> bytes:  # noqa: A001 - the issue's name for it
    """The content of file `path` of version `ref`, read by its digest."""
    for entry in entries(ref):
        if entry.path == path:
            return Artifacts(connection()).read(entry.digest)
    raise errors.NotFound(f"dataset {ref}: no file {path!r}")


def push(directory: str, dataset: str, *, message: str = "", tags: Optional[List[str]] = None,
         request_id: Optional[str] = None) -> apb.DatasetVersion:
    """Stores every file under `directory` (or the one file `directory` names) and makes them a
    new version of `dataset` (created when missing). Content the server holds is not sent again;
    a version with the same content is returned as it is (already_existed)."""
    artifacts = Artifacts(connection())
    files = []
    if os.path.isfile(directory):
        files.append((os.path.basename(directory), directory))
    else:
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    files.append((os.path.relpath(full, directory).replace(os.sep, "/"), full))
    version_entries = []
    for relative, full in files:
        blob = artifacts.upload_file(full)
        version_entries.append(apb.VersionEntry(path=relative, digest=blob.digest, size=blob.size,
                                                mode=os.stat(full).st_mode & 0o777))

    def messages() -> Iterator[apb.CreateVersionRequest]:
        header = apb.CreateVersionRequest.Header(
            dataset=connection().qualify(dataset), message=message, tags=list(tags or []),
            create_dataset=True, request_id=request_id or uuid.uuid4().hex)
        first = apb.CreateVersionRequest(header=header)
        first.entries.extend(version_entries[:_PAGE])
        yield first
        for i in range(_PAGE, len(version_entries), _PAGE):
            yield apb.CreateVersionRequest(entries=version_entries[i:i + _PAGE])

    return connection().client_stream("artifact",
                                      method("artifact", "ArtifactService", "CreateVersion"),
                                      messages(), apb.DatasetVersion, timeout=300)
