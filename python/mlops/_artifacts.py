"""Blobs in the artifact service: content-defined chunking, deduplicated resumable uploads and
downloads, the same protocol and the same chunk boundaries as the CLI (services/artifact/chunker.h:
FastCDC-style gear hash, normalisation level 1, average 512 KiB, min average/4, max 4 x average).

An upload asks which chunks the server lacks (FindMissingChunks), sends only those, then commits
the blob's manifest in one call: an interrupted upload leaves no visible blob, and the next attempt
sends only what did not arrive (chunks are pinned to the session for 24 hours).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ._client import Connection, method
from .artifact.v1 import artifact_pb2 as apb

AVG_SIZE = 512 << 10
MIN_SIZE = AVG_SIZE // 4
MAX_SIZE = AVG_SIZE * 4
_MASK_SMALL = ((1 << 64) - 1) ^ ((1 << (64 - 20)) - 1)  # top 20 bits (log2(avg) + 1)
_MASK_LARGE = ((1 << 64) - 1) ^ ((1 << (64 - 18)) - 1)  # top 18 bits (log2(avg) - 1)
_SEGMENT = 64 << 20  # bytes hashed at once
_MESSAGE_BYTES = 3 << 20  # chunk data per UploadChunks message


def _gear_table() -> np.ndarray:
    mask = (1 << 64) - 1
    state = 0x6D6C6F7073636463  # "mlopscdc", as in chunker.cc
    table = []
    for _ in range(256):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        table.append(z ^ (z >> 31))
    return np.array(table, dtype=np.uint64)


_GEAR = _gear_table()
_GEAR_INT = [int(x) for x in _GEAR]


def _window_hashes(data: memoryview) -> np.ndarray:
    """h[i] = sum over k < 64 of gear[data[i-k]] << k (mod 2^64): the chunker's rolling hash at i
    once 64 bytes of the chunk lie behind it (older bytes are shifted out). Six doubling steps."""
    h = _GEAR[np.frombuffer(data, dtype=np.uint8)]
    width = 1
    while width < 64:
        shifted = np.zeros_like(h)
        shifted[width:] = h[:-width] << np.uint64(width)
        h = h + shifted
        width *= 2
    return h


def chunk_boundaries(data: memoryview) -> List[int]:
    """The end offsets of the chunks of `data` (the whole content), as chunker.cc cuts them."""
    size = len(data)
    cuts: List[int] = []
    start = 0
    while start < size:
        # Hash a segment from `start` (enough for several chunks), then cut within it.
        end = min(size, start + _SEGMENT + MAX_SIZE)
        segment = data[start:end]
        h = _window_hashes(segment)
        small = np.flatnonzero((h & np.uint64(_MASK_SMALL)) == 0)
        large = np.flatnonzero((h & np.uint64(_MASK_LARGE)) == 0)
        base = 0  # chunk start within the segment
        last = end == size
        while True:
            remaining = len(segment) - base
            if remaining <= 0:
                break
            if not last and remaining < MAX_SIZE:
                break  # hash the rest again with what follows
            cut = _next_cut(segment, base, remaining, h, small, large, last)
            cuts.append(start + base + cut)
            base += cut
        start += base
    return cuts


def _next_cut(segment: memoryview, base: int, size: int, h: np.ndarray, small: np.ndarray,
              large: np.ndarray, last: bool) -> int:
    if size <= MIN_SIZE:
        return size
    normal = min(AVG_SIZE, size)
    limit = min(MAX_SIZE, size)
    # The first 63 positions after MIN_SIZE: the chunk's own hash has fewer than 64 bytes.
    mask64 = (1 << 64) - 1
    hash_ = 0
    warm = min(limit, MIN_SIZE + 63)
    for i in range(MIN_SIZE, warm):
        hash_ = ((hash_ << 1) + _GEAR_INT[segment[base + i]]) & mask64
        if hash_ & (_MASK_SMALL if i < normal else _MASK_LARGE) == 0:
            return i + 1
    # From there on it equals the window hash.
    lo = base + warm
    if warm < normal:
        j = int(np.searchsorted(small, lo))
        if j < len(small) and small[j] < base + normal:
            return int(small[j]) - base + 1
        lo = base + normal
    j = int(np.searchsorted(large, lo))
    if j < len(large) and large[j] < base + limit:
        return int(large[j]) - base + 1
    return limit if limit == MAX_SIZE or last else size


class Artifacts:
    """Blob uploads and downloads through one connection, in its project."""

    def __init__(self, connection: Connection) -> None:
        self.c = connection
        self.sent_chunks = 0  # chunks the server lacked and this object sent

    def _call(self, name: str, request, response_type, timeout: Optional[float] = None):
        return self.c.unary("artifact", method("artifact", "ArtifactService", name), request,
                            response_type, timeout)

    def upload_bytes(self, data: bytes, pin: bool = True) -> apb.Blob:
        return self._upload(memoryview(data), pin)

    def upload_file(self, path: str, pin: bool = True) -> apb.Blob:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return self._upload(memoryview(b""), pin)
            import mmap
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    return self._upload(view, pin)
                finally:
                    view.release()

    def _upload(self, data: memoryview, pin: bool) -> apb.Blob:
        chunks: List[Tuple[str, int, int]] = []  # digest, offset, size
        whole = hashlib.sha256()
        begin = 0
        for end in chunk_boundaries(data):
            piece = data[begin:end]
            whole.update(piece)
            chunks.append((hashlib.sha256(piece).hexdigest(), begin, end - begin))
            begin = end
        session = self._call("StartUpload", apb.StartUploadRequest(
            project="" if self.c.project == "default" else self.c.project), apb.UploadSession)
        try:
            missing = set()
            for i in range(0, len(chunks), 10000):
                found = self._call("FindMissingChunks", apb.FindMissingChunksRequest(
                    session_id=session.id, digests=[d for d, _, _ in chunks[i:i + 10000]]),
                    apb.FindMissingChunksResponse)
                missing.update(found.missing)
            if missing:
                self._send_chunks(session.id, data, chunks, missing)
                self.sent_chunks += len(missing)
            manifest = apb.BlobManifest(digest=whole.hexdigest(), size=len(data),
                                        chunks=[apb.ChunkRef(digest=d, size=s)
                                                for d, _, s in chunks])
            committed = self._call("CommitBlobs", apb.CommitBlobsRequest(
                session_id=session.id, blobs=[manifest], pin=pin), apb.CommitBlobsResponse)
            return committed.blobs[0]
        finally:
            try:
                self._call("FinishUpload", apb.FinishUploadRequest(session_id=session.id),
                           apb.FinishUploadResponse)
            except Exception:  # noqa: BLE001 - the session expires by itself
                pass

    def _send_chunks(self, session_id: str, data: memoryview, chunks, missing) -> None:
        def messages() -> Iterator[apb.UploadChunksRequest]:
            request = apb.UploadChunksRequest(session_id=session_id)
            size = 0
            sent = set()
            for digest, offset, length in chunks:
                if digest not in missing or digest in sent:
                    continue
                sent.add(digest)
                request.chunks.add(digest=digest, data=bytes(data[offset:offset + length]))
                size += length
                if size >= _MESSAGE_BYTES:
                    yield request
                    request = apb.UploadChunksRequest()
                    size = 0
            if request.chunks:
                yield request
        self.c.client_stream("artifact", method("artifact", "ArtifactService", "UploadChunks"),
                             messages(), apb.UploadChunksResponse)

    def download_to_file(self, digest: str, path: str) -> int:
        """Writes blob `digest` to `path` (atomically: a temporary file renamed when whole and
        checked). Returns its size."""
        digest = digest[7:] if digest.startswith("sha256:") else digest
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".mlops-", dir=directory)
        hasher = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for part in self.c.server_stream(
                        "artifact", method("artifact", "ArtifactService", "Download"),
                        apb.DownloadRequest(digest=digest, project="" if self.c.project == "default"
                                            else self.c.project), apb.DownloadResponse):
                    out.write(part.data)
                    hasher.update(part.data)
                    size += len(part.data)
            if hasher.hexdigest() != digest:
                from .errors import DataLoss
                raise DataLoss(f"blob {digest}: the downloaded bytes hash to {hasher.hexdigest()}")
            os.rename(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        return size

    def read(self, digest: str) -> bytes:
        digest = digest[7:] if digest.startswith("sha256:") else digest
        parts = [part.data for part in self.c.server_stream(
            "artifact", method("artifact", "ArtifactService", "Download"),
            apb.DownloadRequest(digest=digest, project="" if self.c.project == "default"
                                else self.c.project), apb.DownloadResponse)]
        return b"".join(parts)
