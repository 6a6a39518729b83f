"""The admin's review of stored completions: list, filters, search, transcript, metadata, export, delete."""

from __future__ import annotations

import datetime
import json
import random
import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.admin.paginators import CappedCountPaginator
from conversations.models import Conversation, Message, StoredCompletion

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_storedcompletion_changelist")
UTC = datetime.UTC


def _change_url(pk: str) -> str:
    return reverse("admin:conversations_storedcompletion_change", args=[pk])


def _reply(text: str | None, *, tool_calls: list[dict[str, Any]] | None = None, finish: str = "stop") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.fixture
def rows(django_user_model) -> dict[str, StoredCompletion]:
    alice = django_user_model.objects.create_user(username="alice", password="pw-alice-123")
    bob = django_user_model.objects.create_user(username="bob", password="pw-bob-123")
    conversation = Conversation.objects.create(user=alice, title="Trip to Lyon")
    chat_message = Message.objects.create(conversation=conversation, role="assistant", content="Bonjour!")

    def make(pk: str, **fields: Any) -> StoredCompletion:
        fields.setdefault("user", alice)
        fields.setdefault("model", "gpt-small")
        fields.setdefault("messages", [{"role": "user", "content": "hello"}])
        fields.setdefault("response", _reply("Hi there."))
        fields.setdefault("prompt_tokens", 11)
        fields.setdefault("completion_tokens", 7)
        fields.setdefault("latency_ms", 1234)
        return StoredCompletion.objects.create(id=pk, **fields)

    return {
        "plain": make(
            "chatcmpl-aaa111",
            created_at=datetime.datetime(2025, 1, 10, 12, tzinfo=UTC),
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say <script>alert('x')</script> about Über-Kühe"},
            ],
            response=_reply("I won't run <b>scripts</b>."),
            metadata={"team": "search", "env": "prod"},
            request={"model": "gpt-small", "temperature": 0.3},
        ),
        "tools": make(
            "chatcmpl-bbb222",
            user=bob,
            model="gpt-large",
            created_at=datetime.datetime(2025, 2, 5, 9, tzinfo=UTC),
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
            ],
            response=_reply(
                None,
                tool_calls=[
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    }
                ],
                finish="tool_calls",
            ),
            request={"model": "gpt-large", "tools": [WEATHER_TOOL], "parallel_tool_calls": False},
            metadata={"team": "agents"},
        ),
        "error": make(
            "chatcmpl-ccc333",
            user=bob,
            status=StoredCompletion.Status.ERROR,
            created_at=datetime.datetime(2025, 2, 20, 9, tzinfo=UTC),
            response={},
            prompt_tokens=None,
            completion_tokens=None,
            metadata={"team": "search"},
        ),
        "chat": make(
            "chatcmpl-ddd444",
            source=StoredCompletion.Source.CHAT,
            message=chat_message,
            created_at=datetime.datetime(2025, 3, 1, 9, tzinfo=UTC),
            messages=[{"role": "user", "content": "Plan a trip to Lyon"}],
            response=_reply("Bonjour!"),
        ),
        "stopped": make(
            "chatcmpl-eee555",
            status=StoredCompletion.Status.STOPPED,
            created_at=datetime.datetime(2025, 3, 2, 9, tzinfo=UTC),
            response=_reply("Half a sen"),
        ),
    }


def _export_all(*, checked: str) -> dict[str, Any]:
    """The export action with "select all" clicked: the POST acts on the whole filtered list."""
    return {"action": "export_fine_tuning_jsonl", "_selected_action": [checked], "select_across": "1", "index": "0"}


def _listed(admin_client, **params: str) -> set[str]:
    response = admin_client.get(CHANGELIST, params)
    assert response.status_code == 200, response.content[:500]
    return {obj.pk for obj in response.context["cl"].result_list}


