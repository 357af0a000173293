"""cursorgate.v1.ModelService: the union of models the license may use and some account offers."""

from __future__ import annotations

import time
from typing import Any

import grpc

from core.accounts import AccountPool
from core.catalog import ModelInfo, owner_of
from core.chat_service import metadata_value
from core.errors import GatewayError
from core.licenses import LicenseRegistry
from core.secrets import bearer
from cursorgate.v1 import models_pb2, models_pb2_grpc

CREATED = int(time.mktime((2025, 1, 1, 0, 0, 0, 0, 0, 0)))


def available_models(pool: AccountPool, seed: dict[str, ModelInfo]) -> dict[str, ModelInfo]:
    """What healthy accounts report; the seed list while no account's details are known."""
    known: dict[str, ModelInfo] = {}
    for account in pool.all():
        if account.enabled and account.models is not None:
            known.update(account.models)
    return known or dict(seed)


class ModelService(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, licenses: LicenseRegistry, pool: AccountPool, seed: dict[str, ModelInfo]) -> None:
        self.licenses = licenses
        self.pool = pool
        self.seed = seed

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ListModelsResponse:
        try:
            lic = self.licenses.authenticate(bearer(metadata_value(context, "authorization")))
        except GatewayError as err:
            await context.abort_with_status(err.to_status())
            raise
        models = [
            models_pb2.Model(
                id=info.id,
                owned_by=owner_of(info.id),
                created=CREATED,
                display_name=info.display_name or info.id,
                supports_thinking=info.supports_thinking,
                supports_images=info.supports_images,
                supports_tools=info.supports_tools,
                context_window=info.context_window,
            )
            for info in available_models(self.pool, self.seed).values()
            if lic.allows(info.id)
        ]
        return models_pb2.ListModelsResponse(models=models)
