"""The seed's model list (shared/research/models.md): served until accounts report their own."""

from __future__ import annotations

from dataclasses import dataclass

SEED_MODELS: tuple[str, ...] = (
    "composer-1",
    "claude-4.5-opus-high",
    "claude-4.5-opus-high-thinking",
    "claude-4.5-sonnet",
    "claude-4.5-sonnet-thinking",
    "gpt-5.2-codex",
    "gpt-5.2-codex-high",
    "gpt-5.2-codex-low",
    "gpt-5.2-codex-xhigh",
    "gpt-5.2-codex-fast",
    "gpt-5.2-codex-high-fast",
    "gpt-5.2-codex-low-fast",
    "gpt-5.2-codex-xhigh-fast",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex-max-high",
    "gpt-5.1-codex-max-low",
    "gpt-5.1-codex-max-xhigh",
    "gpt-5.1-codex-max-medium-fast",
    "gpt-5.1-codex-max-high-fast",
    "gpt-5.1-codex-max-low-fast",
    "gpt-5.1-codex-max-xhigh-fast",
    "gpt-5.2",
    "gpt-5.2-fast",
    "gpt-5.2-high",
    "gpt-5.2-high-fast",
    "gpt-5.2-xhigh",
    "gpt-5.2-xhigh-fast",
    "gpt-5.2-low",
    "gpt-5.2-low-fast",
    "gpt-5.1-high",
    "gemini-3-pro",
    "gemini-3-flash",
    "gpt-5.1-codex-mini",
    "gpt-5.1-codex-mini-high",
    "gpt-5.1-codex-mini-low",
    "claude-4.5-haiku",
    "claude-4.5-haiku-thinking",
    "grok-code-fast-1",
    "claude-4-sonnet",
    "claude-4-sonnet-thinking",
    "claude-4-sonnet-1m",
    "claude-4-sonnet-1m-thinking",
    "gpt-5-mini",
    "gemini-2.5-flash",
    "kimi-k2-instruct",
)

THINKING_SUFFIX = "-thinking"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    display_name: str = ""
    supports_thinking: bool = False
    supports_images: bool = True
    supports_tools: bool = True
    context_window: int = 0
    # The name Cursor wants on the wire when it differs from the public id (AvailableModels 18).
    server_name: str = ""
    # Max mode as AvailableModels reports it (supports_max_mode, 14); None: not reported.
    supports_max_mode: bool | None = None
    # Cursor serves the model only in Max mode (supports_non_max_mode, 19, reported false).
    max_mode_only: bool = False
    # context_token_limit_for_max_mode (16); 0: unknown.
    max_mode_context_window: int = 0

    @property
    def owned_by(self) -> str:
        return owner_of(self.id)


def owner_of(model: str) -> str:
    for prefix, owner in (
        ("claude", "anthropic"),
        ("gpt", "openai"),
        ("o3", "openai"),
        ("gemini", "google"),
        ("grok", "xai"),
        ("kimi", "moonshot"),
        ("composer", "cursor"),
    ):
        if model.startswith(prefix):
            return owner
    return "cursor"


def seed_catalog() -> dict[str, ModelInfo]:
    return {
        name: ModelInfo(id=name, display_name=name, supports_thinking=name.endswith(THINKING_SUFFIX))
        for name in SEED_MODELS
    }


# reasoning_effort -> model-name suffixes to try, best first (Cursor exposes effort as variants:
# gpt-5.2-high, gpt-5.2-xhigh-fast, ...). "medium" is the unsuffixed model.
EFFORT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "minimal": ("low",),
    "low": ("low",),
    "medium": (),
    "high": ("high",),
    "xhigh": ("xhigh", "high"),
}


def effort_variant(model: str, effort: str, known: set[str] | dict[str, ModelInfo]) -> str:
    """The variant of `model` that matches a reasoning effort, when the catalog has one."""
    if effort in ("", "none") or model.endswith(THINKING_SUFFIX):
        return model
    base, fast = (model.removesuffix("-fast"), "-fast") if model.endswith("-fast") else (model, "")
    for suffix in EFFORT_SUFFIXES.get(effort, ()):
        candidate = f"{base}-{suffix}{fast}"
        if candidate in known:
            return candidate
    thinking = f"{model}{THINKING_SUFFIX}"
    return thinking if thinking in known else model
