"""Type stubs of the sqrx package (checked against the built module by mypy.stubtest)."""

import builtins
import datetime
import pathlib
import os
import types
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal, Optional, TypedDict, Union, final

from typing_extensions import Self

__version__: str

__all__ = [
    "AlreadyExists",
    "Conflict",
    "ExecEvent",
    "ExecLogEntry",
    "ExecResult",
    "ExecStream",
    "FileInfo",
    "Files",
    "InsufficientStorage",
    "Internal",
    "InvalidArgument",
    "JsResult",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "Process",
    "Runtime",
    "Sandbox",
    "SandboxInfo",
    "SnapshotInfo",
    "SqrxError",
    "Timeout",
    "Unavailable",
    "__version__",
    "list_layers",
    "run_js",
    "run_js_async",
]

_Command = Union[str, Sequence[str]]
_Data = Union[bytes, str]
_Path = Union[str, "os.PathLike[str]"]
# "none", "all", a list of rules (an allow list) or {"allow": [...], "deny": [...]}.
_NetworkPolicy = Union[
    Literal["none", "all"], Sequence[str], Mapping[str, Sequence[str]]
]

class SqrxError(Exception):
    """Base class of every sqrx error; ``kind`` names the core's error kind."""

    kind: ClassVar[str]

class NotFound(SqrxError):
    """The named thing (sandbox, layer, file) does not exist."""

class AlreadyExists(SqrxError):
    """Something with that name already exists."""

class InvalidArgument(SqrxError):
    """The input is malformed or breaks a rule (bad id, relative path, bad limit)."""

class LimitExceeded(SqrxError):
    """A configured limit would be exceeded (too many sandboxes)."""

class Conflict(SqrxError):
    """The operation conflicts with the current state (paused, in use)."""

class Unavailable(SqrxError):
    """A required facility is missing on this host (sqrx-init, a kernel feature)."""

class Timeout(SqrxError):
    """The operation did not finish in time."""

class PermissionDenied(SqrxError):
    """The caller or the process lacks a permission."""

class InsufficientStorage(SqrxError):
    """The disk the data directory is on is full; nothing half-written was left."""

class Internal(SqrxError):
    """An unexpected failure of the host or a bug."""

