"""cursorgate.v1.ModelService: the union of models the license may use and some account offers,
with the aliases that lead to one of them."""

from __future__ import annotations

import time
from typing import Any

import grpc

from core.api.chat_service import metadata_value
from core.chat.catalog import ModelInfo, owner_of
from core.chat.resolve import ModelResolver
from core.errors import GatewayError
from core.licensing.licenses import LicenseRegistry
from core.licensing.secrets import bearer
from core.pool.accounts import AccountPool
from cursorgate.v1 import models_pb2, models_pb2_grpc

CREATED = int(time.mktime((2025, 1, 1, 0, 0, 0, 0, 0, 0)))


def available_models(pool: AccountPool, seed: dict[str, ModelInfo]) -> dict[str, ModelInfo]:
    """What healthy accounts report; the seed list while no account's details are known."""
    known: dict[str, ModelInfo] = {}
    for account in pool.all():
        if account.enabled and account.models is not None:
            known.update(account.models)
    return known or dict(seed)


def model_proto(info: ModelInfo, name: str | None = None) -> models_pb2.Model:
    """`info` as listed; under `name` (an alias) when given."""
    return models_pb2.Model(
        id=name or info.id,
        owned_by=owner_of(info.id),
        created=CREATED,
        display_name=info.display_name or info.id,
        supports_thinking=info.supports_thinking,
        supports_images=info.supports_images,
        supports_tools=info.supports_tools,
        context_window=info.context_window,
        supports_max_mode=bool(info.supports_max_mode),
        max_mode_context_window=info.max_mode_context_window,
        max_mode_only=info.max_mode_only,
        is_alias=name is not None,
        alias_of=info.id if name is not None else "",
    )


class ModelService(models_pb2_grpc.ModelServiceServicer):
    def __init__(
        self,
        licenses: LicenseRegistry,
        pool: AccountPool,
        seed: dict[str, ModelInfo],
        resolver: ModelResolver | None = None,
    ) -> None:
        self.licenses = licenses
        self.pool = pool
        self.seed = seed
        self.resolver = resolver

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ListModelsResponse:
        try:
            lic = self.licenses.authenticate(bearer(metadata_value(context, "authorization")))
        except GatewayError as err:
            await context.abort_with_status(err.to_status())
            raise
        available = available_models(self.pool, self.seed)
        models = [model_proto(info) for info in available.values() if lic.allows(info.id)]
        if self.resolver is not None:
            for alias in self.resolver.aliases.all():
                served = self.resolver.resolve(alias.name)
                target = available.get(served.model)
                # Listed when it leads somewhere now; a built-in alias that steps aside for a
                # model of the same name is that model, listed above.
                if served.via and target is not None and lic.admits(served.model, served.via):
                    models.append(model_proto(target, alias.name))
        return models_pb2.ListModelsResponse(models=models)