def test_the_list_shows_every_completion_with_its_columns(admin_client, rows):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert [o.pk for o in response.context["cl"].result_list] == [
        "chatcmpl-eee555",
        "chatcmpl-ddd444",
        "chatcmpl-ccc333",
        "chatcmpl-bbb222",
        "chatcmpl-aaa111",
    ]  # fmt: skip  newest first
    page = response.content.decode()
    assert "11 → 7" in page and "1,234 ms" in page and "gpt-large" in page and "Chat UI" in page
    assert "5 stored completions" in page


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"model": "gpt-large"}, {"tools"}),
        ({"status__exact": "error"}, {"error"}),
        ({"source__exact": "chat"}, {"chat"}),
        ({"user": "bob"}, {"tools", "error"}),
        ({"meta_key": "team", "meta_value": "search"}, {"plain", "error"}),
        ({"meta_key": "env"}, {"plain"}),
        ({"meta_key": "team", "meta_value": "search", "user": "bob"}, {"error"}),
        ({"created_from": "2025-02-01", "created_to": "2025-02-20"}, {"tools", "error"}),
        ({"created_from": "2025-03-01"}, {"chat", "stopped"}),
        ({"created_to": "2025-01-10"}, {"plain"}),
        ({"q": "chatcmpl-bbb"}, {"tools"}),
        ({"q": "chatcmpl-ccc333"}, {"error"}),
        ({"q": "<SCRIPT>"}, {"plain"}),  # input messages, case-insensitive
        ({"q": "scripts</b>"}, {"plain"}),  # the response
        ({"q": "Über-Kühe"}, {"plain"}),  # non-ASCII, stored escaped on SQLite
        ({"q": "18C and sunny"}, {"tools"}),  # a tool result
        ({"q": '"city":"Rome"'}, {"tools"}),  # quotes inside JSON strings
        ({"q": "nothing like this"}, set()),
    ],
)
def test_the_list_filters_and_searches(admin_client, rows, params, expected):
    assert _listed(admin_client, **params) == {rows[name].pk for name in expected}


def test_an_id_prefix_search_pages_through_its_matches_newest_first(admin_client, rows):
    alice = rows["plain"].user
    start = datetime.datetime(2025, 4, 1, tzinfo=UTC)
    # 70 ids sharing a beginning, created in an order unrelated to the ids, two in each second.
    matching = [f"chatcmpl-f00{n:03d}" for n in range(70)]
    created = {
        pk: start + datetime.timedelta(seconds=n // 2)
        for n, pk in enumerate(random.Random(7).sample(matching, len(matching)))
    }
    # Newer rows whose ids only nearly match: they must not show up in the search.
    near_misses = {"chatcmpl-f01000", "chatcmpl-e00999", "chatcmpl-f0", "chatcmpl-xf00001"}
    created |= {pk: start + datetime.timedelta(days=1) for pk in near_misses}
    StoredCompletion.objects.bulk_create(
        StoredCompletion(id=pk, user=alice, model="gpt-small", created_at=at) for pk, at in created.items()
    )
    newest_first = sorted(matching, key=lambda pk: (created[pk], pk), reverse=True)

    first = admin_client.get(CHANGELIST, {"q": "chatcmpl-f00"})
    assert [o.pk for o in first.context["cl"].result_list] == newest_first[:50]
    assert "70 stored completions" in first.content.decode()
    second = admin_client.get(CHANGELIST, {"q": "chatcmpl-f00", "p": "2"})
    assert [o.pk for o in second.context["cl"].result_list] == newest_first[50:]
    assert [o.user.username for o in second.context["cl"].result_list] == ["alice"] * 20

    assert _listed(admin_client, q="chatcmpl-f00042") == {"chatcmpl-f00042"}  # a whole id: that one
    assert _listed(admin_client, q="chatcmpl-f_0") == set()  # _ and % are searched as typed
    assert _listed(admin_client, q="chatcmpl-f%42") == set()


def test_the_user_filter_takes_an_id_and_the_model_filter_lists_distinct_models(admin_client, rows):
    bob = rows["tools"].user
    assert _listed(admin_client, user=str(bob.pk)) == {"chatcmpl-bbb222", "chatcmpl-ccc333"}
    response = admin_client.get(CHANGELIST)
    model_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "model")
    assert [c for c in model_filter.lookup_choices] == [("gpt-large", "gpt-large"), ("gpt-small", "gpt-small")]
    page = response.content.decode()
    assert 'name="meta_key"' in page and 'name="created_from"' in page and "metadata" in page


