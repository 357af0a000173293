"""Which model serves a request: the `-max` suffix, aliases, and the Max-mode checks.

Runs when core admits a chat (before routing), and when it lists models. Knows the account pool
(what accounts report) and the alias table; the upstream dialects only see the outcome
(`ChatRequest.model`, `ChatRequest.max_mode`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.chat.aliases import AliasTable, Offer
from core.chat.catalog import ModelInfo
from core.errors import Code, GatewayError, invalid
from core.pool.accounts import AccountPool

MAX_SUFFIX = "-max"


@dataclass(frozen=True, slots=True)
class Served:
    # What the caller sent as `model`.
    requested: str
    # The concrete model (before effort variants, which the chat service applies).
    model: str
    # Aliases passed through to reach `model`, outermost first.
    via: tuple[str, ...] = ()
    max_mode: bool = False


def max_mode_required(requested: str, model: str) -> GatewayError:
    shown = f"'{requested}'" if requested == model else f"'{requested}' (served by '{model}')"
    return GatewayError(
        Code.ERROR_CODE_MAX_MODE_REQUIRED,
        f"The model {shown} is served only in Cursor's Max mode: ask for '{requested}{MAX_SUFFIX}' "
        'instead, or add "max_mode": true to the request body.',
        param="model",
    )


class ModelResolver:
    def __init__(self, pool: AccountPool, catalog: dict[str, ModelInfo], aliases: AliasTable) -> None:
        self.pool = pool
        self.catalog = catalog
        self.aliases = aliases

    def offer(self, model: str) -> Offer:
        """How well the pool offers `model` now (see aliases.Offer)."""
        now = time.time()
        best = Offer.NONE
        for account in self.pool.all():
            if not account.enabled:
                continue
            if account.models is None:
                rank = Offer.UNKNOWN if account.healthy(now) else Offer.NONE
            elif model in account.models:
                rank = Offer.READY if account.healthy(now) else Offer.COOLING
            else:
                continue
            best = min(best, rank)
        return best

    def reported(self, model: str) -> ModelInfo | None:
        """What an enabled account reported about `model`, if any did."""
        for account in self.pool.all():
            if account.enabled and account.models is not None and model in account.models:
                return account.models[model]
        return None

    def known(self, name: str) -> bool:
        """A name in its own right: a catalog model, an alias, or one some account reports."""
        return name in self.catalog or self.aliases.get(name) is not None or self.reported(name) is not None

    def split_max(self, name: str) -> tuple[str, bool]:
        """`claude-4.5-sonnet-max` -> (`claude-4.5-sonnet`, True). A name known as it is stays
        whole: `gpt-5.1-codex-max` is a model of its own."""
        if not name.endswith(MAX_SUFFIX) or self.known(name):
            return name, False
        stem = name.removesuffix(MAX_SUFFIX)
        return (stem, True) if stem and self.known(stem) else (name, False)

    def resolve(self, name: str, max_mode: bool = False) -> Served:
        base, suffixed = self.split_max(name)
        found = self.aliases.resolve(base, self.offer)
        return Served(requested=name, model=found.model, via=found.via, max_mode=max_mode or suffixed)

    def check_max_mode(self, served: Served, model: str, max_mode: bool) -> None:
        """Refuses, before any upstream call, what the accounts' own reports rule out."""
        info = self.reported(model)
        if info is None:
            return  # nothing reported (seed catalog): Cursor decides
        if max_mode and info.supports_max_mode is False:
            raise invalid(
                f"The model '{model}' is not offered in Max mode: drop the '{MAX_SUFFIX}' suffix "
                "or max_mode.",
                "model",
            )
        if not max_mode and info.max_mode_only:
            raise max_mode_required(served.requested, model)
