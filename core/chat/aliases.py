"""Model aliases: retired or shorthand model names callers still send, mapped to current models.

Three layers, later ones winning: the built-in defaults below, `CURSORGATE_MODEL_ALIASES` (JSON,
read at start) and aliases set through the admin API (stored in the database). This module holds
the table, its validation (names, cycles) and resolution; it knows nothing of accounts: callers
say how well each model is offered.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT, ENV, ADMIN = "default", "env", "admin"
LAYERS = (DEFAULT, ENV, ADMIN)

# Model ids as Cursor and callers spell them: "claude-4.5-sonnet", "vendor/with-slash".
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
MAX_NAME = 200
MAX_TARGETS = 16
# Aliases may point at aliases; deeper chains than this are a configuration mistake.
MAX_DEPTH = 8


class AliasError(ValueError):
    """A bad alias or alias table; the message is safe to show (names only, no secrets)."""


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    # Tried in order; each a model id or another alias.
    targets: tuple[str, ...]
    source: str = DEFAULT
    note: str = ""


class Offer(enum.IntEnum):
    """How well some account offers a model right now, best first."""

    # A healthy account reports it in its AvailableModels.
    READY = 0
    # A healthy account whose models are not fetched yet (it may offer anything).
    UNKNOWN = 1
    # Only accounts cooling down report it.
    COOLING = 2
    NONE = 3

    @property
    def reported(self) -> bool:
        return self in (Offer.READY, Offer.COOLING)


@dataclass(frozen=True, slots=True)
class Resolution:
    # The concrete model to serve.
    model: str
    # The aliases passed through, outermost first; empty when `model` was asked for directly.
    via: tuple[str, ...] = ()


# --- The defaults -------------------------------------------------------------------------
# Targets are the current ids of the service document (shared/seed/cursor-api-doc.md), newest
# first; the older entry is the fallback for accounts that do not offer the newer one yet.
# Sources for the retired names: Cursor's public model table (docs.cursor.com/settings/models,
# early 2025: claude-3.7-sonnet, claude-3.5-sonnet, claude-3.5-haiku, claude-3-opus, gpt-4o,
# gpt-4o-mini, gpt-4.5-preview, o1, o1-mini, o3-mini) and its mid-2025 additions (claude-4-opus,
# gpt-4.1, o3, o4-mini, gemini-2.5-pro), none of which the document lists any more.

SONNET = ("claude-4.5-sonnet", "claude-4-sonnet")
SONNET_THINKING = ("claude-4.5-sonnet-thinking", "claude-4-sonnet-thinking")
OPUS = ("claude-4.5-opus-high",)
OPUS_THINKING = ("claude-4.5-opus-high-thinking",)
GPT = ("gpt-5.2",)
GPT_REASONING = ("gpt-5.2-high",)
GPT_MINI = ("gpt-5-mini",)


def _default(name: str, targets: tuple[str, ...], note: str) -> Alias:
    return Alias(name, targets, DEFAULT, note)


DEFAULT_ALIASES: tuple[Alias, ...] = (
    _default("claude-3.5-sonnet", SONNET, "Claude 3.5 Sonnet, retired by Cursor: the current Sonnet."),
    _default(
        "claude-3.7-sonnet",
        SONNET,
        "Claude 3.7 Sonnet, retired by Cursor: the current Sonnet.",
    ),
    _default(
        "claude-3.7-sonnet-thinking",
        SONNET_THINKING,
        "Claude 3.7 Sonnet thinking, the service document's streaming example, retired by Cursor: "
        "the current Sonnet with thinking.",
    ),
    _default("claude-3.5-haiku", ("claude-4.5-haiku",), "Claude 3.5 Haiku, retired: the current Haiku."),
    _default("claude-3-opus", OPUS, "Claude 3 Opus, retired: the current Opus."),
    _default("claude-4-opus", OPUS, "Claude 4 Opus, retired: the current Opus."),
    _default("claude-4-opus-thinking", OPUS_THINKING, "Claude 4 Opus thinking, retired: the current Opus."),
    _default("claude-4.1-opus", OPUS, "Claude 4.1 Opus, retired: the current Opus."),
    _default(
        "gpt-4o",
        GPT,
        "GPT-4o, the service document's function-calling example, retired by Cursor: the current GPT.",
    ),
    _default("gpt-4.1", GPT, "GPT-4.1, retired: the current GPT."),
    _default("gpt-4.5-preview", GPT, "GPT-4.5 preview, retired: the current GPT."),
    _default("gpt-4o-mini", GPT_MINI, "GPT-4o mini, retired: the current small GPT."),
    _default("o1", GPT_REASONING, "OpenAI o1 (a reasoning model), retired: the current GPT at high effort."),
    _default("o3", GPT_REASONING, "OpenAI o3 (a reasoning model), retired: the current GPT at high effort."),
    _default("o1-mini", GPT_MINI, "OpenAI o1-mini, retired: the current small GPT."),
    _default("o3-mini", GPT_MINI, "OpenAI o3-mini, retired: the current small GPT."),
    _default("o4-mini", GPT_MINI, "OpenAI o4-mini, retired: the current small GPT."),
    _default("gemini-2.5-pro", ("gemini-3-pro",), "Gemini 2.5 Pro, retired: the current Gemini Pro."),
    # The Cursor CLI's own short names (`cursor-agent --model sonnet-4.5`).
    _default("sonnet-4.5", ("claude-4.5-sonnet",), "The Cursor CLI's name for Claude 4.5 Sonnet."),
    _default(
        "sonnet-4.5-thinking",
        ("claude-4.5-sonnet-thinking",),
        "The Cursor CLI's name for Claude 4.5 Sonnet thinking.",
    ),
    _default("opus-4.5", OPUS, "The Cursor CLI's name for Claude 4.5 Opus."),
    _default("opus-4.5-thinking", OPUS_THINKING, "The Cursor CLI's name for Claude 4.5 Opus thinking."),
    # Anthropic's own API ids, which the anthropic SDKs and Claude Code send (Claude Code 2.1.197
    # defaults to claude-opus-4-8: shared/research/clients.md). Thinking is asked for by the
    # request's `thinking` field, which picks the -thinking variant of what these resolve to.
    *(
        _default(name, ("claude-4.5-sonnet",), "Anthropic's API id for Claude Sonnet 4.5.")
        for name in ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
    ),
    *(
        _default(name, ("claude-4-sonnet", "claude-4.5-sonnet"), "Anthropic's API id for Claude Sonnet 4.")
        for name in ("claude-sonnet-4-0", "claude-sonnet-4-20250514")
    ),
    *(
        _default(name, SONNET, "Anthropic's API id for Claude 3.7 Sonnet, retired: the current Sonnet.")
        for name in ("claude-3-7-sonnet-latest", "claude-3-7-sonnet-20250219")
    ),
    *(
        _default(name, ("claude-4.5-haiku",), "Anthropic's API id for a Claude Haiku: the current Haiku.")
        for name in ("claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-3-5-haiku-latest")
    ),
    *(
        _default(
            name, OPUS, "Anthropic's API id for a Claude Opus (Claude Code's default): the current Opus."
        )
        for name in (
            "claude-opus-4-5",
            "claude-opus-4-5-20251101",
            "claude-opus-4-1",
            "claude-opus-4-1-20250805",
            "claude-opus-4-8",
        )
    ),
)


# --- Validation ---------------------------------------------------------------------------


def check_name(name: object, what: str = "alias name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise AliasError(f"{what}: must be a non-empty string.")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise AliasError(f"{what}: at most {MAX_NAME} characters.")
    if not NAME.match(name):
        raise AliasError(
            f"{what} '{name[:80]}': use letters, digits and . _ : / @ + - only, "
            "starting with a letter or digit."
        )
    return name


def check_targets(name: str, targets: object) -> tuple[str, ...]:
    """A target list: one name or a non-empty list of distinct names, none the alias itself."""
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list | tuple) or not targets:
        raise AliasError(f"alias '{name}': targets must be a model name or a non-empty list of them.")
    if len(targets) > MAX_TARGETS:
        raise AliasError(f"alias '{name}': at most {MAX_TARGETS} targets.")
    checked = tuple(check_name(t, f"alias '{name}': target") for t in targets)
    if len(set(checked)) != len(checked):
        raise AliasError(f"alias '{name}': a target is listed twice.")
    return checked


def parse_aliases(text: str) -> dict[str, tuple[str, ...]]:
    """`{"alias": "model"}` or `{"alias": ["first choice", "fallback"]}`; blank: no aliases.
    Errors do not name the setting: the caller does (see config.settings_problems)."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AliasError(
            f"not valid JSON ({err.msg} at position {err.pos}); "
            'expected an object like {"my-model": "claude-4.5-sonnet", "fast": ["gpt-5.2-fast", "gpt-5.2"]}.'
        ) from None
    if not isinstance(data, dict):
        raise AliasError('expected a JSON object like {"my-model": "claude-4.5-sonnet"}.')
    table = {check_name(name): check_targets(name, targets) for name, targets in data.items()}
    return table


