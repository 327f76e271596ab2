"""The exceptions of the SDK: one class per gRPC status code, each carrying the server's message.

Every call that reaches a service raises a subclass of MlopsError when it fails; `code` is the
grpc.StatusCode and `message` the server's text (which names the field or resource at fault).
"""
from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class MlopsError(Exception):
    """A call to an mlops service failed; `code` says how, `message` what the server said."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(MlopsError):
    code = grpc.StatusCode.CANCELLED


class Unknown(MlopsError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(MlopsError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(MlopsError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(MlopsError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MlopsError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(MlopsError, PermissionError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(MlopsError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(MlopsError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(MlopsError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(MlopsError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(MlopsError, NotImplementedError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(MlopsError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(MlopsError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(MlopsError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(MlopsError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[MlopsError]] = {
    cls.code: cls
    for cls in (Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists,
                PermissionDenied, ResourceExhausted, FailedPrecondition, Aborted, OutOfRange,
                Unimplemented, Internal, Unavailable, DataLoss, Unauthenticated)
}


def error_for(code: grpc.StatusCode, message: str) -> MlopsError:
    """The exception for a status code (MlopsError itself for a code without a class)."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls is not None else MlopsError(message, code)


def from_rpc_error(error: grpc.RpcError) -> MlopsError:
    """The exception for a failed call, with the server's message."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code, details or code.name)
