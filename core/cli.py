"""`cursorgate`: run the gateway (both layers, or one), the simulator, and admin chores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from functools import partial
from pathlib import Path

from core.auth.ide_token import TokenNotFound, default_db_path, read_token
from core.config import SupervisorSettings, load_settings
from core.licensing.secrets import new_license
from core.supervisor import ChildSpec, Supervisor, grpc_probe, http_probe


async def _run_all() -> int:
    """Core and facade as two processes, or one with CURSORGATE_ONE_PROCESS (plus the simulator
    when no Cursor token is set), kept alive by the supervisor (core/supervisor.py)."""
    settings = load_settings()
    supervisor = SupervisorSettings()
    env = dict(os.environ)
    specs: list[ChildSpec] = []
    notes: list[str] = []
    http_port = int(env.get("CURSORGATE_HTTP_PORT", "8000"))
    http_host = env.get("CURSORGATE_HTTP_HOST", "127.0.0.1")
    if settings.cursor_token is None:
        from simulator.config import SimulatorSettings

        sim = SimulatorSettings()
        env["CURSORGATE_UPSTREAM_URL"] = f"http://{sim.host}:{sim.port}"
        env["CURSOR_TOKEN"] = sim.demo_token()
        env.setdefault("CURSORGATE_CLI_INSTALL_URL", f"http://{sim.host}:{sim.port}/install")
        specs.append(
            ChildSpec("simulator", "simulator", partial(http_probe, f"http://{sim.host}:{sim.port}/"))
        )
        notes.append(
            f"No CURSOR_TOKEN set: serving against the bundled Cursor simulator at "
            f"http://{sim.host}:{sim.port} (answers are scripted, not real models)."
        )
    if not settings.licenses and settings.admin_key is None and "CURSORGATE_LICENSES" not in env:
        key = new_license()
        env["CURSORGATE_LICENSES"] = key
        notes.append(f"No CURSORGATE_LICENSES set: generated a license for this run: {key}")
    facade_probe = partial(http_probe, f"http://{http_host}:{http_port}/healthz")
    if supervisor.one_process:
        specs.append(ChildSpec("gateway", "core.combined", facade_probe))
    else:
        specs.append(ChildSpec("core", "core", partial(grpc_probe, settings.grpc_address)))
        specs.append(ChildSpec("facade", "facade", facade_probe))

    def ready() -> None:
        for note in notes:
            print(f"cursorgate: {note}", flush=True)
        print(
            f"cursorgate: ready. OpenAI base URL: http://{http_host}:{http_port}/cursor/v1 "
            f"(core gRPC on {settings.grpc_address}). Ctrl-C stops.",
            flush=True,
        )

    return await Supervisor(env, supervisor).run(specs, ready)


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
    from core.api.grpc_tls import channel_credentials

    tls = channel_credentials(settings)
    channel_cm = grpc.aio.secure_channel(target, tls) if tls else grpc.aio.insecure_channel(target)
    async with channel_cm as channel:
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


def _import_file(path: Path, label_prefix: str, proxy: str) -> int:
    """`cursorgate accounts import FILE`: one credential per line, through core's admin API."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        print(f"cursorgate: cannot read {path}: {type(err).__name__}", file=sys.stderr)
        return 2
    return asyncio.run(_import_accounts(text, label_prefix, proxy))


async def _import_accounts(text: str, label_prefix: str, proxy: str) -> int:
    import grpc

    from core.api.grpc_tls import channel_credentials
    from cursorgate.v1 import admin_pb2, admin_pb2_grpc

    settings = load_settings()
    if settings.admin_key is None:
        print("cursorgate: set CURSORGATE_ADMIN_KEY to import through core's admin API", file=sys.stderr)
        return 2
    target = os.environ.get("CURSORGATE_CORE_ADDRESS") or settings.grpc_address
    metadata = (("authorization", f"Bearer {settings.admin_key.get_secret_value()}"),)
    tls = channel_credentials(settings)
    channel_cm = grpc.aio.secure_channel(target, tls) if tls else grpc.aio.insecure_channel(target)
    request = admin_pb2.ImportAccountsRequest(tokens=text, label_prefix=label_prefix, proxy=proxy)
    async with channel_cm as channel:
        try:
            answer = await admin_pb2_grpc.AdminServiceStub(channel).ImportAccounts(
                request, metadata=metadata, timeout=600
            )
        except grpc.aio.AioRpcError as err:
            print(f"cursorgate: core refused: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    for account in answer.added:
        print(f"added account {account.id} ({account.label}, {account.token_masked}, {account.status})")
    for failure in answer.failed:
        print(f"line {failure.line}: {failure.error}", file=sys.stderr)
    print(f"cursorgate: {len(answer.added)} added, {len(answer.failed)} refused")
    return 1 if answer.failed else 0


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
    accounts_cmd = sub.add_parser("accounts", help="the Cursor account pool").add_subparsers(
        dest="accounts_command", required=True
    )
    importer = accounts_cmd.add_parser(
        "import", help="add the accounts of a file (one JWT, cookie value or crsr_ key per line; - = stdin)"
    )
    importer.add_argument("file", type=Path)
    importer.add_argument("--label-prefix", default="", help="labels are '<prefix> <line>' (default: import)")
    importer.add_argument("--proxy", default="", help="an outbound proxy URL for every imported account")
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
    if args.command == "accounts":
        raise SystemExit(_import_file(args.file, args.label_prefix, args.proxy))
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


if __name__ == "__main__":
    main()
