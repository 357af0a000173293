"""OpenAI Chat Completions, Models, legacy Completions (and a clear no for Embeddings):
`/cursor/v1/...` and `/v1/...`."""

from __future__ import annotations

from fastapi import FastAPI

from facade.openai_chat import completions
from facade.openai_chat.routes import router

# Both prefixes serve the same API: /cursor/v1 is the documented base URL, /v1 is what
# tools that hard-code OpenAI's layout expect.
API_PREFIXES = ("/cursor/v1", "/v1")


def attach(app: FastAPI) -> None:
    for prefix in API_PREFIXES:
        app.include_router(router, prefix=prefix, tags=["openai"])
        app.include_router(completions.router, prefix=prefix, tags=["openai"])