def test_filters_keep_each_other_in_their_forms(admin_client, rows):
    page = admin_client.get(CHANGELIST, {"model": "gpt-small", "status__exact": "completed"}).content.decode()
    # The metadata form carries the other active filters as hidden inputs.
    assert '<input type="hidden" name="model" value="gpt-small">' in page
    assert '<input type="hidden" name="status__exact" value="completed">' in page


def test_a_bad_date_is_reported_and_ignored(admin_client, rows):
    response = admin_client.get(CHANGELIST, {"created_from": "last tuesday"}, follow=True)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 5
    assert "dates are written YYYY-MM-DD" in response.content.decode()


def _counts_of_the_table(queries: list[dict[str, Any]]) -> list[str]:
    table = StoredCompletion._meta.db_table
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]


@pytest.mark.parametrize("params", [{}, {"status__exact": "completed"}, {"q": "hello"}])
def test_the_list_never_counts_the_whole_table(admin_client, rows, params):
    """Every count of the table is bounded by a LIMIT: no plain COUNT(*) over it, filtered or not."""
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST, params)
    assert response.status_code == 200
    counts = _counts_of_the_table(captured.captured_queries)
    assert counts, "the paginator should count (bounded)"
    for sql in counts:
        assert re.search(r"\bLIMIT\s+10001\b", sql), sql


def test_a_large_result_says_more_than_and_still_selects_everything(admin_client, rows, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    response = admin_client.get(CHANGELIST)
    page = response.content.decode()
    assert "More than 2 stored completions" in page
    assert len(response.context["cl"].result_list) == 5  # the page itself is not cut short
    # "Select all" across the capped list still acts on every filtered row.
    response = admin_client.post(
        CHANGELIST + "?status__exact=completed",
        _export_all(checked="chatcmpl-aaa111"),
    )
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 3  # aaa, bbb, ddd (completed); not the error or the stopped one


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the planner's estimate is PostgreSQL's")
def test_the_unfiltered_list_on_postgresql_takes_the_planners_estimate(admin_client, rows, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 2)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {StoredCompletion._meta.db_table}")
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(CHANGELIST).content.decode()
    assert "About 5 stored completions (estimated)" in page
    assert not _counts_of_the_table(captured.captured_queries)


def test_the_detail_page_shows_the_transcript_escaped(admin_client, rows):
    page = admin_client.get(_change_url("chatcmpl-aaa111")).content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "I won&#x27;t run &lt;b&gt;scripts&lt;/b&gt;." in page
    assert '<div class="role">system' in page and '<div class="role">user' in page
    assert '<div class="role">assistant' in page
    assert "finish reason: stop" in page
    assert "&quot;total_tokens&quot;: 18" in page  # usage, pretty-printed
    assert "1234 ms" in page
    assert "&quot;temperature&quot;: 0.3" in page  # request parameters
    assert "– (stored through /v1)" in page


def test_the_detail_page_shows_tool_calls_and_results(admin_client, rows):
    page = admin_client.get(_change_url("chatcmpl-bbb222")).content.decode()
    assert "calls tool <strong>get_weather</strong> <code>call_1</code>" in page
    assert "{\n  &quot;city&quot;: &quot;Paris&quot;\n}" in page  # arguments, pretty-printed
    assert "result of tool call <code>call_1</code>" in page and "18C and sunny" in page
    assert "calls tool <strong>get_weather</strong> <code>call_2</code>" in page
    assert "finish reason: tool_calls" in page
    assert "Weather in Paris and Rome?" in page  # a text content part


def test_the_detail_page_links_a_chat_turn_to_its_conversation(admin_client, rows):
    completion = rows["chat"]
    page = admin_client.get(_change_url(completion.pk)).content.decode()
    url = reverse("admin:conversations_conversation_change", args=[completion.message.conversation_id])
    assert f'<a href="{url}">Trip to Lyon</a>' in page
    assert admin_client.get(url).status_code == 200


def test_metadata_is_editable_and_validated(admin_client, rows):
    url = _change_url("chatcmpl-aaa111")
    response = admin_client.post(url, {"metadata": json.dumps({"team": "search", "reviewed": "yes"})})
    assert response.status_code == 302
    assert StoredCompletion.objects.get(pk="chatcmpl-aaa111").metadata == {"team": "search", "reviewed": "yes"}

    too_many = {f"k{i}": "v" for i in range(17)}
    response = admin_client.post(url, {"metadata": json.dumps(too_many)})
    assert response.status_code == 200
    assert "too many pairs. Expected at most 16, got 17." in response.content.decode()
    response = admin_client.post(url, {"metadata": json.dumps({"n": 1})})
    assert response.status_code == 200 and "metadata.n" in response.content.decode()
    assert StoredCompletion.objects.get(pk="chatcmpl-aaa111").metadata == {"team": "search", "reviewed": "yes"}

    # Everything else on the page is read-only: a posted model is ignored.
    admin_client.post(url, {"metadata": "{}", "model": "hacked", "status": "error"})
    stored = StoredCompletion.objects.get(pk="chatcmpl-aaa111")
    assert stored.metadata == {} and stored.model == "gpt-small" and stored.status == "completed"


def test_export_writes_openai_fine_tuning_jsonl(admin_client, rows):
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "export_fine_tuning_jsonl",
            "_selected_action": list(StoredCompletion.objects.values_list("pk", flat=True)),
            "index": "0",
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/jsonl")
    assert response["Content-Disposition"].startswith('attachment; filename="stored-completions-')
    examples = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    # Oldest first; the error (no reply) and the stopped turn (cut short) are left out.
    assert len(examples) == 3
    plain, tools, chat = examples
    assert plain == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say <script>alert('x')</script> about Über-Kühe"},
            {"role": "assistant", "content": "I won't run <b>scripts</b>."},
        ]
    }
    assert tools["tools"] == [WEATHER_TOOL] and tools["parallel_tool_calls"] is False
    assert [m["role"] for m in tools["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert tools["messages"][-1] == {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}
        ],
    }
    assert chat["messages"][-1] == {"role": "assistant", "content": "Bonjour!"}
    for example in examples:
        assert set(example) <= {"messages", "tools", "parallel_tool_calls"}
        assert example["messages"][-1]["role"] == "assistant"


