"""Structured outputs (`response_format`, Responses `text.format`) on the real stack, and the
checks of core/chat/structured.py in process.

The simulator plays a compliant model: told a schema, it answers an example of it
(simulator/script.py: every required property; strings "sim-<name>", numbers 1.5, integers 1,
the first enum value); `sim: json=broken` breaks its answer once, `json=always_broken` always.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from google.protobuf.json_format import MessageToDict
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from core.chat.structured import check, strip_fences
from cursorgate.v1 import chat_pb2
from facade.openai_chat.convert import to_chat_request
from facade.openai_chat.schemas import ChatCompletionRequest
from tests.procs import Stack


class Weather(BaseModel):
    city: str
    temperature: float
    unit: Literal["celsius", "fahrenheit"]
    days: int


EXPECTED = Weather(city="sim-city", temperature=1.5, unit="celsius", days=1)

CITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=stack.license, max_retries=0)


def upstream_requests(stack: Stack) -> list[dict[str, Any]]:
    """What each chat call asked Cursor for, in the simulator's dialect-neutral view."""
    return [r["view"] for r in stack.chat_requests()]


def city_format(strict: bool) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": strict}}


# --- chat completions ---------------------------------------------------------------------------


def test_chat_parse_with_a_pydantic_model(client: openai.OpenAI, stack: Stack) -> None:
    completion = client.chat.completions.parse(
        model="gpt-5.2",
        messages=[{"role": "system", "content": "You report weather."}, {"role": "user", "content": "Oslo?"}],
        response_format=Weather,
    )
    assert completion.choices[0].message.parsed == EXPECTED
    context = upstream_requests(stack)[-1]["system"]
    assert context.startswith("You report weather.")
    assert "<json-schema>" in context and '"unit":{"enum":["celsius","fahrenheit"]' in context


def test_json_object_mode(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "sim: text=hi_there"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "hi there"}


def test_strict_stream_delivers_the_validated_text(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude-4.5-sonnet-thinking",
            messages=[{"role": "user", "content": "Which city?\nsim: json=fenced"}],
            response_format=city_format(strict=True),
            stream=True,
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # Buffered under strict: one delta, fences stripped; reasoning still streamed before it.
    assert texts == ['{"city": "sim-city", "population": 1}']
    assert any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)


def test_fences_are_stripped_without_a_repair_round(client: openai.OpenAI, stack: Stack) -> None:
    before = len(upstream_requests(stack))
    completion = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "Which city?\nsim: json=fenced"}],
        response_format=city_format(strict=True),
    )
    assert completion.choices[0].message.content == '{"city": "sim-city", "population": 1}'
    assert len(upstream_requests(stack)) == before + 1


@pytest.mark.parametrize("stream", [False, True])
def test_broken_answer_is_repaired_once(client: openai.OpenAI, stack: Stack, stream: bool) -> None:
    before = len(upstream_requests(stack))
    messages: Any = [{"role": "user", "content": "Which city?\nsim: json=broken"}]
    if stream:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="gpt-5.2", messages=messages, response_format=city_format(True), stream=True
            )
            if c.choices
        )
    else:
        reply = client.chat.completions.create(
            model="gpt-5.2", messages=messages, response_format=city_format(True)
        )
        text = reply.choices[0].message.content or ""
    assert json.loads(text) == {"city": "sim-city", "population": 1}
    requests = upstream_requests(stack)[before:]
    assert len(requests) == 2
    repair = [m for m in requests[1]["messages"] if m["role"] in ("user", "assistant")]
    assert repair[-2]["text"] == '{"answer": "unterminated'  # the rejected answer, unfenced
    assert repair[-1]["text"].startswith("Your previous answer did not conform to the required JSON Schema")
    assert "not valid JSON" in repair[-1]["text"]


def test_always_broken_ends_with_a_clear_error(client: openai.OpenAI, stack: Stack) -> None:
    before = len(upstream_requests(stack))
    messages: Any = [{"role": "user", "content": "Which city?\nsim: json=always_broken"}]
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-5.2", messages=messages, response_format=city_format(True))
    assert caught.value.status_code == 502
    assert caught.value.code == "output_schema_mismatch"
    assert "did not conform to the response schema 'city' after one repair round" in caught.value.message
    assert len(upstream_requests(stack)) == before + 2  # one repair round, no more


def test_always_broken_stream_fails_before_the_first_byte(stack: Stack) -> None:
    body = {
        "model": "gpt-5.2",
        "messages": [{"role": "user", "content": "sim: json=always_broken"}],
        "response_format": city_format(True),
        "stream": True,
    }
    headers = {"authorization": f"Bearer {stack.license}"}
    reply = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60)
    # Nothing reached the caller before the check, so the failure still gets its HTTP status.
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "output_schema_mismatch"


