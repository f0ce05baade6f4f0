"""The project's exception hierarchy. Each class names the gRPC status code it maps to, so
one server interceptor can translate any of them; this module itself imports no gRPC."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class. `status` is the name of a `grpc.StatusCode` member; `reason`, when set, is
    sent as a `google.rpc.ErrorInfo` detail so that a caller can tell cases of one status
    apart without reading the message."""

    status = "INTERNAL"
    reason = ""


class InvalidArgument(RecsysError):
    """Bad input from a caller; `field` names the offending field when there is one."""

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def check_fields(checks) -> None:
    """InvalidArgument "<field> <problem>", naming the field, for the first (ok, field,
    problem) of `checks` that is not ok."""
    for ok, field, problem in checks:
        if not ok:
            raise InvalidArgument(f"{field} {problem}", field=field)


class NotFound(RecsysError):
    status = "NOT_FOUND"


class FailedPrecondition(RecsysError):
    status = "FAILED_PRECONDITION"


class VersionMismatch(FailedPrecondition):
    """A request names a model version the service does not hold (the model moved on)."""

    reason = "MODEL_VERSION_MISMATCH"


class Unavailable(RecsysError):
    """Retryable by the caller. `retry=False` tells gRPC clients not to retry this call at
    once (another attempt would reach the same broken dependency, e.g. Redis)."""

    status = "UNAVAILABLE"

    def __init__(self, message: str = "", *, retry: bool = True):
        super().__init__(message)
        self.retry = retry


class DeadlineExceeded(RecsysError):
    status = "DEADLINE_EXCEEDED"


class Aborted(RecsysError):
    """A write lost to concurrent writers too many times; retrying is safe."""

    status = "ABORTED"


class ResourceExhausted(RecsysError):
    status = "RESOURCE_EXHAUSTED"


class Unauthenticated(RecsysError):
    """No (well-formed) credentials on a call that needs them."""

    status = "UNAUTHENTICATED"


class PermissionDenied(RecsysError):
    """Credentials given, but not ones this server accepts."""

    status = "PERMISSION_DENIED"


class DataFormatError(InvalidArgument):
    """A data file that cannot be parsed; the message names the file and the line."""

    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}", field=str(path))
        self.path = path
        self.line = line
        self.problem = problem


class DownloadError(Unavailable):
    """A dataset could not be fetched or failed its checksum."""


class ArtifactError(FailedPrecondition):
    """A model artifact directory is missing, incomplete or not loadable."""
