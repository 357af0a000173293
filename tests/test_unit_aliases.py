"""Model aliases, the -max suffix and Max-mode checks, without processes. Expected values are
written out by hand from the documented defaults, not read from the table under test."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import errors_pb2
from core.chat.aliases import AliasError, AliasTable, Offer, Resolution, parse_aliases
from core.chat.catalog import ModelInfo, seed_catalog
from core.chat.resolve import ModelResolver
from core.errors import Code, GatewayError
from core.licensing.licenses import License
from core.pool.accounts import Account, AccountPool
from core.upstream.errors import classify


def offers(**ranks: Offer) -> Callable[[str], Offer]:
    """An offer function: the named models at the given rank, every other one NONE."""
    table = {name.replace("_", "-"): rank for name, rank in ranks.items()}
    return lambda model: table.get(model, Offer.NONE)


def everything(model: str) -> Offer:
    return Offer.READY if model.startswith(("claude-4", "gpt-5", "gemini-3")) else Offer.NONE


# --- parsing CURSORGATE_MODEL_ALIASES ---


def test_parse_accepts_a_name_or_a_list() -> None:
    assert parse_aliases("") == {}
    assert parse_aliases("  ") == {}
    assert parse_aliases('{"fast": "gpt-5.2-fast", "team/x": ["gpt-5.2", "gpt-5-mini"]}') == {
        "fast": ("gpt-5.2-fast",),
        "team/x": ("gpt-5.2", "gpt-5-mini"),
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"a": ', "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"a": []}', "non-empty list"),
        ('{"a": 5}', "non-empty list"),
        ('{"a": ["b", "b"]}', "listed twice"),
        ('{"has space": "b"}', "use letters, digits"),
        ('{"a": ["ok", ""]}', "non-empty string"),
        ('{"a": "b", "b": "a"}', "alias cycle: a -> b -> a"),
        ('{"loop": "loop"}', "alias cycle: loop -> loop"),
    ],
)
def test_parse_refuses_bad_tables_clearly(text: str, fragment: str) -> None:
    with pytest.raises(AliasError) as caught:
        AliasTable(env=parse_aliases(text))
    assert fragment in str(caught.value)


# --- resolution ---


def test_the_documents_names_resolve_to_the_current_models() -> None:
    table = AliasTable()
    assert table.resolve("claude-3.7-sonnet-thinking", everything) == Resolution(
        "claude-4.5-sonnet-thinking", ("claude-3.7-sonnet-thinking",)
    )
    assert table.resolve("claude-3.7-sonnet", everything) == Resolution(
        "claude-4.5-sonnet", ("claude-3.7-sonnet",)
    )
    assert table.resolve("gpt-4o", everything) == Resolution("gpt-5.2", ("gpt-4o",))
    assert table.resolve("o3", everything) == Resolution("gpt-5.2-high", ("o3",))
    assert table.resolve("gemini-2.5-pro", everything) == Resolution("gemini-3-pro", ("gemini-2.5-pro",))
    # Not an alias: unchanged, whatever is offered.
    assert table.resolve("composer-1", everything) == Resolution("composer-1")


def test_the_first_target_a_healthy_account_offers_wins() -> None:
    table = AliasTable(env={"pick": ("a", "b", "c")})
    assert table.resolve("pick", offers(b=Offer.READY, c=Offer.READY)).model == "b"
    # A healthy account with unknown models beats one cooling down.
    assert table.resolve("pick", offers(a=Offer.COOLING, b=Offer.UNKNOWN)).model == "b"
    assert table.resolve("pick", offers(a=Offer.COOLING, c=Offer.COOLING)).model == "a"
    # Nothing offered: the first target (the error then names it).
    assert table.resolve("pick", offers()) == Resolution("a", ("pick",))
    # Only the older fallback offered.
    assert table.resolve("claude-3.7-sonnet-thinking", offers(claude_4_sonnet_thinking=Offer.READY)) == (
        Resolution("claude-4-sonnet-thinking", ("claude-3.7-sonnet-thinking",))
    )


def test_a_builtin_alias_steps_aside_for_a_model_an_account_still_reports() -> None:
    table = AliasTable(env={"gpt-4.1": ("gpt-5-mini",)})
    still_offered = offers(gpt_4o=Offer.READY, gpt_4_1=Offer.READY, gpt_5_2=Offer.READY)
    assert table.resolve("gpt-4o", still_offered) == Resolution("gpt-4o")
    # An operator alias always applies.
    assert table.resolve("gpt-4.1", still_offered) == Resolution("gpt-5-mini", ("gpt-4.1",))


def test_layers_and_chains() -> None:
    table = AliasTable(env={"y": ("composer-1",), "gpt-4o": ("gpt-5-mini",)}, admin={"x": ("y",)})
    assert table.resolve("x", everything) == Resolution("composer-1", ("x", "y"))
    assert table.resolve("gpt-4o", everything) == Resolution("gpt-5-mini", ("gpt-4o",))
    assert table.get("gpt-4o") is not None and table.get("gpt-4o").source == "env"  # type: ignore[union-attr]
    table.set("gpt-4o", ["gpt-5.2-fast"])
    assert table.resolve("gpt-4o", everything) == Resolution("gpt-5.2-fast", ("gpt-4o",))
    assert table.remove("gpt-4o") is True
    assert table.resolve("gpt-4o", everything).model == "gpt-5-mini"
    assert table.remove("gpt-4o") is False  # the env alias stays: it is not the admin's


def test_a_change_that_closes_a_cycle_is_refused_and_changes_nothing() -> None:
    table = AliasTable()
    with pytest.raises(AliasError) as caught:
        table.set("claude-4.5-sonnet-thinking", ["claude-3.7-sonnet-thinking"])
    assert "claude-4.5-sonnet-thinking -> claude-3.7-sonnet-thinking -> claude-4.5-sonnet-thinking" in str(
        caught.value
    )
    assert table.get("claude-4.5-sonnet-thinking") is None

    # Removing an override can bring back what closes a cycle.
    layered = AliasTable(env={"p": ("q",)}, admin={"p": ("r",), "q": ("p",)})
    with pytest.raises(AliasError):
        layered.remove("p")
    assert layered.resolve("q", offers(r=Offer.READY)) == Resolution("r", ("q", "p"))


# --- -max and Max-mode checks ---


def resolver(models: dict[str, ModelInfo] | None, aliases: AliasTable | None = None) -> ModelResolver:
    pool = AccountPool([Account(id="acc_1", token="t", models=models)])
    return ModelResolver(pool, seed_catalog(), aliases or AliasTable())


def test_max_suffix() -> None:
    models = {
        "claude-4.5-sonnet": ModelInfo("claude-4.5-sonnet"),
        "claude-4.5-sonnet-thinking": ModelInfo("claude-4.5-sonnet-thinking"),
        "gpt-5.1-codex-max": ModelInfo("gpt-5.1-codex-max"),
        "fresh-model": ModelInfo("fresh-model"),
    }
    r = resolver(models)
    assert r.split_max("claude-4.5-sonnet-max") == ("claude-4.5-sonnet", True)
    assert r.split_max("fresh-model-max") == ("fresh-model", True)
    # A model whose own name ends in -max stays whole.
    assert r.split_max("gpt-5.1-codex-max") == ("gpt-5.1-codex-max", False)
    assert r.split_max("no-such-thing-max") == ("no-such-thing-max", False)
    assert r.split_max("-max") == ("-max", False)

    served = r.resolve("claude-3.7-sonnet-thinking-max")
    assert (served.requested, served.model, served.max_mode) == (
        "claude-3.7-sonnet-thinking-max",
        "claude-4.5-sonnet-thinking",
        True,
    )
    assert served.via == ("claude-3.7-sonnet-thinking",)
    assert r.resolve("claude-4.5-sonnet", max_mode=True).max_mode is True
    assert r.resolve("claude-4.5-sonnet").max_mode is False


def test_max_mode_checks_use_what_accounts_report() -> None:
    models = {
        "only-max": ModelInfo("only-max", supports_max_mode=True, max_mode_only=True),
        "no-max": ModelInfo("no-max", supports_max_mode=False),
        "either": ModelInfo("either", supports_max_mode=True),
    }
    r = resolver(models, AliasTable(env={"old": ("only-max",)}))
    with pytest.raises(GatewayError) as caught:
        r.check_max_mode(r.resolve("only-max"), "only-max", max_mode=False)
    assert caught.value.code == Code.ERROR_CODE_MAX_MODE_REQUIRED and caught.value.param == "model"
    assert "'only-max-max'" in caught.value.message and '"max_mode": true' in caught.value.message
    # Through an alias, the advice names what the caller sent.
    with pytest.raises(GatewayError) as caught:
        r.check_max_mode(r.resolve("old"), "only-max", max_mode=False)
    assert caught.value.message == (
        "The model 'old' (served by 'only-max') is served only in Cursor's Max mode: ask for 'old-max' "
        'instead, or add "max_mode": true to the request body.'
    )
    r.check_max_mode(r.resolve("only-max-max"), "only-max", max_mode=True)
    with pytest.raises(GatewayError) as caught:
        r.check_max_mode(r.resolve("no-max-max"), "no-max", max_mode=True)
    assert caught.value.code == Code.ERROR_CODE_INVALID_REQUEST
    r.check_max_mode(r.resolve("either"), "either", max_mode=False)
    r.check_max_mode(r.resolve("either-max"), "either", max_mode=True)
    # Nothing reported (models not fetched yet): Cursor decides.
    unknown = resolver(None)
    unknown.check_max_mode(unknown.resolve("x"), "x", max_mode=True)


def test_allow_lists_apply_to_the_alias_and_the_served_model() -> None:
    alias_only = License(id="l1", key_hash="h1", allowed_models=frozenset({"gpt-4o"}))
    target_only = License(id="l2", key_hash="h2", allowed_models=frozenset({"gpt-5.2"}))
    other = License(id="l3", key_hash="h3", allowed_models=frozenset({"composer-1"}))
    assert alias_only.admits("gpt-5.2", ("gpt-4o",))
    assert not alias_only.admits("gpt-5.2")
    assert target_only.admits("gpt-5.2", ("gpt-4o",))
    assert not other.admits("gpt-5.2", ("gpt-4o",))


def test_cursors_max_mode_required_error_tells_what_to_do() -> None:
    details = errors_pb2.ErrorDetails(
        error=errors_pb2.ErrorDetails.Error.ERROR_MAX_MODE_REQUIRED,
        details=errors_pb2.CustomErrorDetails(title="Max Mode Required"),
    )
    packed = ConnectAny(
        type_url="type.googleapis.com/aiserver.v1.ErrorDetails", value=details.SerializeToString()
    )
    err = classify(ConnectError(ConnectCode.PERMISSION_DENIED, "Max Mode Required", details=[packed]))
    assert err.code == Code.ERROR_CODE_MAX_MODE_REQUIRED
    assert not err.retryable and err.param == "model"
    assert "'-max'" in err.message and '"max_mode": true' in err.message


def test_max_mode_messages_in_full() -> None:
    models = {
        "only-max": ModelInfo("only-max", supports_max_mode=True, max_mode_only=True),
        "no-max": ModelInfo("no-max", supports_max_mode=False),
    }
    r = resolver(models)
    with pytest.raises(GatewayError) as caught:
        r.check_max_mode(r.resolve("only-max"), "only-max", max_mode=False)
    assert caught.value.message == (
        "The model 'only-max' is served only in Cursor's Max mode: ask for 'only-max-max' "
        'instead, or add "max_mode": true to the request body.'
    )
    with pytest.raises(GatewayError) as caught:
        r.check_max_mode(r.resolve("no-max-max"), "no-max", max_mode=True)
    assert (
        caught.value.message
        == "The model 'no-max' is not offered in Max mode: drop the '-max' suffix or max_mode."
    )
    assert caught.value.param == "model"


NOW_FAR = 4_000_000_000.0  # a cool-down that lasts past any test run


@pytest.mark.parametrize(
    ("accounts", "offer"),
    [
        ([], Offer.NONE),
        ([Account(id="a", token="t", models={"m": ModelInfo("m")})], Offer.READY),
        ([Account(id="a", token="t", models={"m": ModelInfo("m")}, cooldown_until=NOW_FAR)], Offer.COOLING),
        ([Account(id="a", token="t", models={"other": ModelInfo("other")})], Offer.NONE),
        ([Account(id="a", token="t", models=None)], Offer.UNKNOWN),
        ([Account(id="a", token="t", models=None, cooldown_until=NOW_FAR)], Offer.NONE),
        ([Account(id="a", token="t", models={"m": ModelInfo("m")}, enabled=False)], Offer.NONE),
        ([Account(id="a", token="t", models=None, enabled=False)], Offer.NONE),
        # The best offer wins, whatever comes first: a disabled or non-offering account is skipped.
        (
            [
                Account(id="off", token="t", models={"m": ModelInfo("m")}, enabled=False),
                Account(id="other", token="t", models={"x": ModelInfo("x")}),
                Account(id="cool", token="t", models={"m": ModelInfo("m")}, cooldown_until=NOW_FAR),
                Account(id="a", token="t", models={"m": ModelInfo("m")}),
            ],
            Offer.READY,
        ),
        (
            [
                Account(id="cool", token="t", models={"m": ModelInfo("m")}, cooldown_until=NOW_FAR),
                Account(id="unknown", token="t", models=None),
            ],
            Offer.UNKNOWN,
        ),
    ],
)
def test_how_well_the_pool_offers_a_model(accounts: list[Account], offer: Offer) -> None:
    assert ModelResolver(AccountPool(accounts), seed_catalog(), AliasTable()).offer("m") is offer
