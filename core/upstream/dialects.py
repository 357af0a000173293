"""The dialects this build speaks, made once per process from the shared context."""

from __future__ import annotations

from core.upstream.agent import AgentDialect
from core.upstream.base import Dialect, DialectName
from core.upstream.context import UpstreamContext
from core.upstream.inference import InferenceDialect
from core.upstream.legacy import LegacyDialect

# The dialects this build speaks (tests run their end-to-end suites once per entry).
AVAILABLE: tuple[DialectName, ...] = (DialectName.INFERENCE, DialectName.AGENT, DialectName.LEGACY)


def make_dialects(ctx: UpstreamContext) -> dict[DialectName, Dialect]:
    return {
        DialectName.INFERENCE: InferenceDialect(ctx),
        DialectName.AGENT: AgentDialect(ctx),
        DialectName.LEGACY: LegacyDialect(ctx),
    }
