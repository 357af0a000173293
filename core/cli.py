"""`cursorgate`: run the gateway (both layers, or one), the simulator, and admin chores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

from core.config import load_settings
from core.ide_token import TokenNotFound, default_db_path, read_token
from core.secrets import new_license


def _port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


async def _wait_port(host: str, port: int, proc: asyncio.subprocess.Process, name: str) -> None:
    deadline = time.monotonic() + 60
    while not _port_open(host, port):
        if proc.returncode is not None:
            raise SystemExit(f"cursorgate: {name} exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise SystemExit(f"cursorgate: {name} did not open {host}:{port} within 60 s")
        await asyncio.sleep(0.1)


async def _spawn(module: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env)


async def _run_all() -> int:
    """Core and facade as two processes (plus the simulator when no Cursor token is set)."""
    settings = load_settings()
    env = dict(os.environ)
    procs: list[tuple[str, asyncio.subprocess.Process]] = []
    notes: list[str] = []
    http_port = int(env.get("CURSORGATE_HTTP_PORT", "8000"))
    http_host = env.get("CURSORGATE_HTTP_HOST", "127.0.0.1")
    try:
        if settings.cursor_token is None:
            from simulator.config import SimulatorSettings

            sim = SimulatorSettings()
            env["CURSORGATE_UPSTREAM_URL"] = f"http://{sim.host}:{sim.port}"
            env["CURSOR_TOKEN"] = sim.demo_token()
            env.setdefault("CURSORGATE_CLI_INSTALL_URL", f"http://{sim.host}:{sim.port}/install")
            proc = await _spawn("simulator", env)
            procs.append(("simulator", proc))
            await _wait_port(sim.host, sim.port, proc, "simulator")
            notes.append(
                f"No CURSOR_TOKEN set: serving against the bundled Cursor simulator at "
                f"http://{sim.host}:{sim.port} (answers are scripted, not real models)."
            )
        if not settings.licenses and settings.admin_key is None and "CURSORGATE_LICENSES" not in env:
            key = new_license()
            env["CURSORGATE_LICENSES"] = key
            notes.append(f"No CURSORGATE_LICENSES set: generated a license for this run: {key}")
        core = await _spawn("core", env)
        procs.append(("core", core))
        await _wait_port(settings.grpc_host, settings.grpc_port, core, "core")
        facade = await _spawn("facade", env)
        procs.append(("facade", facade))
        await _wait_port(http_host, http_port, facade, "facade")
        for note in notes:
            print(f"cursorgate: {note}", flush=True)
        print(
            f"cursorgate: ready. OpenAI base URL: http://{http_host}:{http_port}/cursor/v1 "
            f"(core gRPC on {settings.grpc_address}). Ctrl-C stops.",
            flush=True,
        )
        return await _supervise(procs)
    finally:
        await _stop(procs)


async def _supervise(procs: list[tuple[str, asyncio.subprocess.Process]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.ensure_future(p.wait()): name for name, p in procs}
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    for fut in done:
        if fut in waits:
            code = fut.result()
            print(f"cursorgate: {waits[fut]} exited with code {code}; stopping", file=sys.stderr)
            return code or 1
    return 0


async def _stop(procs: list[tuple[str, asyncio.subprocess.Process]]) -> None:
    for _, proc in reversed(procs):
        if proc.returncode is None:
            proc.terminate()
    for _, proc in reversed(procs):
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _token_extract(db: Path | None, add: bool, label: str) -> int:
    try:
        token = read_token(db or default_db_path())
    except TokenNotFound as err:
        print(f"cursorgate: {err}", file=sys.stderr)
        return 1
    if not add:
        print(token)  # what the user asked for; nothing else goes to stdout
        return 0
    return asyncio.run(_add_account(token, label))


async def _add_account(token: str, label: str) -> int:
    import grpc

    from cursorgate.v1 import admin_pb2, admin_pb2_grpc

    settings = load_settings()
    if settings.admin_key is None:
        print(
            "cursorgate: set CURSORGATE_ADMIN_KEY to add the token through core's admin API", file=sys.stderr
        )
        return 2
    target = os.environ.get("CURSORGATE_CORE_ADDRESS") or settings.grpc_address
    metadata = (("authorization", f"Bearer {settings.admin_key.get_secret_value()}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            account = await admin_pb2_grpc.AdminServiceStub(channel).AddAccount(
                admin_pb2.AddAccountRequest(token=token, label=label or "from the Cursor IDE"),
                metadata=metadata,
                timeout=120,
            )
        except grpc.aio.AioRpcError as err:
            print(f"cursorgate: core refused: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    print(
        f"added account {account.id} ({account.token_masked}, {account.status}, {len(account.models)} models)"
    )
    return 0


async def _migrate() -> int:
    from core.store import connect

    engine = await connect(load_settings().database_url)
    await engine.dispose()
    print("cursorgate: database schema is up to date")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cursorgate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="core + facade (+ simulator when CURSOR_TOKEN is unset)")
    sub.add_parser("core", help="the gRPC core alone (CURSORGATE_UPSTREAM_URL, CURSORGATE_GRPC_PORT)")
    sub.add_parser("facade", help="the REST facade alone (CURSORGATE_CORE_ADDRESS, CURSORGATE_HTTP_PORT)")
    sub.add_parser("simulator", help="the Cursor simulator alone (CURSORGATE_SIMULATOR_PORT)")
    token = sub.add_parser("token", help="Cursor access tokens").add_subparsers(
        dest="token_command", required=True
    )
    extract = token.add_parser("extract", help="read the token of the Cursor IDE signed in on this machine")
    extract.add_argument("--db", type=Path, help=f"the IDE's state.vscdb (default: {default_db_path()})")
    extract.add_argument("--add", action="store_true", help="add it to the pool via core's admin API instead")
    extract.add_argument("--label", default="", help="label for the added account")
    sub.add_parser("migrate", help="bring the database (CURSORGATE_DATABASE_URL) to the current schema")
    login = sub.add_parser("login", help="sign in to Cursor in a browser and add the account to the pool")
    login.add_argument("--label", default="", help="label for the added account")
    secrets_cmd = sub.add_parser("secrets", help="credentials at rest").add_subparsers(
        dest="secrets_command", required=True
    )
    rotate = secrets_cmd.add_parser(
        "rotate", help="re-seal stored credentials with CURSORGATE_NEW_SECRET_KEY (core stopped)"
    )
    rotate.add_argument("--decrypt", action="store_true", help="store them in clear instead")
    args = parser.parse_args(argv)
    if args.command == "login":
        from core.auth.login import login as run_login

        raise SystemExit(asyncio.run(run_login(args.label)))
    if args.command == "secrets":
        from core.store.rotate import rotate as run_rotate

        raise SystemExit(asyncio.run(run_rotate(args.decrypt)))
    if args.command == "token":
        raise SystemExit(_token_extract(args.db, args.add, args.label))
    if args.command == "migrate":
        raise SystemExit(asyncio.run(_migrate()))
    if args.command == "run":
        with contextlib.suppress(KeyboardInterrupt):
            raise SystemExit(asyncio.run(_run_all()))
    module = {"core": "core", "facade": "facade", "simulator": "simulator"}[args.command]
    os.execv(sys.executable, [sys.executable, "-m", module])  # noqa: S606 (our own interpreter)
