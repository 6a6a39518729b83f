"""What users and admins see of usage and cost: reply footers, the conversation total, the Usage
page with its chart and CSV export, and the admin's prices, limits, ledger and report."""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import ApiKey, ChatModel, Conversation, ModelPrice, UsageRecord, UserLimits
from tests.conftest import path_append

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 3, 15, 12, 0, tzinfo=UTC)


def at(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> datetime.datetime:
    """Mid-March 2025, UTC: today, this month, last month and the 30-day window are all known."""
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def record(user: Any, *, model: str, cost: str, when: datetime.datetime, **fields: Any) -> UsageRecord:
    defaults = {"provider": "Fake", "state": UsageRecord.State.SETTLED, "prompt_tokens": 0, "completion_tokens": 0}
    return UsageRecord.objects.create(
        user=user, model=model, cost=Decimal(cost), created_at=when, **{**defaults, **fields}
    )


@pytest.fixture
def ledger(db: None, frozen: datetime.datetime, user: Any, other_user: Any, chat_model: Any) -> dict[str, Any]:
    """Alice: two chat replies in one conversation, /v1 calls, rows across days and months. Bob: one row."""
    conversation = Conversation.objects.create(user=user, title="Costs", model=chat_model)
    _, priced, free = path_append(
        conversation,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "model_name": "gpt-a", "prompt_tokens": 100, "completion_tokens": 50},
        {"role": "assistant", "content": "Free answer", "model_name": "free-model",
         "prompt_tokens": 7, "completion_tokens": 3, "usage_estimated": True},
    )  # fmt: skip
    key = ApiKey.objects.create(user=user, name="script", prefix="cw-abc", hashed="x" * 64)
    rows = {
        "today_chat": record(user, model="gpt-a", cost="0.00012345", when=at(2025, 3, 15, 10), message=priced,
                             prompt_tokens=100, completion_tokens=50),
        "today_api": record(user, model="gpt-b", cost="0.5", when=at(2025, 3, 15, 9), api_key=key,
                            prompt_tokens=1000, cached_tokens=200, completion_tokens=300, reasoning_tokens=100),
        "month_estimated": record(user, model="gpt-a", cost="1.23456789", when=at(2025, 3, 2, 8), api_key=key,
                                  prompt_tokens=10, completion_tokens=20, estimated=True),
        "month_unpriced": record(user, model="free-model", cost="0", when=at(2025, 3, 10, 23, 59), message=free,
                                 prompt_tokens=7, completion_tokens=3, estimated=True, priced=False),
        "last_month": record(user, model="gpt-a", cost="2.00000001", when=at(2025, 2, 28, 23, 59, 59),
                             prompt_tokens=5, completion_tokens=5),
        "long_ago": record(user, model="gpt-b", cost="7", when=at(2025, 1, 1), prompt_tokens=1, completion_tokens=1),
        "bob": record(other_user, model="bob-only-model", cost="9.99999999", when=at(2025, 3, 15, 11),
                      prompt_tokens=999, completion_tokens=999),
    }  # fmt: skip
    return {"conversation": conversation, "priced": priced, "free": free, "rows": rows}


def _attr(html: str, element_id: str) -> str:
    """The inner HTML of the element with this id (whose tag does not nest in itself)."""
    match = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, element_id
    return match.group(2)


# --- The chat page --------------------------------------------------------------------------------


def test_reply_footers_show_tokens_and_cost_and_the_header_the_conversations_total(client, user, ledger):
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/c/{ledger['conversation'].pk}/").content.decode()

    priced = re.search(rf'id="message-{ledger["priced"].pk}".*?</article>', html, re.S).group(0)
    assert '100 in · 50 out · <span class="cost">$0.000123</span>' in priced
    assert "(estimated)" not in priced and "unpriced" not in priced

    free = re.search(rf'id="message-{ledger["free"].pk}".*?</article>', html, re.S).group(0)
    assert '7 in · 3 out · <span class="cost">$0.000000</span> (estimated)' in free
    assert "unpriced" in free

    header = _attr(html, "conversation-usage")
    # Only this conversation's replies: 0.00012345 + 0, 150 + 10 tokens; /v1 calls and Bob are not in it.
    assert "$0.000123" in header and 'title="Cost $0.00012345"' in header
    assert "160 tokens" in header and "2 replies" in header

    # One aggregate for the header; the footers come with the messages (select_related), not per message.
    usage_queries = [q["sql"] for q in queries if "usagerecord" in q["sql"].lower()]
    assert len(usage_queries) == 2, usage_queries  # the messages' join and the header's SUM


