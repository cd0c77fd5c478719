"""Every Python example in the README runs: each code block stands, line for line (each of
its blank-line-separated parts in order), in a program under ``examples/``, and each of
those programs runs here with its expected output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Each runnable example and the last line it must print.
EXPECTED = {
    "quickstart.py": "42 200 Success",
    "streaming.py": "completion='once upon a time hi'",
    "testing_harness.py": "ok",
    "btauth_grpc.py": "14",
    "registry.py": "[6]",
    "legacy_bridge.py": "200 6",
    "tls_clients.py": "[6]",
    "validator_loop.py": "one step done",
}


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines() if line.strip()]


def _parts(block: str) -> list[list[str]]:
    return [_lines(part) for part in re.split(r"\n\s*\n", block) if part.strip()]


def _stands_in(program: list[str], parts: list[list[str]]) -> bool:
    """Each part contiguous in ``program``, the parts in order."""
    start = 0
    for part in parts:
        found = next(
            (i for i in range(start, len(program) - len(part) + 1) if program[i : i + len(part)] == part), None
        )
        if found is None:
            return False
        start = found + len(part)
    return True


def test_every_readme_block_stands_in_an_example_program() -> None:
    programs = {name: _lines((EXAMPLES / name).read_text()) for name in EXPECTED}
    blocks = readme_blocks()
    assert len(blocks) >= len(EXPECTED)
    for block in blocks:
        parts = _parts(block)
        assert any(_stands_in(program, parts) for program in programs.values()), (
            f"this README block is in no example program under examples/:\n{block}"
        )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_program_runs(name: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BT_AXON_IP": "127.0.0.1",
        "BT_AXON_PORT": "0",  # the system picks; the examples call axon.info() / axon.http_port
        "EXAMPLE_HTTP_PORT": "0",
        "AXON_GRPC_HOME": str(tmp_path),
        "AXON_GRPC_REGISTRY": str(tmp_path / "registry.sqlite"),
        "BT_WALLET_PATH": str(tmp_path / "bt"),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True, timeout=90, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].endswith(EXPECTED[name]), done.stdout[-2000:]
