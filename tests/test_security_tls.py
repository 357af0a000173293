"""Issue 14, finding 11: core's gRPC port and the facade's channel speak TLS, optionally mutual.

A throwaway CA (tests/certs.py) signs one certificate for 127.0.0.1 that serves both as core's
server certificate and as the facade's client certificate (the stack's processes share one
environment, as `cursorgate run` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import CertFiles, TestCA
from tests.procs import ROOT, Stack, free_port, start_stack


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, CertFiles, CertFiles]:
    directory = tmp_path_factory.mktemp("pki")
    ca = TestCA(directory)
    gateway = ca.issue("gateway", hosts=("127.0.0.1", "localhost"), server=True, client=True)
    stranger = TestCA(directory, name="another CA").issue("stranger", hosts=("127.0.0.1",), client=True)
    return ca, gateway, stranger


@pytest.fixture(scope="module")
def tls_stack(
    tmp_path_factory: pytest.TempPathFactory, pki: tuple[TestCA, CertFiles, CertFiles]
) -> Iterator[Stack]:
    ca, gateway, _ = pki
    env = {
        "CURSORGATE_GRPC_TLS_CERT": str(gateway.cert),
        "CURSORGATE_GRPC_TLS_KEY": str(gateway.key),
        "CURSORGATE_GRPC_TLS_CA": str(ca.ca),
    }
    stack = start_stack(tmp_path_factory.mktemp("tls"), env)
    yield stack
    stack.stop()


def test_facade_talks_to_core_over_mutual_tls(tls_stack: Stack) -> None:
    response = httpx.post(
        f"{tls_stack.base_url}/chat/completions",
        json={"model": "gpt-5.2", "messages": [{"role": "user", "content": "hello over TLS"}]},
        headers={"Authorization": f"Bearer {tls_stack.license}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "hello over TLS" in response.json()["choices"][0]["message"]["content"]


async def check_health(target: str, credentials: grpc.ChannelCredentials | None) -> int:
    channel = (
        grpc.aio.secure_channel(target, credentials) if credentials else grpc.aio.insecure_channel(target)
    )
    async with channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(answer.status)


async def test_plaintext_is_refused(tls_stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(tls_stack.grpc_target, None)


async def test_client_certificate_is_required(
    tls_stack: Stack, pki: tuple[TestCA, CertFiles, CertFiles]
) -> None:
    ca, gateway, stranger = pki
    roots = ca.ca.read_bytes()
    without_cert = grpc.ssl_channel_credentials(root_certificates=roots)
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(tls_stack.grpc_target, without_cert)
    foreign = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=stranger.key.read_bytes(),
        certificate_chain=stranger.cert.read_bytes(),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(tls_stack.grpc_target, foreign)
    trusted = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=gateway.key.read_bytes(),
        certificate_chain=gateway.cert.read_bytes(),
    )
    assert await check_health(tls_stack.grpc_target, trusted) == health_pb2.HealthCheckResponse.SERVING


def start_core(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "core.log"
    env = {
        **os.environ,
        "CURSORGATE_ENV_FILE": str(tmp_path / "none.env"),
        "CURSORGATE_GRPC_PORT": str(free_port()),
        "CURSORGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'core.db'}",
        "CURSORGATE_UPSTREAM_URL": "http://127.0.0.1:9",
        **extra,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "core"], env=env, cwd=ROOT, stdout=out, stderr=out)
    return proc, log


def wait_for_text(proc: subprocess.Popen[bytes], log: Path, text: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content or proc.poll() is not None:
            return content
        time.sleep(0.1)
    return log.read_text(errors="replace")


def test_core_warns_when_exposed_without_tls(tmp_path: Path) -> None:
    proc, log = start_core(tmp_path, CURSORGATE_GRPC_HOST="0.0.0.0")
    try:
        content = wait_for_text(proc, log, "core listening")
    finally:
        proc.terminate()
        proc.wait(10)
    assert "WITHOUT TLS" in content, content[-2000:]


def test_core_stays_quiet_on_loopback(tmp_path: Path) -> None:
    proc, log = start_core(tmp_path)
    try:
        content = wait_for_text(proc, log, "core listening")
    finally:
        proc.terminate()
        proc.wait(10)
    assert "core listening" in content and "WITHOUT TLS" not in content


def test_unreadable_tls_file_is_a_clear_refusal(tmp_path: Path) -> None:
    proc, log = start_core(
        tmp_path,
        CURSORGATE_GRPC_TLS_CERT=str(tmp_path / "absent.crt"),
        CURSORGATE_GRPC_TLS_KEY=str(tmp_path / "absent.key"),
    )
    assert proc.wait(30) == 2
    content = log.read_text()
    assert "cannot read" in content and "Traceback" not in content