def test_a_conversation_without_usage_shows_no_total(client, user, chat_model, frozen):
    conversation = Conversation.objects.create(user=user, title="Empty", model=chat_model)
    client.force_login(user)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert '<p id="conversation-usage" class="conversation-usage muted"></p>' in html
    assert 'href="/usage/"' in html  # the sidebar links the Usage page


# --- The Usage page -----------------------------------------------------------------------------


def test_usage_page_names_models_as_the_chat_does(client, user, ledger, chat_model):
    ChatModel.objects.create(
        name="gpt-a", display_name="GPT A <fast>", provider=chat_model.provider, upstream_model="a"
    )
    client.force_login(user)
    table = _attr(client.get("/usage/").content.decode(), "usage-by-model")
    assert '<tr data-model="gpt-a">\n        <td>GPT A &lt;fast&gt;</td>' in table
    assert '<tr data-model="free-model">\n        <td>free-model</td>' in table  # no such model any more


def test_usage_page_shows_today_the_month_the_budget_and_the_month_by_model(client, user, ledger, settings):
    settings.USAGE_DEFAULTS = {**settings.USAGE_DEFAULTS, "monthly_budget": Decimal("5.00")}
    client.force_login(user)
    html = client.get("/usage/").content.decode()

    today = _attr(html, "usage-today")
    assert '<span class="cost">0.50012345</span>' in today  # 0.00012345 + 0.5
    assert '<span class="requests">2</span>' in today and '<span class="tokens">1450</span>' in today
    assert "$0.5001" in today

    month = _attr(html, "usage-month")  # March: today's two, the 2nd and the 10th; not Feb 28
    assert '<span class="cost">1.73469134</span>' in month
    assert '<span class="requests">4</span>' in month and '<span class="tokens">1490</span>' in month

    budget = _attr(html, "usage-budget")
    assert "$3.27 left" in budget and "$5.00" in budget  # 5.00 − 1.73469134, shown to the cent

    table = _attr(html, "usage-by-model")
    rows = re.findall(
        r'<tr data-model="([^"]+)">\s*<td>[^<]*</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>'
        r'\s*<td class="num">(\d+)</td>\s*<td class="num cost" data-cost="([^"]+)"',
        table,
    )
    assert rows == [
        ("gpt-a", "2", "110", "70", "1.23469134"),
        ("gpt-b", "1", "1000", "300", "0.50000000"),
        ("free-model", "1", "7", "3", "0.00000000"),
    ]
    assert 'data-cost="1.73469134"' in table.split("<tfoot>")[1]
    assert sum(Decimal(r[4]) for r in rows) == Decimal("1.73469134")


def test_usage_chart_has_thirty_days_and_one_bar_per_day_with_usage(client, user, ledger):
    client.force_login(user)
    html = client.get("/usage/").content.decode()
    svg = re.search(r'<svg id="usage-chart".*?</svg>', html, re.S).group(0)
    assert '<title id="usage-chart-title">Cost per day, last 30 days (UTC)</title>' in svg
    assert "4 of 30 days with usage, from\n        2025-02-14 to 2025-03-15" in svg
    bars = re.findall(r'<rect class="bar" data-day="([\d-]+)" data-cost="([^"]+)"[^>]*height="([\d.]+)"', svg)
    # Feb 28 (last month, still within 30 days), Mar 2, Mar 10 (unpriced: $0, still drawn), today.
    assert [(day, cost) for day, cost, _ in bars] == [
        ("2025-02-28", "2.00000001"),
        ("2025-03-02", "1.23456789"),
        ("2025-03-10", "0.00000000"),
        ("2025-03-15", "0.50012345"),
    ]
    heights = {day: Decimal(h) for day, _, h in bars}
    assert heights["2025-02-28"] > heights["2025-03-02"] > heights["2025-03-15"] > heights["2025-03-10"] > 0
    assert svg.count("<title>") == 4  # each bar says its day and cost to screen readers
    assert "Cost (USD)" in svg and "Day (UTC)" in svg and "Mar 15" in svg


def test_usage_page_of_a_user_without_usage(client, other_user, db, frozen):
    UsageRecord.objects.all().delete()
    client.force_login(other_user)
    html = client.get("/usage/").content.decode()
    assert "No usage this month." in html and "No limit" in html
    assert '<rect class="bar"' not in html


