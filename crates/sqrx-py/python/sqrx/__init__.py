"""sqrx: fast, composable sandboxes for untrusted code.

Open a :class:`Runtime` on a data directory, create sandboxes in it and run commands inside
them; or run JavaScript in-process with :func:`run_js`. Every blocking call releases the GIL;
the ``*_async`` variants return awaitables for asyncio. Errors are :class:`SqrxError`
subclasses, one per kind (:class:`NotFound`, :class:`AlreadyExists`, ...).

    import sqrx

    rt = sqrx.Runtime()
    with rt.create("dev", layers=["000-base"], memory_mb=256) as sb:
        print(sb.exec("echo hi").text)
"""

from ._sqrx import (
    AlreadyExists,
    Conflict,
    ExecEvent,
    ExecLogEntry,
    ExecResult,
    ExecStream,
    FileInfo,
    Files,
    InsufficientStorage,
    Internal,
    InvalidArgument,
    JsResult,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Process,
    Runtime,
    Sandbox,
    SandboxInfo,
    SnapshotInfo,
    SqrxError,
    Timeout,
    Unavailable,
    __version__,
    list_layers,
    run_js,
    run_js_async,
)

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
