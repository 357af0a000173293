"""Cursor's model catalog -> the pool's ModelInfo, and the model name each dialect sends."""

from __future__ import annotations

from aiserver.v1 import models_pb2
from core.chat.catalog import ModelInfo
from core.pool.accounts import Account


def models_from_catalog(response: models_pb2.AvailableModelsResponse) -> dict[str, ModelInfo]:
    """AiService/AvailableModels -> what the pool routes on (shared by every IDE-profile dialect)."""
    models = {
        m.name: ModelInfo(
            id=m.name,
            display_name=m.client_display_name or m.name,
            supports_thinking=m.supports_thinking,
            supports_images=m.supports_images,
            supports_tools=m.supports_agent,
            context_window=m.context_token_limit,
            server_name=m.server_model_name if m.server_model_name != m.name else "",
            supports_max_mode=m.supports_max_mode if m.HasField("supports_max_mode") else None,
            max_mode_only=m.HasField("supports_non_max_mode") and not m.supports_non_max_mode,
            max_mode_context_window=m.context_token_limit_for_max_mode,
        )
        for m in response.models
    }
    for name in response.model_names:
        models.setdefault(name, ModelInfo(id=name, display_name=name))
    return models


def wire_model(account: Account, model: str) -> str:
    """The name Cursor wants on the wire: its server_model_name where it lists a different one."""
    info = account.models.get(model) if account.models else None
    return info.server_name if info is not None and info.server_name else model
