"""`cursorgate login`: Cursor's PKCE login for the CLI (agent-protocol.md §6). It prints the URL to
open, polls until the user has signed in, and adds the account (access and refresh token) to the
pool through core's admin API, so a running gateway uses it at once."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import grpc

from core.auth.cursor_auth import AuthError, CursorAuth
from core.config import CoreSettings
from cursorgate.v1 import admin_pb2, admin_pb2_grpc

POLL_FIRST_S = 1.0
POLL_GROWTH = 1.2
POLL_MAX_S = 10.0


async def login(label: str, timeout_s: float = 600.0) -> int:
    settings = CoreSettings()
    if settings.admin_key is None:
        print(
            "cursorgate: set CURSORGATE_ADMIN_KEY to add the account through core's admin API",
            file=sys.stderr,
        )
        return 2
    auth = CursorAuth(settings)
    try:
        start = auth.start_login()
        print(f"Open this URL in a browser and sign in to Cursor:\n\n  {start.url}\n", flush=True)
        deadline = time.monotonic() + timeout_s
        wait = POLL_FIRST_S
        while True:
            try:
                tokens = await auth.poll_login(start)
            except AuthError as err:
                print(f"cursorgate: login failed: {err}", file=sys.stderr)
                return 1
            if tokens is not None:
                break
            if time.monotonic() > deadline:
                print("cursorgate: login timed out; run `cursorgate login` again", file=sys.stderr)
                return 1
            await asyncio.sleep(wait)
            wait = min(wait * POLL_GROWTH, POLL_MAX_S)
    finally:
        await auth.aclose()
    target = os.environ.get("CURSORGATE_CORE_ADDRESS") or settings.grpc_address
    metadata = (("authorization", f"Bearer {settings.admin_key.get_secret_value()}"),)
    request = admin_pb2.AddAccountRequest(
        token=tokens.access_token, refresh_token=tokens.refresh_token, label=label or "cursorgate login"
    )
    async with grpc.aio.insecure_channel(target) as channel:
        try:
            account = await admin_pb2_grpc.AdminServiceStub(channel).AddAccount(
                request, metadata=metadata, timeout=120
            )
        except grpc.aio.AioRpcError as err:
            print(
                f"cursorgate: core refused the account: {err.code().name}: {err.details()}", file=sys.stderr
            )
            return 1
    print(f"Signed in. Added account {account.id} ({account.token_masked}); its token renews itself.")
    return 0