def test_export_of_the_whole_filtered_list(admin_client, rows):
    """ "Select all" (select_across) exports every row the filters match, not only the checked ones."""
    response = admin_client.post(
        CHANGELIST + "?model=gpt-small&created_from=2025-03-01",
        _export_all(checked="chatcmpl-ddd444"),
    )
    examples = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [e["messages"][0]["content"] for e in examples] == ["Plan a trip to Lyon"]  # the stopped one is skipped

    response = admin_client.post(
        CHANGELIST + "?meta_key=team",
        _export_all(checked="chatcmpl-aaa111"),
    )
    examples = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(examples) == 2  # aaa and bbb; ccc has team but is an error


def test_bulk_delete_removes_the_selected_rows(admin_client, rows):
    selected = ["chatcmpl-aaa111", "chatcmpl-ccc333"]
    confirm = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": selected, "index": "0"})
    assert confirm.status_code == 200 and "Are you sure you want to delete" in confirm.content.decode()
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": selected, "index": "0", "post": "yes"}
    )
    assert response.status_code == 302
    assert set(StoredCompletion.objects.values_list("pk", flat=True)) == {
        "chatcmpl-bbb222", "chatcmpl-ddd444", "chatcmpl-eee555",
    }  # fmt: skip
    assert Message.objects.filter(content="Bonjour!").exists()  # the chat message stays


def test_stored_completions_are_not_added_by_hand(admin_client, rows):
    assert admin_client.get(reverse("admin:conversations_storedcompletion_add")).status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_export_streams_under_asgi(async_client, admin_user, rows):
    """Served by daphne the export is an async stream, read from the database a chunk at a time."""
    await async_client.aforce_login(admin_user)
    response = await async_client.post(
        CHANGELIST + "?user=bob",
        _export_all(checked="chatcmpl-bbb222"),
    )
    assert response.status_code == 200 and response.is_async
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert [json.loads(line)["tools"] for line in body.splitlines()] == [[WEATHER_TOOL]]
