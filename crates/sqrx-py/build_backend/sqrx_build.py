"""The PEP 517 build backend of the `sqrx` package: maturin, plus the `sqrx-init` binary.

Every sandbox runs `sqrx-init` as its PID 1, a separate program because forking a
multithreaded Python process to run Rust code is unsafe. maturin builds only the extension
module (it cannot put a Rust binary next to it, PyO3/maturin#368), so before a wheel is built
this backend compiles `sqrx-init` with the same cargo profile as maturin (release, unless
`--profile` is passed through MATURIN_PEP517_ARGS or config settings) and copies it into the
package directory (`python/sqrx/sqrx-init`), where `[tool.maturin] include` picks it up. Everything
else is maturin's own hooks, unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Mapping

import maturin
from maturin import (  # noqa: F401  (re-exported PEP 517 hooks)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_wheel,
)

_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MANIFEST = os.path.join(_PROJECT, "Cargo.toml")
_PACKAGED_INIT = os.path.join(_PROJECT, "python", "sqrx", "sqrx-init")


def _cargo(*args: str) -> bytes:
    print("Running `cargo {}`".format(" ".join(args)), file=sys.stderr, flush=True)
    return subprocess.run(["cargo", *args], check=True, stdout=subprocess.PIPE).stdout


def _profile(config_settings: Mapping[str, Any] | None) -> str:
    """The cargo profile maturin will use: `--profile P` among its PEP 517 args, else release."""
    args = maturin.get_maturin_pep517_args(config_settings)
    for i, arg in enumerate(args):
        if arg == "--profile" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--profile="):
            return arg.split("=", 1)[1]
    return "release"


def _build_init(config_settings: Mapping[str, Any] | None) -> None:
    """Compile sqrx-init with maturin's profile and copy it into the package."""
    meta = json.loads(
        _cargo("metadata", "--format-version", "1", "--no-deps", "--manifest-path", _MANIFEST)
    )
    profile = _profile(config_settings)
    _cargo(
        "build",
        "--manifest-path",
        _MANIFEST,
        "--package",
        "sqrx-core",
        "--bin",
        "sqrx-init",
        "--profile",
        profile,
    )
    out_dir = "debug" if profile in ("dev", "test") else profile
    # A build for a named target (CARGO_BUILD_TARGET) lands in a directory of that name.
    target = os.environ.get("CARGO_BUILD_TARGET", "")
    built = os.path.join(meta["target_directory"], target, out_dir, "sqrx-init")
    tmp = _PACKAGED_INIT + ".tmp"
    shutil.copy2(built, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, _PACKAGED_INIT)


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build sqrx-init, then the wheel with maturin."""
    _build_init(config_settings)
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build sqrx-init, then the editable wheel with maturin."""
    _build_init(config_settings)
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