def test_non_strict_schema_is_instructed_but_not_checked(client: openai.OpenAI, stack: Stack) -> None:
    before = len(upstream_requests(stack))
    reply = client.chat.completions.create(
        model="gpt-5.2",
        messages=[{"role": "user", "content": "sim: json=broken"}],
        response_format=city_format(strict=False),
    )
    assert reply.choices[0].message.content == '```json\n{"answer": "unterminated\n```'
    assert len(upstream_requests(stack)) == before + 1


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}, "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}, "response_format"),
        ({"type": "json_schema"}, "response_format"),
        ({"type": "xml"}, "response_format.type"),
    ],
)
def test_bad_response_formats_are_refused(stack: Stack, response_format: Any, param: str) -> None:
    body = {
        "model": "gpt-5.2",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": response_format,
    }
    headers = {"authorization": f"Bearer {stack.license}"}
    reply = httpx.post(f"{stack.base_url}/chat/completions", json=body, headers=headers, timeout=60)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and (error["param"] or "").startswith(param)


def test_langchain_with_structured_output(stack: Stack) -> None:
    llm = ChatOpenAI(
        model="gpt-5.2", base_url=stack.base_url, api_key=SecretStr(stack.license), max_retries=0
    )
    assert llm.with_structured_output(Weather).invoke("Weather in Rome?") == EXPECTED


class Place(BaseModel):
    name: str
    country: str | None


class Trip(BaseModel):
    origin: Place
    stops: list[Place]
    nights: int | None


def test_nested_models_with_refs_and_optionals(client: openai.OpenAI) -> None:
    """pydantic writes `$defs`/`$ref` and `anyOf` with null: the simulator and the validator follow both."""
    completion = client.chat.completions.parse(
        model="gpt-5.2", messages=[{"role": "user", "content": "Plan a trip"}], response_format=Trip
    )
    assert completion.choices[0].message.parsed == Trip(
        origin=Place(name="sim-name", country="sim-country"), stops=[], nights=1
    )


def test_chat_response_format_reaches_the_chat_request() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "description": "A city",
                    "schema": CITY_SCHEMA,
                    "strict": True,
                },
            },
        }
    )
    fmt = to_chat_request(body, "id").response_format
    assert fmt.type == chat_pb2.ResponseFormat.TYPE_JSON_SCHEMA
    assert (fmt.name, fmt.description, fmt.strict) == ("city", "A city", True)
    assert MessageToDict(fmt.schema) == CITY_SCHEMA
    plain = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        }
    )
    assert to_chat_request(plain, "id").response_format.type == chat_pb2.ResponseFormat.TYPE_JSON_OBJECT


# --- responses ------------------------------------------------------------------------------------


def test_responses_parse_with_text_format(client: openai.OpenAI) -> None:
    response = client.responses.parse(
        model="gpt-5.2", input="Weather in Lima?\nsim: json=broken", text_format=Weather
    )
    assert response.output_parsed == EXPECTED


def test_responses_json_schema_stream(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="gpt-5.2",
            input="Which city?",
            text={"format": {"type": "json_schema", "name": "city", "schema": CITY_SCHEMA, "strict": True}},
            stream=True,
        )
    )
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ['{"city": "sim-city", "population": 1}']
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.model_dump()["text"]["format"]["type"] == "json_schema"


def test_responses_strict_failure_after_reasoning_is_response_failed(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="claude-4.5-sonnet-thinking",
            input="Which city?\nsim: json=always_broken",
            text={"format": {"type": "json_schema", "name": "city", "schema": CITY_SCHEMA, "strict": True}},
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert "response.reasoning_summary_text.delta" in kinds  # the stream had started
    assert "response.output_text.delta" not in kinds
    failed = events[-1]
    assert failed.type == "response.failed" and failed.response.error is not None
    assert failed.response.error.code == "server_error"  # OpenAI's closed set of codes
    assert failed.response.error.message.startswith("The model's answer did not conform")


# --- core.chat.structured in process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('```\n{"a": 1}\n```', '{"a": 1}'),
        ("  ```JSON\n[1]```  ", "[1]"),
        ('{"a": "```"}', '{"a": "```"}'),
        ("prose ```json\n{}\n```", "prose ```json\n{}\n```"),
    ],
)
def test_strip_fences(text: str, cleaned: str) -> None:
    assert strip_fences(text) == cleaned


def test_check_reports_where_and_what() -> None:
    assert check('{"city": "x", "population": 3}', CITY_SCHEMA) == ('{"city": "x", "population": 3}', None)
    _, error = check('{"city": "x", "population": "many"}', CITY_SCHEMA)
    assert error == "at population: 'many' is not of type 'integer'"
    _, error = check('{"city": "x"}', CITY_SCHEMA)
    assert error == "at (root): 'population' is a required property"
    _, error = check("{nope", CITY_SCHEMA)
    assert error is not None and error.startswith("it is not valid JSON")
