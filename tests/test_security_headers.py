"""Issue 14, finding 12: no CDN-loaded docs pages by default; answers are not cached or sniffed."""

from __future__ import annotations

import httpx
import pytest

from facade.app import create_app
from facade.config import FacadeSettings
from tests.procs import Stack


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_are_off_by_default(stack: Stack, path: str) -> None:
    response = httpx.get(stack.root_url + path, timeout=10)
    assert response.status_code == 404
    assert "cdn" not in response.text.lower()


def test_openapi_json_stays(stack: Stack) -> None:
    response = httpx.get(stack.root_url + "/openapi.json", timeout=10)
    assert response.status_code == 200 and response.json()["paths"]


def test_docs_pages_on_request() -> None:
    paths = {getattr(route, "path", "") for route in create_app(FacadeSettings(api_docs=True)).routes}
    assert {"/docs", "/redoc"} <= paths


def assert_private(response: httpx.Response) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", response.headers
    assert response.headers.get("cache-control") in ("no-store", "no-cache"), response.headers


def test_api_answers_are_not_cached_or_sniffed(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.license}"}
    body = {"model": "gpt-5.2", "messages": [{"role": "user", "content": "hi"}]}
    answers = [
        httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=auth, timeout=30),
        httpx.get(f"{stack.base_url}/models", headers=auth, timeout=30),
        httpx.get(f"{stack.base_url}/models", timeout=30),  # 401
        httpx.post(f"{stack.base_url}/chat/completions", json={}, headers=auth, timeout=30),  # 400
        httpx.get(f"{stack.root_url}/nowhere", timeout=30),  # 404
    ]
    assert [a.status_code for a in answers] == [200, 200, 401, 400, 404]
    for answer in answers:
        assert_private(answer)
    assert answers[0].headers["cache-control"] == "no-store"
    with httpx.stream(
        "POST", f"{stack.base_url}/chat/completions", json={**body, "stream": True}, headers=auth, timeout=30
    ) as streamed:
        assert streamed.status_code == 200
        assert_private(streamed)
        streamed.read()
