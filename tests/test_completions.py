"""The completions service against a real loopback provider: SSE parsing, retries, timeouts, errors."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from typing import Any

import pytest

from conversations.providers.completions import (
    CompletionError,
    Upstream,
    UpstreamConnectionError,
    UpstreamTimeout,
    completion_create,
    completion_stream,
    models_list,
)
from tests.live import free_port
from tests.upstream import Drop, Error, FakeUpstream, Hang, Raw, Reply

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def target(upstream: FakeUpstream) -> Upstream:
    return Upstream(base_url=upstream.base_url, api_key="sk-test-upstream", model="fake-upstream")


@pytest.fixture
def completions(settings: Any) -> Any:
    """Change ``settings.COMPLETIONS`` entries for one test."""

    def set_(**values: Any) -> dict[str, Any]:
        settings.COMPLETIONS = {**settings.COMPLETIONS, **values}
        return settings.COMPLETIONS

    return set_


def event(content: str | None = None, finish_reason: str | None = None, *, crlf: bool = False) -> bytes:
    """One chat.completion.chunk as SSE bytes."""
    delta = {"content": content} if content is not None else {}
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    newline = "\r\n" if crlf else "\n"
    return f"data: {json.dumps(chunk, ensure_ascii=False)}{newline}{newline}".encode()


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))


async def collect(target: Upstream, chunks: list[dict[str, Any]] | None = None, **payload: Any) -> list[dict[str, Any]]:
    """Read a whole stream; ``chunks`` keeps what arrived before an exception."""
    chunks = [] if chunks is None else chunks
    async for chunk in completion_stream(upstream=target, payload={"messages": MESSAGES, **payload}):
        chunks.append(chunk)
    return chunks


def split(data: bytes, size: int) -> list[bytes | float]:
    """``data`` in ``size``-byte network chunks with a tiny pause between them."""
    parts: list[bytes | float] = []
    for i in range(0, len(data), size):
        parts += [data[i : i + size], 0.001]
    return parts


# --- SSE on awkward streams -------------------------------------------------------------


async def test_stream_yields_chunks_of_a_normal_reply(upstream, target):
    upstream.script(Reply(text="Hello there, friend"))

    chunks = await collect(target, stream_options={"include_usage": True})

    assert text_of(chunks) == "Hello there, friend"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert upstream.requests[-1]["stream"] is True
    assert upstream.requests[-1]["model"] == "fake-upstream"


async def test_event_split_across_network_chunks_mid_prefix_and_mid_json(upstream, target):
    first = event("Hello")
    second = event(" world", "stop")
    upstream.script(
        Raw(
            [
                first[:2],
                0.01,
                first[2:4],
                0.01,
                first[4:20],
                0.01,
                first[20:-1],
                0.01,
                first[-1:],
                *split(second, 7),
                b"data: [DONE]\n\n",
            ]
        )
    )

    chunks = await collect(target)

    assert text_of(chunks) == "Hello world"
    assert len(chunks) == 2


async def test_multibyte_characters_split_between_network_chunks(upstream, target):
    data = event("héllo 👋 мир") + event(None, "stop") + b"data: [DONE]\n\n"
    upstream.script(Raw(split(data, 3)))

    assert text_of(await collect(target)) == "héllo 👋 мир"


async def test_crlf_line_endings_even_when_split_between_cr_and_lf(upstream, target):
    first = event("one", crlf=True)
    cut = first.index(b"\r\n") + 1  # ends a network chunk between \r and \n
    upstream.script(
        Raw(
            [
                first[:cut],
                0.01,
                first[cut:],
                event(" two", crlf=True),
                0.01,
                event(None, "stop", crlf=True),
                b"data: [DONE]\r\n\r\n",
            ]
        )
    )

    chunks = await collect(target)

    assert text_of(chunks) == "one two"
    assert len(chunks) == 3


async def test_lone_cr_line_endings_and_data_over_several_lines(upstream, target):
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}],
    }
    lines = json.dumps(chunk, indent=1).encode().split(b"\n")  # one event, its JSON over several data lines
    upstream.script(Raw([b"\r".join(b"data: " + line for line in lines) + b"\r\r", b"data: [DONE]\r\r"]))

    chunks = await collect(target)

    assert text_of(chunks) == "x"


async def test_escapes_orjson_refuses_are_read_as_python_reads_them(upstream, target):
    lone_surrogate = b'data: {"choices": [{"index": 0, "delta": {"content": "\\ud83d"}, "finish_reason": null}]}\n\n'
    upstream.script(Raw([event("emoji: "), lone_surrogate, event(None, "stop"), b"data: [DONE]\n\n"]))

    chunks = await collect(target)

    assert text_of(chunks) == "emoji: \ud83d"


async def test_a_stream_answered_with_json_is_a_502_saying_so(upstream, target):
    upstream.script(Raw([b'{"id": "not-a-stream"}'], content_type="application/json"))

    with pytest.raises(CompletionError) as info:
        await collect(target)

    assert info.value.status == 502
    assert info.value.message == "The provider did not send an event stream (its content type: application/json)."


async def test_keep_alive_comments_between_events_are_ignored(upstream, target):
    upstream.script(
        Raw(
            [
                b": keep-alive\n\n",
                event("a"),
                b": keep-alive\n\n",
                0.01,
                b": OPENROUTER PROCESSING\n\n",
                event("b", "stop"),
                b"data: [DONE]\n\n",
            ]
        )
    )

    chunks = await collect(target)

    assert text_of(chunks) == "ab"
    assert len(chunks) == 2


async def test_done_ends_the_stream_and_later_bytes_are_not_read(upstream, target):
    upstream.script(Raw([event("kept", "stop"), b"data: [DONE]\n\n", event("ignored"), b"data: not json\n\n"]))

    assert text_of(await collect(target)) == "kept"


async def test_provider_holding_the_connection_open_after_done_still_completes(upstream, target, completions):
    completions(READ_TIMEOUT=0.2)
    upstream.script(Raw([event("done", "stop"), b"data: [DONE]\n\n", 0.5, event("late")]))

    assert text_of(await collect(target)) == "done"


async def test_error_event_mid_stream_after_chunks(upstream, target):
    error = {"message": "The server is overloaded", "type": "server_error", "code": "overloaded", "param": "model"}
    upstream.script(
        Raw(
            [
                event("partial"),
                event(" text"),
                b"event: error\n",
                b'data: {"error": ' + json.dumps(error).encode() + b"}\n\n",
            ]
        )
    )
    chunks: list[dict[str, Any]] = []

    with pytest.raises(CompletionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "partial text"
    assert info.value.message == "The server is overloaded"
    assert (info.value.type, info.value.code, info.value.param) == ("server_error", "overloaded", "model")
    assert len(upstream.requests) == 1


async def test_error_payload_without_event_name(upstream, target):
    upstream.script(
        Reply(
            text="one two three",
            fail_after=2,
            error={"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit_exceeded"},
        )
    )
    chunks: list[dict[str, Any]] = []

    with pytest.raises(CompletionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "one two"
    assert info.value.message == "Rate limit reached"
    assert (info.value.type, info.value.code) == ("rate_limit_error", "rate_limit_exceeded")
    assert len(upstream.requests) == 1


async def test_error_event_with_plain_text_data(upstream, target):
    upstream.script(Raw([event("so far"), b"event: error\ndata: Internal server error\n\n"]))
    chunks: list[dict[str, Any]] = []

    with pytest.raises(CompletionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "so far"
    assert info.value.message == "Internal server error"


async def test_stream_closed_without_finish_reason_or_done(upstream, target):
    upstream.script(Raw([event("half a rep"), event("ly")]))
    chunks: list[dict[str, Any]] = []

    with pytest.raises(UpstreamConnectionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "half a reply"
    assert info.value.status == 502


async def test_stream_with_finish_reason_but_no_done_completes(upstream, target):
    upstream.script(Raw([event("all"), event(None, "length")]))

    chunks = await collect(target)

    assert text_of(chunks) == "all"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("line", [b"data: <html>Bad Gateway</html>\n\n", b"data: 42\n\n", b'data: ["a"]\n\n'])
async def test_unreadable_data_line(upstream, target, line):
    upstream.script(Raw([event("ok"), line, event(None, "stop")]))
    chunks: list[dict[str, Any]] = []

    with pytest.raises(CompletionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "ok"
    assert info.value.status == 502
    assert line[6:].strip().decode() in info.value.message


async def test_concurrent_streams_do_not_mix(upstream, target):
    upstream.script(Reply(text="alpha beta gamma", delay=0.01), Reply(text="one two three", delay=0.01))

    texts = sorted(text_of(chunks) for chunks in await asyncio.gather(collect(target), collect(target)))

    assert texts == ["alpha beta gamma", "one two three"]


async def test_stopping_early_closes_the_stream_cleanly(upstream, target):
    upstream.script(Reply(text="a b c d e f", delay=0.01))
    stream = completion_stream(upstream=target, payload={"messages": MESSAGES})

    first = await anext(stream)
    await stream.aclose()

    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(await collect(target)) == "You said: Hi"  # the next call still works


# --- Retries ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"Retry-After": "0.1"}, {"retry-after-ms": "100"}])
async def test_rate_limit_with_retry_after_then_success(upstream, target, headers):
    upstream.script(Error(429, "Slow down", "rate_limit_error", headers=headers), Reply(text="finally"))

    assert text_of(await collect(target)) == "finally"
    assert len(upstream.requests) == 2
    assert upstream.requests[0] == upstream.requests[1]


async def test_retry_after_as_http_date(upstream, target):
    past = email.utils.formatdate(time.time() - 5, usegmt=True)
    upstream.script(Error(503, "Back soon", headers={"Retry-After": past}), Reply(text="back"))

    result = await completion_create(upstream=target, payload={"messages": MESSAGES})

    assert result["choices"][0]["message"]["content"] == "back"
    assert len(upstream.requests) == 2


async def test_repeated_server_errors_give_up_after_max_retries(upstream, target, completions):
    conf = completions(MAX_RETRIES=2)
    upstream.script(
        *[Error(500, "The engine exploded") for _ in range(conf["MAX_RETRIES"] + 1)], Reply(text="too late")
    )

    with pytest.raises(CompletionError) as info:
        await collect(target)

    assert len(upstream.requests) == conf["MAX_RETRIES"] + 1
    assert info.value.status == 500
    assert info.value.message == "The engine exploded"
    assert info.value.type == "server_error"


async def test_max_retries_zero_means_one_attempt(upstream, target, completions):
    completions(MAX_RETRIES=0)
    upstream.script(Error(502, "Bad gateway"), Reply(text="never"))

    with pytest.raises(CompletionError) as info:
        await completion_create(upstream=target, payload={"messages": MESSAGES})

    assert info.value.status == 502
    assert len(upstream.requests) == 1


async def test_x_should_retry_false_is_obeyed(upstream, target):
    upstream.script(Error(503, "Do not retry me", headers={"x-should-retry": "false"}), Reply(text="never"))

    with pytest.raises(CompletionError) as info:
        await collect(target)

    assert info.value.status == 503
    assert len(upstream.requests) == 1


async def test_x_should_retry_true_retries_a_client_error(upstream, target):
    upstream.script(Error(400, "Transient", headers={"x-should-retry": "true"}), Reply(text="ok now"))

    assert text_of(await collect(target)) == "ok now"
    assert len(upstream.requests) == 2


async def test_bad_request_is_not_retried_and_keeps_openai_fields(upstream, target):
    upstream.script(
        Error(
            400,
            "This model's maximum context length is 8192 tokens",
            "invalid_request_error",
            "context_length_exceeded",
        ),
        Reply(text="never"),
    )

    with pytest.raises(CompletionError) as info:
        await collect(target)

    error = info.value
    assert len(upstream.requests) == 1
    assert error.status == 400
    assert error.message == "This model's maximum context length is 8192 tokens"
    assert (error.type, error.code, error.param) == ("invalid_request_error", "context_length_exceeded", None)


@pytest.mark.parametrize("status", [401, 403, 404, 422])
async def test_other_client_errors_are_not_retried(upstream, target, status):
    upstream.script(Error(status, "Nope", "invalid_request_error"), Reply(text="never"))

    with pytest.raises(CompletionError) as info:
        await completion_create(upstream=target, payload={"messages": MESSAGES})

    assert info.value.status == status
    assert len(upstream.requests) == 1


async def test_retry_after_longer_than_the_maximum_fails_at_once(upstream, target, completions):
    completions(RETRY_AFTER_MAX=5.0)
    upstream.script(
        Error(429, "Quota exceeded", "rate_limit_error", headers={"Retry-After": "120"}), Reply(text="never")
    )

    with pytest.raises(CompletionError) as info:
        await collect(target)

    assert len(upstream.requests) == 1
    assert info.value.status == 429
    assert info.value.retry_after == 120
    assert info.value.message == "Quota exceeded"


async def test_connection_dropped_before_any_reply_is_retried(upstream, target):
    upstream.script(Drop(), Reply(text="second time lucky"))

    assert text_of(await collect(target)) == "second time lucky"
    assert len(upstream.requests) == 2


async def test_no_retry_once_the_stream_has_started(upstream, target):
    upstream.script(Reply(text="one two three four", fail_after=2), Reply(text="never"))
    chunks: list[dict[str, Any]] = []

    with pytest.raises(UpstreamConnectionError) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "one two"
    assert info.value.status == 502
    assert len(upstream.requests) == 1


# --- Timeouts and unreachable providers -------------------------------------------------


async def test_provider_that_never_answers_times_out(upstream, target, completions):
    completions(READ_TIMEOUT=0.2)
    upstream.script(Hang(1.0, then=Reply(text="too late")))

    with pytest.raises(UpstreamTimeout) as info:
        await collect(target)

    assert info.value.status == 504
    assert len(upstream.requests) == 1


async def test_stream_that_stalls_mid_reply_times_out_after_the_chunks_so_far(upstream, target, completions):
    completions(READ_TIMEOUT=0.2)
    upstream.script(Raw([event("started"), 1.0, event(None, "stop")]))
    chunks: list[dict[str, Any]] = []

    with pytest.raises(UpstreamTimeout) as info:
        await collect(target, chunks)

    assert text_of(chunks) == "started"
    assert info.value.status == 504


async def test_unreachable_provider_is_502_naming_its_host_to_admins_only(completions, caplog):
    completions(MAX_RETRIES=1)
    port = free_port()
    closed = Upstream(base_url=f"http://127.0.0.1:{port}/v1", api_key="", model="m")

    with pytest.raises(UpstreamConnectionError) as stream_info:
        await collect(closed)
    with pytest.raises(UpstreamConnectionError) as create_info:
        await completion_create(upstream=closed, payload={"messages": MESSAGES})

    assert stream_info.value.status == create_info.value.status == 502
    assert stream_info.value.message == "Could not reach the provider."  # what users and /v1 clients read
    assert "Provider at 127.0.0.1 failed: ConnectError" in caplog.text  # what admins read in the log


# --- Non-streaming completions and what reaches the provider ------------------------------


async def test_completion_create_returns_the_json_body(upstream, target):
    upstream.script(Reply(text="A whole answer.", finish_reason="length"))

    body = await completion_create(upstream=target, payload={"messages": MESSAGES})

    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "A whole answer.", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["model"] == "fake-upstream"


async def test_request_parameters_reach_the_provider_unchanged(upstream, target):
    payload = {
        "messages": [{"role": "system", "content": "Be brief."}, *MESSAGES],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 5,
        "stop": ["\n", "END"],
        "seed": 7,
        "n": 1,
        "presence_penalty": 0.5,
        "response_format": {"type": "json_object"},
        "user": "alice",
        "metadata": {"topic": "tests"},
        "model": "what-the-user-typed",
        "stream": True,
    }

    await completion_create(upstream=target, payload=payload)

    assert upstream.requests[-1] == {**payload, "model": "fake-upstream", "stream": False}


async def test_stream_request_parameters_reach_the_provider(upstream, target):
    await collect(target, temperature=0, stream_options={"include_usage": True}, stream=False, model="x")

    assert upstream.requests[-1] == {
        "messages": MESSAGES,
        "temperature": 0,
        "stream_options": {"include_usage": True},
        "stream": True,
        "model": "fake-upstream",
    }


async def test_api_key_is_sent_as_bearer_token(upstream, target):
    await completion_create(upstream=target, payload={"messages": MESSAGES})

    headers = {k.lower(): v for k, v in upstream.headers[-1].items()}
    assert headers["authorization"] == "Bearer sk-test-upstream"


async def test_no_authorization_header_without_a_key(upstream):
    keyless = Upstream(base_url=upstream.base_url + "/", api_key="", model="local")

    await collect(keyless)

    headers = {k.lower() for k in upstream.headers[-1]}
    assert "authorization" not in headers
    assert upstream.requests[-1]["model"] == "local"


async def test_models_list(upstream):
    assert await models_list(base_url=upstream.base_url, api_key="sk") == [
        "fake-model",
        "fake-model-2",
        "text-embedding-3-small",
    ]


async def test_models_list_errors(upstream):
    with pytest.raises(CompletionError) as info:
        await models_list(base_url=upstream.base_url + "/nowhere", api_key="")

    assert info.value.status == 404
    assert info.value.type == "invalid_request_error"


async def test_the_proxy_the_environment_names_is_used(upstream, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{upstream.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    behind_proxy = Upstream(base_url="http://provider.invalid/v1", api_key="", model="m")  # reachable only through it
    upstream.script(Reply(text="Through the proxy"))

    assert text_of(await collect(behind_proxy)) == "Through the proxy"
    assert {name.lower(): value for name, value in upstream.headers[-1].items()}["host"] == "provider.invalid"


async def test_sequential_completions_reuse_one_connection(upstream, target, monkeypatch):
    accepted: list[Any] = []
    accept = upstream.server.process_request
    monkeypatch.setattr(
        upstream.server,
        "process_request",
        lambda request, address: (accepted.append(address), accept(request, address)),
    )

    await collect(target)
    await collect(target, stream_options={"include_usage": True})
    await completion_create(upstream=target, payload={"messages": MESSAGES})

    assert len(upstream.requests) == 3
    assert len(accepted) == 1
