"""The OpenAI Responses API (`/v1/responses`): protocol models, conversion, streaming, routes."""

from __future__ import annotations

from fastapi import FastAPI

from facade.openai_chat import API_PREFIXES
from facade.openai_responses.routes import router


def attach(app: FastAPI) -> None:
    for prefix in API_PREFIXES:
        app.include_router(router, prefix=prefix, tags=["openai-responses"])
