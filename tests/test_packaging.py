"""The package as a user installs it: a wheel built without warnings, holding the runtime
and nothing of the benchmark suite or the tests, with its extras and its version."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import axon_grpc

ROOT = Path(__file__).resolve().parent.parent
#: What a checkout holds that is not the project's source.
LOCAL_ONLY = (
    ".git",
    ".venv",
    "build",
    "site",
    "node_modules",
    "*.egg-info",
    ".pytest_cache",
    ".hypothesis",
    "bench-results",
)


def test_the_wheel_builds_without_warnings_and_holds_only_the_runtime(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: a build leaves build/ behind, whose leftovers a later build would ship
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL_ONLY))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    build_output = (done.stdout + done.stderr).lower()
    assert "deprecat" not in build_output, build_output[-3000:]
    (wheel,) = tmp_path.glob("axon_grpc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    top_level = {name.split("/", 1)[0] for name in names}
    assert {"axon_grpc", "bridge"} <= top_level
    assert not [n for n in names if n.startswith(("bench/", "tests/", "axon_grpc/bench/"))]
    assert "axon_grpc/py.typed" in names
    assert metadata["License-Expression"] == "MIT"
    assert {"edge", "redis", "bench", "docs", "test"} <= set(metadata.get_all("Provides-Extra") or [])
    requires = metadata.get_all("Requires-Dist") or []
    assert not [r for r in requires if r.startswith(("pyvoy", "redis")) and "extra ==" not in r]
    assert metadata["Version"] == axon_grpc.__version__


def test_version_command_names_the_installed_version() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("axon-grpc")), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"axon-grpc {version('axon-grpc')}" == f"axon-grpc {axon_grpc.__version__}"
