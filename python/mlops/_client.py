"""Where the services are and how to reach them: addresses, TLS, the bearer token and the project.

The same settings as the CLI (docs/cli.md): MLOPS_SERVER (default localhost:50051), per service
MLOPS_METADATA_SERVER / MLOPS_ARTIFACT_SERVER / MLOPS_SCHEDULER_SERVER / MLOPS_MONITORING_SERVER,
MLOPS_CA (with MLOPS_CERT and MLOPS_KEY for mTLS), MLOPS_TOKEN or MLOPS_TOKEN_FILE, and
MLOPS_PROJECT. Channels are made lazily and per process: a forked child never uses its parent's.
"""
from __future__ import annotations

import os
import re
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc

from . import errors

_PROJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SERVICES = ("metadata", "artifact", "scheduler", "monitoring")
DEFAULT_PROJECT = "default"
# Messages up to the servers' own limit (64 MiB) in both directions.
_MAX_MESSAGE = 64 << 20


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None


def _read(path: str, what: str, marker: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise errors.InvalidArgument(f"{what} {path}: {e.strerror}") from None
    if marker.encode() not in data:
        raise errors.InvalidArgument(f"{what} {path}: not a PEM file holding {marker.strip('-')}")
    return data


class Connection:
    """The settings of one client, and its channels (one per address, made in the calling
    process)."""

    def __init__(self, server: Optional[str] = None, *, token: Optional[str] = None,
                 token_file: Optional[str] = None, ca: Optional[str] = None,
                 cert: Optional[str] = None, key: Optional[str] = None,
                 project: Optional[str] = None, timeout: float = 30.0) -> None:
        base = server or _env("MLOPS_SERVER") or "localhost:50051"
        self.addresses: Dict[str, str] = {}
        for service in _SERVICES:
            own = None if server else _env(f"MLOPS_{service.upper()}_SERVER")
            self.addresses[service] = own or base
        self.timeout = timeout
        ca = ca or _env("MLOPS_CA")
        cert = cert or _env("MLOPS_CERT")
        key = key or _env("MLOPS_KEY")
        if bool(cert) != bool(key):
            raise errors.InvalidArgument(
                "a client certificate needs both cert and key (MLOPS_CERT and MLOPS_KEY)")
        if cert and not ca:
            raise errors.InvalidArgument("cert and key present a certificate over TLS: give ca too")
        self._credentials: Optional[grpc.ChannelCredentials] = None
        if ca:
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(ca, "ca", "-----BEGIN CERTIFICATE-----"),
                private_key=_read(key, "key", "PRIVATE KEY-----") if key else None,
                certificate_chain=(_read(cert, "cert", "-----BEGIN CERTIFICATE-----") if cert
                                   else None))
        if token is None:
            token = _env("MLOPS_TOKEN")
        token_file = token_file or _env("MLOPS_TOKEN_FILE")
        if token is None and token_file:
            try:
                with open(token_file, encoding="ascii", errors="replace") as f:
                    token = f.read().strip()
            except OSError as e:
                raise errors.InvalidArgument(f"token file {token_file}: {e.strerror}") from None
            if not token:
                raise errors.InvalidArgument(f"token file {token_file}: holds no token")
        if token is not None and any(not 0x21 <= ord(c) <= 0x7E for c in token):
            raise errors.InvalidArgument(
                "the bearer token has a character that cannot travel in a header "
                "(space, control or non-ASCII)")
        project = project or _env("MLOPS_PROJECT") or DEFAULT_PROJECT
        if not _PROJECT_RE.fullmatch(project):
            raise errors.InvalidArgument(
                f"project {project!r}: must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}")
        self.project = project
        metadata: List[Tuple[str, str]] = []
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        if project != DEFAULT_PROJECT:
            metadata.append(("mlops-project", project))
        self.metadata: Tuple[Tuple[str, str], ...] = tuple(metadata)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._channels: Dict[str, grpc.Channel] = {}

    def qualify(self, name: str) -> str:
        """`name` in this connection's project: projects/P/name unless it has a project already."""
        if self.project == DEFAULT_PROJECT or name.startswith("projects/"):
            return name
        return f"projects/{self.project}/{name}"

    def channel(self, service: str) -> grpc.Channel:
        """The channel to `service` for this process (a forked child makes its own)."""
        address = self.addresses[service]
        with self._lock:
            if self._pid != os.getpid():
                # Inherited across fork: the parent's channels are its own, never used or closed.
                self._channels = {}
                self._pid = os.getpid()
            channel = self._channels.get(address)
            if channel is None:
                options = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                           ("grpc.max_send_message_length", _MAX_MESSAGE),
                           ("grpc.enable_retries", 0)]
                if self._credentials is not None:
                    channel = grpc.secure_channel(address, self._credentials, options)
                else:
                    channel = grpc.insecure_channel(address, options)
                self._channels[address] = channel
            return channel

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's channels and lock (never used or closed here)."""
        self._lock = threading.Lock()
        self._channels = {}
        self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                for channel in self._channels.values():
                    channel.close()
            self._channels = {}

    def unary(self, service: str, method: str, request: Any, response_type: Any,
              timeout: Optional[float] = None) -> Any:
        """Calls /mlops.<service>.v1.<Service>/<method>; raises the mapped MlopsError."""
        call = self.channel(service).unary_unary(
            method, request_serializer=_serialize, response_deserializer=response_type.FromString)
        try:
            return call(request, timeout=timeout or self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def unary_raw(self, service: str, method: str, request: bytes, response_type: Any,
                  timeout: Optional[float] = None) -> Any:
        """Like unary() for a request serialized already; raises grpc.RpcError as it is."""
        call = self.channel(service).unary_unary(
            method, request_serializer=None, response_deserializer=response_type.FromString)
        return call(request, timeout=timeout or self.timeout, metadata=self.metadata)

    def server_stream(self, service: str, method: str, request: Any, response_type: Any,
                      timeout: Optional[float] = None) -> Iterator[Any]:
        call = self.channel(service).unary_stream(
            method, request_serializer=_serialize, response_deserializer=response_type.FromString)
        try:
            for item in call(request, timeout=timeout, metadata=self.metadata):
                yield item
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None

    def client_stream(self, service: str, method: str, requests: Iterator[Any],
                      response_type: Any, timeout: Optional[float] = None) -> Any:
        call = self.channel(service).stream_unary(
            method, request_serializer=_serialize, response_deserializer=response_type.FromString)
        try:
            return call(requests, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from None


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


def method(package: str, service: str, name: str) -> str:
    return f"/mlops.{package}.v1.{service}/{name}"