@final
class ExecResult:
    """How an exec ended: exit status, captured output and what stopped it."""

    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def signal(self) -> Optional[int]: ...
    @property
    def stdout(self) -> bytes: ...
    @property
    def stderr(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def stderr_text(self) -> str: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def started(self) -> datetime.datetime: ...
    @property
    def finished(self) -> datetime.datetime: ...
    @property
    def duration_ms(self) -> int: ...

@final
class ExecEvent:
    """One event of a streaming exec; the last one has kind ``"exit"`` and a ``result``."""

    @property
    def kind(self) -> Literal["stdout", "stderr", "exit"]: ...
    @property
    def data(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    @property
    def result(self) -> Optional[ExecResult]: ...

@final
class ExecStream:
    """The events of a running exec (``for`` or ``async for``); closing it stops the exec."""

    @property
    def pid(self) -> int: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> ExecEvent: ...
    def __aiter__(self) -> Self: ...
    def __anext__(self) -> Awaitable[ExecEvent]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _exc_type: Optional[type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[types.TracebackType] = None,
    ) -> bool: ...

@final
class Process:
    """A background process started with ``Sandbox.spawn``."""

    @property
    def pid(self) -> int: ...
    def wait(self, timeout: Optional[float] = None) -> tuple[Optional[int], Optional[int]]: ...
    def kill(self, signal: int = 15) -> None: ...

@final
class FileInfo:
    """One entry of a sandbox's filesystem."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def kind(self) -> Literal["file", "dir", "symlink", "char", "block", "fifo", "socket"]: ...
    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def mtime(self) -> datetime.datetime: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...

@final
class Files:
    """The files of one sandbox; paths are absolute paths inside it."""

    def read(self, path: str) -> bytes: ...
    def write(self, path: str, data: _Data, mode: int = 0o644) -> None: ...
    def list(self, path: str) -> builtins.list[FileInfo]: ...
    def stat(self, path: str) -> FileInfo: ...
    def mkdir(self, path: str) -> None: ...
    def remove(self, path: str, recursive: bool = False) -> None: ...

@final
class SandboxInfo:
    """What ``Sandbox.info()`` reports."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> Literal["running", "paused", "dead"]: ...
    @property
    def layers(self) -> list[str]: ...
    @property
    def owner(self) -> Optional[str]: ...
    @property
    def created(self) -> datetime.datetime: ...
    @property
    def expires(self) -> Optional[datetime.datetime]: ...
    @property
    def init_pid(self) -> int: ...
    @property
    def cpu(self) -> Optional[float]: ...
    @property
    def memory_mb(self) -> Optional[int]: ...
    @property
    def pids_max(self) -> Optional[int]: ...
    @property
    def upper_mb(self) -> int: ...
    @property
    def network(self) -> Union[Literal["none", "all"], dict[str, list[str]]]: ...
    @property
    def address(self) -> Optional[str]: ...
    @property
    def gateway(self) -> Optional[str]: ...

@final
class SnapshotInfo:
    """A snapshot of a sandbox's filesystem."""

    @property
    def label(self) -> str: ...
    @property
    def created(self) -> datetime.datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def digest(self) -> str: ...
    @property
    def parent(self) -> Optional[str]: ...
    @property
    def layers(self) -> list[str]: ...

@final
class ExecLogEntry:
    """One exec in a sandbox's history."""

    @property
    def seq(self) -> int: ...
    @property
    def command(self) -> str: ...
    @property
    def exit_code(self) -> Optional[int]: ...
    @property
    def signal(self) -> Optional[int]: ...
    @property
    def timed_out(self) -> bool: ...
    @property
    def oom_killed(self) -> bool: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def started(self) -> datetime.datetime: ...
    @property
    def finished(self) -> datetime.datetime: ...
    @property
    def duration_ms(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...

class _SecretGiven(TypedDict, total=False):
    value: str
    allowed_hosts: list[str]
    placeholder: str
    allow_http: bool
    allow_query: bool
    allow_body: bool

class _SecretShown(TypedDict):
    name: str
    placeholder: str
    allowed_hosts: list[str]
    allow_http: bool
    allow_query: bool
    allow_body: bool
    source: Literal["runtime", "sandbox"]

@final
class Sandbox:
    """A running sandbox; ``with``/``async with`` destroys it on exit."""

    @property
    def id(self) -> str: ...
    def info(self) -> SandboxInfo: ...
    def set_network(self, policy: _NetworkPolicy) -> None: ...
    def set_secret(
        self,
        name: str,
        value: str,
        allowed_hosts: Sequence[str],
        *,
        placeholder: Optional[str] = None,
        allow_http: bool = False,
        allow_query: bool = False,
        allow_body: bool = False,
    ) -> None: ...
    def remove_secret(self, name: str) -> bool: ...
    def secrets(self) -> builtins.list[_SecretShown]: ...
    def exec(
        self,
        command: _Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        stdin: Optional[_Data] = None,
        timeout: Optional[float] = None,
        output_cap: Optional[int] = None,
    ) -> ExecResult: ...
    def exec_async(
        self,
        command: _Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        stdin: Optional[_Data] = None,
        timeout: Optional[float] = None,
        output_cap: Optional[int] = None,
    ) -> Awaitable[ExecResult]: ...
    def exec_stream(
        self,
        command: _Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        stdin: Optional[_Data] = None,
        timeout: Optional[float] = None,
        output_cap: Optional[int] = None,
    ) -> ExecStream: ...
    def spawn(
        self,
        command: _Command,
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Process: ...
    def logs(self) -> list[ExecLogEntry]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    @property
    def files(self) -> Files: ...
    def snapshot(self, label: Optional[str] = None, *, push: bool = False) -> SnapshotInfo: ...
    def push_snapshot(self, label: str) -> dict[str, Any]: ...
    def snapshot_async(self, label: Optional[str] = None) -> Awaitable[SnapshotInfo]: ...
    def snapshots(self) -> list[SnapshotInfo]: ...
    def restore(self, label: str) -> None: ...
    def restore_async(self, label: str) -> Awaitable[None]: ...
    def activate(self, layer: str) -> None: ...
    def destroy(self, *, save: bool = True) -> None: ...
    def destroy_async(self) -> Awaitable[None]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        _exc_type: Optional[type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[types.TracebackType] = None,
    ) -> bool: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(
        self,
        _exc_type: Optional[type[BaseException]] = None,
        _exc: Optional[BaseException] = None,
        _tb: Optional[types.TracebackType] = None,
    ) -> Awaitable[None]: ...

@final
class Runtime:
    """Opens the data directory that holds layers and sandboxes."""

    def __new__(
        cls,
        data_dir: Optional[_Path] = None,
        *,
        init_path: Optional[_Path] = None,
        max_sandboxes: int = 100,
        net_pool: Optional[str] = None,
        net_uplink: Optional[str] = None,
        net_netns: Optional[_Path] = None,
        proxy_https: bool = True,
        egress_ca: Optional[Sequence[_Path]] = None,
    ) -> Self: ...
    @property
    def data_dir(self) -> pathlib.Path: ...
    def create(
        self,
        id: str,
        layers: Optional[Sequence[str]] = None,
        memory_mb: Optional[int] = None,
        timeout: Optional[float] = None,
        *,
        cpu: Optional[float] = None,
        pids_max: Optional[int] = None,
        upper_mb: int = 512,
        env: Optional[Mapping[str, str]] = None,
        hostname: Optional[str] = None,
        owner: Optional[str] = None,
        network: Optional[_NetworkPolicy] = None,
        secrets: Optional[Mapping[str, _SecretGiven]] = None,
        setuid: bool = False,
    ) -> Sandbox: ...
    def create_async(
        self,
        id: str,
        layers: Optional[Sequence[str]] = None,
        memory_mb: Optional[int] = None,
        timeout: Optional[float] = None,
        *,
        cpu: Optional[float] = None,
        pids_max: Optional[int] = None,
        upper_mb: int = 512,
        env: Optional[Mapping[str, str]] = None,
        hostname: Optional[str] = None,
        owner: Optional[str] = None,
        network: Optional[_NetworkPolicy] = None,
        secrets: Optional[Mapping[str, _SecretGiven]] = None,
        setuid: bool = False,
    ) -> Awaitable[Sandbox]: ...
    def get(self, id: str) -> Sandbox: ...
    def get_async(self, id: str) -> Awaitable[Sandbox]: ...
    def clone_sandbox(self, src: str, new_id: str) -> Sandbox: ...
    def list(self) -> builtins.list[Sandbox]: ...
    def layers(self) -> builtins.list[str]: ...
    def secrets(self) -> builtins.list[_SecretShown]: ...
    def reload_secrets(self) -> int: ...
    def push_layer(self, name: str) -> dict[str, Any]: ...
    def pull_layer(self, name: str, *, force: bool = False) -> dict[str, Any]: ...
    def sync_layers(self) -> dict[str, builtins.list[str]]: ...
    def uploads(self) -> builtins.list[dict[str, Any]]: ...

class _JsThrown(TypedDict):
    name: str
    message: str
    stack: str

class _JsLogEntry(TypedDict):
    type: Literal["log", "info", "warn", "error", "debug"]
    timestamp: str
    data: list[Any]

@final
class JsResult:
    """The outcome of one ``run_js`` script."""

    @property
    def status(self) -> Literal["success", "error", "timeout", "out_of_memory"]: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> Optional[_JsThrown]: ...
    @property
    def log(self) -> list[_JsLogEntry]: ...
    @property
    def execution_time_ms(self) -> float: ...

def run_js(
    code: str,
    input: Any = None,
    timeout_ms: Optional[int] = None,
    memory_mb: Optional[int] = None,
) -> JsResult:
    """Run JavaScript with QuickJS in this process under a time and a memory limit
    (``None``: 5000 ms, 64 MiB)."""

def run_js_async(
    code: str,
    input: Any = None,
    timeout_ms: Optional[int] = None,
    memory_mb: Optional[int] = None,
) -> Awaitable[JsResult]:
    """``run_js`` for asyncio."""

def list_layers(data_dir: Optional[_Path] = None) -> list[str]:
    """The names of the layers in the store (default data dir unless ``data_dir`` is given)."""