def find_cycle(targets_of: Callable[[str], Sequence[str] | None], names: Iterable[str]) -> list[str] | None:
    """A cycle among aliases as the path that closes it (["a", "b", "a"]), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        targets = targets_of(name)
        if targets is None:
            return None
        for target in targets:
            cycle = visit(target, [*path, name])
            if cycle is not None:
                return cycle
        done.add(name)
        return None

    for name in names:
        cycle = visit(name, [])
        if cycle is not None:
            return cycle
    return None


# --- The table ----------------------------------------------------------------------------


class AliasTable:
    """The merged alias table. Changes are validated whole: a change that would close a cycle,
    in any combination of layers, is refused and leaves the table as it was."""

    def __init__(
        self,
        env: Mapping[str, Sequence[str]] | None = None,
        admin: Mapping[str, Sequence[str]] | None = None,
        defaults: Iterable[Alias] = DEFAULT_ALIASES,
    ) -> None:
        self._layers: dict[str, dict[str, Alias]] = {
            DEFAULT: {a.name: a for a in defaults},
            ENV: {n: Alias(n, tuple(t), ENV) for n, t in (env or {}).items()},
            ADMIN: {n: Alias(n, tuple(t), ADMIN) for n, t in (admin or {}).items()},
        }
        self._check(self._layers)

    def get(self, name: str) -> Alias | None:
        return self._lookup(self._layers, name)

    def all(self) -> list[Alias]:
        names = sorted({n for layer in self._layers.values() for n in layer})
        return [alias for n in names if (alias := self.get(n)) is not None]

    def admin_names(self) -> set[str]:
        return set(self._layers[ADMIN])

    def set(self, name: str, targets: object, *, apply: bool = True) -> Alias:
        """Creates or replaces an admin alias (validated; a cycle is refused). With
        `apply=False`, only validates: the caller stores it first, then applies it."""
        name = check_name(name)
        alias = Alias(name, check_targets(name, targets), ADMIN)
        layers = {**self._layers, ADMIN: {**self._layers[ADMIN], name: alias}}
        self._check(layers, name)
        if apply:
            self._layers = layers
        return alias

    def remove(self, name: str, *, apply: bool = True) -> bool:
        """Removes an admin alias; False when there is none of that name."""
        if name not in self._layers[ADMIN]:
            return False
        admin = {n: a for n, a in self._layers[ADMIN].items() if n != name}
        layers = {**self._layers, ADMIN: admin}
        # What the admin alias hid applies again, and may close a cycle with other admin aliases.
        self._check(layers)
        if apply:
            self._layers = layers
        return True

    def replace_admin(self, admin: Mapping[str, Sequence[str]]) -> None:
        """The admin layer as stored (at start, and when another replica changed it)."""
        layers = {**self._layers, ADMIN: {n: Alias(n, tuple(t), ADMIN) for n, t in admin.items()}}
        self._check(layers)
        self._layers = layers

    def resolve(self, name: str, offer: Callable[[str], Offer]) -> Resolution:
        """The model `name` stands for: among the alias's targets (aliases expanded, in order),
        the first best offered one. A built-in alias steps aside for a name some account still
        reports itself; operator aliases always apply."""
        alias = self.get(name)
        if alias is None or (alias.source == DEFAULT and offer(name).reported):
            return Resolution(name)
        best: Resolution | None = None
        best_offer = Offer.NONE
        for leaf in self._leaves(alias, (name,)):
            rank = offer(leaf.model)
            if best is None or rank < best_offer:
                best, best_offer = leaf, rank
            if rank is Offer.READY:
                break
        return best if best is not None else Resolution(name)

    def _leaves(self, alias: Alias, via: tuple[str, ...]) -> Iterable[Resolution]:
        for target in alias.targets:
            inner = self.get(target)
            if inner is None or len(via) >= MAX_DEPTH:
                yield Resolution(target, via)
            else:
                yield from self._leaves(inner, (*via, target))

    @staticmethod
    def _lookup(layers: Mapping[str, Mapping[str, Alias]], name: str) -> Alias | None:
        for source in (ADMIN, ENV, DEFAULT):
            alias = layers[source].get(name)
            if alias is not None:
                return alias
        return None

    @classmethod
    def _check(cls, layers: Mapping[str, Mapping[str, Alias]], changed: str = "") -> None:
        """Refuses a table with a cycle; the message walks it from `changed` when that is on it."""

        def targets_of(name: str) -> tuple[str, ...] | None:
            alias = cls._lookup(layers, name)
            return alias.targets if alias is not None else None

        names = sorted({n for layer in layers.values() for n in layer})
        cycle = find_cycle(targets_of, [changed, *names] if changed else names)
        if cycle is not None:
            raise AliasError(f"alias cycle: {' -> '.join(cycle)}; an alias may not lead back to itself.")