def test_csv_has_a_header_and_exactly_the_users_rows_with_exact_costs(client, user, ledger):
    client.force_login(user)
    response = client.get("/usage/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "date", "time_utc", "model", "provider", "source", "prompt_tokens", "cached_tokens",
        "completion_tokens", "reasoning_tokens", "cost_usd", "estimated", "priced", "state",
    ]  # fmt: skip
    assert rows[1:] == [
        ["2025-01-01", "00:00:00", "gpt-b", "Fake", "chat", "1", "0", "1", "0", "7.00000000", "false", "true", "settled"],
        ["2025-02-28", "23:59:59", "gpt-a", "Fake", "chat", "5", "0", "5", "0", "2.00000001", "false", "true", "settled"],
        ["2025-03-02", "08:00:00", "gpt-a", "Fake", "api", "10", "0", "20", "0", "1.23456789", "true", "true", "settled"],
        ["2025-03-10", "23:59:00", "free-model", "Fake", "chat", "7", "0", "3", "0", "0.00000000", "true", "false", "settled"],
        ["2025-03-15", "09:00:00", "gpt-b", "Fake", "api", "1000", "200", "300", "100", "0.50000000", "false", "true", "settled"],
        ["2025-03-15", "10:00:00", "gpt-a", "Fake", "chat", "100", "0", "50", "0", "0.00012345", "false", "true", "settled"],
    ]  # fmt: skip
    assert sum(Decimal(r[9]) for r in rows[1:]) == Decimal("10.73469135")


def test_another_user_sees_none_of_it(client, other_user, ledger):
    client.force_login(other_user)
    html = client.get("/usage/").content.decode()
    assert "gpt-a" not in html and "gpt-b" not in html and "free-model" not in html
    assert '<span class="cost">9.99999999</span>' in _attr(html, "usage-today")
    assert '<tr data-model="bob-only-model">' in html
    assert len(re.findall(r'<rect class="bar"', html)) == 1
    rows = list(csv.reader(io.StringIO(b"".join(client.get("/usage/export.csv").streaming_content).decode())))
    assert [r[2] for r in rows[1:]] == ["bob-only-model"]
    # And Alice's conversation is not Bob's.
    assert client.get(f"/c/{ledger['conversation'].pk}/").status_code == 404


def test_usage_pages_need_a_sign_in(client, db):
    assert client.get("/usage/").url.startswith("/accounts/login/")
    assert client.get("/usage/export.csv").url.startswith("/accounts/login/")


@pytest.mark.django_db(transaction=True)
async def test_csv_streams_under_asgi(async_client, user, ledger):
    await async_client.aforce_login(user)
    response = await async_client.get("/usage/export.csv")
    assert response.status_code == 200 and response.is_async
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    lines = body.strip().splitlines()
    assert len(lines) == 7 and lines[-1].endswith("0.00012345,false,true,settled")
    assert "bob-only-model" not in body


# --- The admin ----------------------------------------------------------------------------------


def test_admin_usage_report_totals_by_user_model_and_day(admin_client, ledger):
    changelist = admin_client.get("/admin/conversations/usagerecord/").content.decode()
    assert "/admin/conversations/usagerecord/report/" in changelist
    assert "bob-only-model" in changelist and "0.00012345" in changelist

    html = admin_client.get("/admin/conversations/usagerecord/report/").content.decode()
    by_user = dict(re.findall(r'<tr data-user="([^"]+)">.*?<td class="cost">([^<]+)</td>', html, re.S))
    # The last 30 days: everything of Alice's but New Year's Day.
    assert by_user == {"bob": "9.99999999", "alice": "3.73469135"}
    by_model = dict(re.findall(r'<tr data-model="([^"]+)">.*?<td class="cost">([^<]+)</td>', html, re.S))
    assert by_model == {
        "bob-only-model": "9.99999999", "gpt-a": "3.23469135", "gpt-b": "0.50000000", "free-model": "0.00000000",
    }  # fmt: skip
    by_day = dict(re.findall(r'<tr data-day="([^"]+)">.*?<td class="cost">([^<]+)</td>', html, re.S))
    assert by_day == {
        "2025-03-15": "10.50012344", "2025-03-10": "0.00000000", "2025-03-02": "1.23456789", "2025-02-28": "2.00000001",
    }  # fmt: skip
    assert '<td class="cost">13.73469134</td>' in html  # the grand total

    year = admin_client.get("/admin/conversations/usagerecord/report/?days=365").content.decode()
    assert '<td class="cost">20.73469134</td>' in year


