"""Before/after figures of one change to the request path: ``python scripts/ab_bench.py REV``.

Measures the edge application (``axon-grpc serve``'s ASGI app, what runs inside Envoy)
in process, with no network and no Envoy: signed gRPC calls and legacy HTTP requests
(those of ``python -m bench``: the Dendrite's metadata, a 10.5 dendrite's headers and
JSON) are handed to the app's ``__call__`` one after another with an ASGI ``receive``
and ``send`` of our own, beside the bare verified echo of ``bench.edge_echo`` (the
floor of ``envoy-echo-verified``) on the same calls. Per target it gives:

- **calls**: Python function calls per request, counted by cProfile (exact, the same on
  every run: the machine's load does not change it);
- **us**: microseconds of CPU (``time.process_time``) per request, the best of
  ``--rounds`` batches.

With a revision (``REV``, anything ``git archive`` takes), the checkout of REV and this
working tree are measured alternately (A B A B ..., ``--pairs`` times, each in a fresh
process), so a change in the machine's load hits both; the median of each side is
printed with the ratio after/before. Without REV, only this tree is measured.

    python scripts/ab_bench.py HEAD~1            # the last commit's effect
    python scripts/ab_bench.py main --pairs 5    # this branch against main
    python scripts/ab_bench.py C~1 --after C     # commit C's effect, whatever the working tree holds
    python scripts/ab_bench.py                   # this tree only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("edge gRPC", "edge legacy HTTP", "edge verified echo")


# -- the measurement, run in a fresh process with the tree under test first on sys.path ---------------


def _measure(
    calls: int, rounds: int, dump: str | None = None
) -> dict[str, dict[str, float]]:  # pragma: no cover - run as a subprocess
    import asyncio
    import cProfile
    import gc
    import pstats
    import time

    from axon_grpc.auth.keys import Keypair
    from axon_grpc.edge.app import for_axon
    from bench.servers import EDGE_SEED_ENV, build_dummy_axon
    from bench.wire import GRPC_METHOD, HTTP_PATH, GrpcSigner, grpc_body, legacy_request_parts, new_uuid

    seed = os.urandom(32).hex()
    os.environ[EDGE_SEED_ENV] = seed
    axon_hotkey = Keypair.create_from_seed(seed).ss58_address
    app = for_axon(build_dummy_axon(50051, run_async=True, seed=seed))
    from bench.edge_echo import VerifiedEcho

    echo = VerifiedEcho()
    echo.hotkey = axon_hotkey
    client = Keypair.generate()
    body = grpc_body()
    framed = b"\x00" + len(body).to_bytes(4, "big") + body
    signer = GrpcSigner(client, axon_hotkey, body)
    grpc_head = [
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"grpc-accept-encoding", b"identity,deflate,gzip"),
        (b"user-agent", b"grpc-python/1.76.0 grpc-c/51.0.0 (linux; chttp2)"),
        (b"grpc-timeout", b"11999m"),
    ]

    def grpc_requests() -> list[tuple[dict, bytes]]:
        out = []
        nonce = time.time_ns()
        for i in range(calls):
            md = signer.metadata(new_uuid(), nonce + i)
            headers = grpc_head + [(k.encode(), v.encode()) for k, v in md]
            scope: dict[str, Any] = {"type": "http", "method": "POST", "path": GRPC_METHOD, "headers": headers}
            scope.update(http_version="2", scheme="http", client=("127.0.0.1", 40000 + i % 1000))
            out.append((scope, framed))
        return out

    def http_requests() -> list[tuple[dict, bytes]]:
        out = []
        nonce = time.time_ns()
        for i in range(calls):
            headers, payload, _ = legacy_request_parts(client, axon_hotkey, "127.0.0.1", 50051, new_uuid(), nonce + i)
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            scope: dict[str, Any] = {
                "type": "http",
                "method": "POST",
                "path": HTTP_PATH,
                "raw_path": HTTP_PATH.encode(),
            }
            scope.update(headers=raw, http_version="1.1", scheme="http", query_string=b"", root_path="")
            scope.update(client=("127.0.0.1", 40000 + i % 1000), server=("127.0.0.1", 50051))
            out.append((scope, payload))
        return out

    def answered(sent: list[dict]) -> bool:
        for message in sent:
            if message["type"] == "http.response.start" and message["status"] != 200:
                return False
            for key, value in message.get("headers", ()):
                if key == b"grpc-status" and value != b"0":
                    return False
        return True

    class Exchange:
        """One request's ASGI ``receive`` (its body, then a disconnect) and ``send`` (kept)."""

        def __init__(self, payload: bytes) -> None:
            self.events = [{"type": "http.request", "body": payload, "more_body": False}]
            self.sent: list[dict] = []

        async def receive(self) -> dict:
            return self.events.pop() if self.events else {"type": "http.disconnect"}

        async def send(self, message: dict) -> None:
            self.sent.append(message)

    async def drive(target, requests: list[tuple[dict, bytes]]) -> None:
        for scope, payload in requests:
            exchange = Exchange(payload)
            await target(scope, exchange.receive, exchange.send)
            sent = exchange.sent
            if not answered(sent):
                raise RuntimeError(f"a bench request was refused: {sent}")

    async def run(name: str, target, build) -> dict[str, float]:
        await drive(target, build()[: calls // 4])  # warm: caches, the first call's imports
        best = float("inf")
        for _ in range(rounds):
            batch = build()
            gc.collect()
            began = time.process_time()
            await drive(target, batch)
            best = min(best, (time.process_time() - began) / calls)
        batch = build()
        profile = cProfile.Profile()
        profile.enable()
        await drive(target, batch)
        profile.disable()
        counted = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
        if dump:
            profile.dump_stats(str(Path(dump) / (name.replace(" ", "-") + ".prof")))
        return {"us": round(best * 1e6, 1), "calls": round(counted / calls, 1)}

    async def main() -> dict[str, dict[str, float]]:
        return {
            "edge gRPC": await run("edge gRPC", app, grpc_requests),
            "edge legacy HTTP": await run("edge legacy HTTP", app, http_requests),
            "edge verified echo": await run("edge verified echo", echo, grpc_requests),
        }

    return asyncio.run(main())


# -- the alternation ----------------------------------------------------------------------------------


def _export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` in ``into`` (``git archive``), with this tree's generated protobuf code."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    generated = ROOT / "axon_grpc" / "_generated"
    if generated.exists() and not (into / "axon_grpc" / "_generated").exists():
        shutil.copytree(generated, into / "axon_grpc" / "_generated")
    return into


def _run(tree: Path, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", "--calls", str(calls)]
    command += ["--rounds", str(rounds)]
    done = subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _run_load(tree: Path, targets: str, seconds: float, out: Path) -> dict[str, dict[str, float]]:
    """One ``python -m bench`` of ``targets`` at c=64 from ``tree``: CPU ms and req/s per target."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", "bench", "--targets", targets, "--concurrency", "64", "--duration", str(seconds)]
    command += ["--quiet", "--no-chart", "--out", str(out)]
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True, text=True)
    results = json.loads((out / "bench.json").read_text())
    figures = {}
    for target in results["targets"]:
        for level in target["levels"]:
            figures[target["name"]] = {"ms": level["server_cpu_ms_per_req"], "rps": level["rps"]}
    return figures


def _load_table(sides: dict[str, list[dict[str, dict[str, float]]]], floor: str = "envoy-echo-verified") -> str:
    names = list(sides)
    targets = list(sides[names[0]][0])
    lines = ["| target | " + " | ".join(f"{n} CPU ms/req (runs) | median" for n in names) + " |"]
    lines.append("|---|" + "---|--:|" * len(names))
    for target in targets:
        cells = []
        for n in names:
            runs = [run[target]["ms"] for run in sides[n]]
            cells.append(" ".join(f"{v:.3f}" for v in runs) + f" | {statistics.median(runs):.3f}")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    if floor in targets:
        for target in targets:
            if target == floor:
                continue
            ratios = []
            for n in names:
                per_run = [run[target]["ms"] / run[floor]["ms"] for run in sides[n]]
                ratios.append(
                    f"{n}: " + " ".join(f"{r:.2f}" for r in per_run) + f" (median {statistics.median(per_run):.2f})"
                )
            lines.append(f"\n{target} / {floor}, each run: " + "; ".join(ratios))
    return "\n".join(lines)


def _median(runs: list[dict[str, dict[str, float]]], target: str, key: str) -> float:
    return statistics.median(run[target][key] for run in runs)


def _table(sides: dict[str, list[dict[str, dict[str, float]]]]) -> str:
    names = list(sides)
    lines = ["| target | " + " | ".join(f"{n} calls | {n} us" for n in names) + " |"]
    lines.append("|---|" + "--:|--:|" * len(names))
    if len(names) == 2:
        lines[0] += " calls after/before | us after/before |"
        lines[1] += "--:|--:|"
    for target in TARGETS:
        row = [f"{_median(sides[n], target, 'calls'):.1f} | {_median(sides[n], target, 'us'):.1f}" for n in names]
        line = f"| {target} | " + " | ".join(row) + " |"
        if len(names) == 2:
            before, after = sides[names[0]], sides[names[1]]
            calls = _median(after, target, "calls") / _median(before, target, "calls")
            us = _median(after, target, "us") / _median(before, target, "us")
            line += f" {calls:.3f} | {us:.3f} |"
        lines.append(line)
    floor = sides[names[-1]]
    echo = _median(floor, "edge verified echo", "us")
    lines.append("")
    lines.append(
        f"{names[-1]}: edge gRPC / verified echo {_median(floor, 'edge gRPC', 'us') / echo:.2f}, "
        f"edge legacy HTTP / verified echo {_median(floor, 'edge legacy HTTP', 'us') / echo:.2f} (in process, us)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/ab_bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", help="the revision before the change (default: measure this tree only)")
    parser.add_argument("--after", help="the revision after the change (default: this working tree)")
    parser.add_argument("--pairs", type=int, default=3, help="A/B alternations (default 3)")
    parser.add_argument("--calls", type=int, default=1000, help="requests per batch (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed batches per run, best kept (default 5)")
    parser.add_argument(
        "--load",
        metavar="TARGETS",
        help="instead: alternate short `python -m bench --targets TARGETS --concurrency 64` runs of each tree "
        "(e.g. envoy,envoy-echo-verified) and compare server CPU per request",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="with --load: measured seconds per run (default 4)")
    parser.add_argument("--dump", help="with no REV: write each target's cProfile stats (TARGET.prof) here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
        print(json.dumps(_measure(args.calls, args.rounds, args.dump)))
        return 0
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
        print(json.dumps(_measure(args.calls, args.rounds, str(Path(args.dump).resolve()))))
        return 0
    with tempfile.TemporaryDirectory(prefix="ab-bench-") as tmp:
        trees = {"this tree": ROOT}
        if args.rev:
            (Path(tmp) / "a").mkdir()
            trees = {args.rev: _export(args.rev, Path(tmp) / "a"), "this tree": ROOT}
        if args.rev and args.after:
            (Path(tmp) / "b").mkdir()
            trees = {args.rev: trees[args.rev], args.after: _export(args.after, Path(tmp) / "b")}
        sides: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
        for index in range(args.pairs):
            for name, tree in trees.items():
                if args.load:
                    sides[name].append(_run_load(tree, args.load, args.seconds, Path(tmp) / "out"))
                else:
                    sides[name].append(_run(tree, args.calls, args.rounds))
                print(f"pair {index + 1}/{args.pairs} {name}: {json.dumps(sides[name][-1])}", file=sys.stderr)
    print(f"python scripts/ab_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(_load_table(sides) if args.load else _table(sides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
