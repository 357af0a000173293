"""`python -m bench.profile`: burst load on one path while py-spy samples one server process.

Example: `.venv/bin/python -m bench.profile --path full --target facade --seconds 10`
writes bench/profile-facade.txt (py-spy's top functions, by own time and by total time).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.clients import make_client
from bench.load import closed_loop
from bench.stack import LICENSE, processes, raise_fd_limit, start

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--path", choices=("direct", "core", "full"), default="full")
    p.add_argument("--target", choices=("simulator", "core", "facade"), default="core")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--format", choices=("raw", "speedscope", "flamegraph"), default="raw")
    p.add_argument("--native", action="store_true", help="C frames too (pauses the process: slower)")
    args = p.parse_args()
    raise_fd_limit()
    import uvloop

    uvloop.install()
    with tempfile.TemporaryDirectory(prefix="cursorgate-profile-") as tmp:
        stack = start(Path(tmp))
        try:
            pid = processes(stack)[args.target].pid
            suffix = {"raw": "txt", "speedscope": "json", "flamegraph": "svg"}[args.format]
            out = HERE / f"profile-{args.target}.{suffix}"
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    args.format,
                    "--output",
                    str(out),
                    *(["--native"] if args.native else ["--nonblocking"]),
                ],
            )
            delay = f" delay_ms={args.delay_ms}" if args.delay_ms else ""
            prompt = f"Profile.\nsim: chunks={args.chunks} chunk_chars=20{delay}"

            async def load() -> None:
                client = make_client(
                    args.path, stack.sim_url, stack.token, stack.grpc_target, stack.base_url, LICENSE
                )
                try:
                    phase = await closed_loop(client, prompt, args.concurrency, 0.2, args.seconds + 1, 20)
                    chunks = sum(len(r.times) for r in phase.records)
                    print(f"{chunks} chunks in {phase.ended - phase.started:.1f} s")
                finally:
                    await client.aclose()

            asyncio.run(load())
            spy.wait(30)
            print(f"wrote {out}")
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