def test_admin_ledger_is_read_only(admin_client, ledger):
    row = ledger["rows"]["today_chat"]
    assert admin_client.get("/admin/conversations/usagerecord/add/").status_code == 403
    page = admin_client.get(f"/admin/conversations/usagerecord/{row.pk}/change/")
    assert page.status_code == 200 and b'name="cost"' not in page.content
    filtered = admin_client.get("/admin/conversations/usagerecord/?priced__exact=0").content.decode()
    assert re.findall(r'<td class="field-model">([^<]+)</td>', filtered) == ["free-model"]
    by_user = admin_client.get("/admin/conversations/usagerecord/?user=bob").content.decode()
    assert re.findall(r'<td class="field-model">([^<]+)</td>', by_user) == ["bob-only-model"]


def test_admin_rejects_a_negative_price_with_a_form_error(admin_client, db):
    data = {
        "model": "gpt-a", "input_per_million": "-1", "cached_input_per_million": "0.5",
        "output_per_million": "2", "effective_from_0": "2025-03-01", "effective_from_1": "00:00:00", "source": "",
    }  # fmt: skip
    response = admin_client.post("/admin/conversations/modelprice/add/", data)
    assert response.status_code == 200
    assert "A price cannot be negative." in response.content.decode()
    assert not ModelPrice.objects.filter(model="gpt-a").exists()

    response = admin_client.post("/admin/conversations/modelprice/add/", {**data, "input_per_million": "1.25"})
    assert response.status_code == 302
    assert ModelPrice.objects.get(model="gpt-a").input_per_million == Decimal("1.25")


def test_user_admin_saves_a_budget_and_rate_limits_inline(admin_client, user):
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert "limits-0-monthly_budget" in page
    data = {
        "username": user.username, "first_name": "", "last_name": "", "email": "",
        "is_active": "on", "date_joined_0": "2025-01-01", "date_joined_1": "00:00:00",
        "limits-TOTAL_FORMS": "1", "limits-INITIAL_FORMS": "0", "limits-MIN_NUM_FORMS": "0", "limits-MAX_NUM_FORMS": "1",
        "model_grants-TOTAL_FORMS": "0", "model_grants-INITIAL_FORMS": "0", "model_grants-MIN_NUM_FORMS": "0",
        "model_grants-MAX_NUM_FORMS": "1000",
        "limits-0-monthly_budget": "12.50", "limits-0-requests_per_minute": "30", "limits-0-tokens_per_minute": "",
        "limits-0-id": "", "limits-0-user": str(user.pk),
        "sso_identities-TOTAL_FORMS": "0", "sso_identities-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = admin_client.post(f"/admin/auth/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    limits = UserLimits.objects.get(user=user)
    assert limits.monthly_budget == Decimal("12.50")
    assert limits.requests_per_minute == 30 and limits.tokens_per_minute is None

    listed = admin_client.get("/admin/conversations/userlimits/").content.decode()
    assert "12.50" in listed and user.username in listed


# --- Over the websocket ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_reply_shows_its_tokens_and_cost_when_done(user, chat_model, upstream, open_tab):
    from tests.upstream import Reply

    await ModelPrice.objects.acreate(
        model=chat_model.name, input_per_million=Decimal("2"), cached_input_per_million=Decimal("1"),
        output_per_million=Decimal("10"), effective_from=at(2020, 1, 1),
    )  # fmt: skip
    upstream.script(Reply(text="Hello there, how are you?", delay=0.01))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hi!")
    html = await tab.receive_until('class="message assistant" data-status="complete"')
    done = html[html.rindex('class="message assistant" data-status="complete"') :]
    usage = await UsageRecord.objects.aget(message__conversation=conversation)
    assert usage.state == "settled" and usage.cost > 0
    shown = f'{usage.prompt_tokens} in · {usage.completion_tokens} out · <span class="cost">${usage.cost:.6f}</span>'
    assert shown in done and "unpriced" not in done


@pytest.mark.django_db(transaction=True)
async def test_a_tab_reopened_after_the_reply_finished_shows_it_with_its_cost(user, chat_model, open_tab):
    """The socket's resume path renders replies that finished while the page was away."""
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    [reply] = await sync_to_async(path_append)(conversation, {
        "role": "assistant", "content": "Done.", "status": "complete", "prompt_tokens": 3, "completion_tokens": 2,
    })  # fmt: skip
    await UsageRecord.objects.acreate(
        user=user, message=reply, model=chat_model.name, state="settled", prompt_tokens=3, completion_tokens=2,
        cost=Decimal("0.00000700"),
    )  # fmt: skip
    _, _, tab = await open_tab(user, conversation.pk, query=f"streaming={reply.pk}")
    html = await tab.receive_until(f'id="message-{reply.pk}"')
    assert '3 in · 2 out · <span class="cost">$0.000007</span>' in html
