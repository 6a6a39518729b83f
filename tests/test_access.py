"""Groups decide which models people use and what they may spend; API keys carry scopes of their own.

Through the official openai SDK against a live chatweb and the loopback provider, the chat
socket, the pages and the admin.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import openai
import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from conversations.accounts.api_keys import api_key_create
from conversations.models import (
    ApiKey,
    ChatModel,
    Conversation,
    GroupPolicy,
    Message,
    ModelGrant,
    ModelPrice,
    SiteSettings,
    UsageRecord,
    UserLimits,
)
from tests.conftest import eventually
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def models(chat_model) -> dict[str, ChatModel]:
    """fake-model (the default), second-model and third-model, all on the loopback provider."""
    second = ChatModel.objects.create(
        name="second-model", display_name="Second Model", provider=chat_model.provider, upstream_model="second-up"
    )
    third = ChatModel.objects.create(
        name="third-model", display_name="Third Model", provider=chat_model.provider, upstream_model="third-up"
    )
    return {"fake": chat_model, "second": second, "third": third}


def _group(name: str, *, users=(), models=None, **policy) -> Group:
    """A group of ``users`` whose policy allows ``models`` (all when None)."""
    group = Group.objects.create(name=name)
    rules = GroupPolicy.objects.create(group=group, all_models=models is None, **policy)
    if models is not None:
        rules.allowed_models.set(models)
    for user in users:
        user.groups.add(group)
    return group


def _save(row, **fields):
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()


def _sdk(live_server_url: str, raw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server_url}/v1", api_key=raw, max_retries=0)


@pytest.fixture
def priced(chat_model) -> ModelPrice:
    """fake-model costs 1 USD per million input tokens and 2 USD per million output tokens."""
    return ModelPrice.objects.create(
        model="fake-model",
        input_per_million=Decimal("1"),
        cached_input_per_million=Decimal("0.5"),
        output_per_million=Decimal("2"),
        effective_from=timezone.now() - timedelta(days=1),
    )


# --- Which models -------------------------------------------------------------------------------


def test_a_user_sees_and_calls_only_the_models_of_their_groups_and_their_grants(
    live_server_url, user, models, upstream
):
    _group("Writers", users=[user], models=[models["fake"]])
    ModelGrant.objects.create(user=user, model=models["third"])
    sdk = _sdk(live_server_url, api_key_create(user=user, name="t")[1])

    assert sorted(m.id for m in sdk.models.list()) == ["fake-model", "third-model"]
    upstream.script(Reply(text="fine"))
    assert sdk.chat.completions.create(model="third-model", messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(openai.NotFoundError) as hidden:
        sdk.chat.completions.create(model="second-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    # Exactly as OpenAI answers a model the key cannot see: nothing tells it from one that does not exist.
    assert hidden.value.body == {
        "message": "The model `second-model` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("second-model")
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="second-model", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert [r["model"] for r in upstream.requests] == ["third-up"]  # the hidden model was never called

    _group("Everyone", users=[user])  # a second group allowing every model: the union counts
    assert sorted(m.id for m in sdk.models.list()) == ["fake-model", "second-model", "third-model"]


def test_users_in_no_group_use_every_model_unless_the_site_says_only_their_grants(live_server_url, user, models):
    sdk = _sdk(live_server_url, api_key_create(user=user, name="t")[1])
    assert len(sdk.models.list().data) == 3
    site = SiteSettings.load()
    site.ungrouped_all_models = False
    site.save()
    assert sdk.models.list().data == []
    ModelGrant.objects.create(user=user, model=models["second"])
    assert [m.id for m in sdk.models.list()] == ["second-model"]


def test_the_chat_offers_only_allowed_models_and_refuses_another_keeping_the_text(client, user, models):
    _group("Writers", users=[user], models=[models["second"]])
    client.force_login(user)
    page = client.get("/").content.decode()
    assert 'value="second-model"' in page and 'value="fake-model"' not in page and 'value="third-model"' not in page
    assert 'value="second-model" selected' in page  # the default model is not theirs: their first one is picked

    response = client.post("/c/new", {"message": "my careful question", "model": "third-model"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "“third-model” is not available to you" in html and "my careful question</textarea>" in html
    assert not Message.objects.exists()


async def test_a_conversation_whose_model_was_taken_away_says_so_and_keeps_the_text(user, models, open_tab):
    from asgiref.sync import sync_to_async

    group = await sync_to_async(_group)("Writers", users=[user], models=[models["fake"], models["second"]])
    conversation = await Conversation.objects.acreate(user=user, model=models["second"])
    policy = await GroupPolicy.objects.aget(group=group)
    await sync_to_async(policy.allowed_models.remove)(models["second"])
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="typed before the change")
    html = await tab.receive_until('id="composer-notice"')
    assert "“Second Model” is no longer available to you" in html
    assert 'id="composer-input"' not in html  # the textarea, and what was typed, is left alone
    assert await Message.objects.filter(conversation=conversation).acount() == 0


# --- Group budgets and member defaults ----------------------------------------------------------


def test_a_group_budget_refuses_every_member_once_spent_and_the_users_own_limit_applies_too(
    live_server_url, user, other_user, priced, upstream, client
):
    _group("Team", users=[user, other_user], monthly_budget=Decimal("0.01"))
    UserLimits.objects.create(user=user, monthly_budget=Decimal("100"))
    UsageRecord.objects.create(user=other_user, model="fake-model", state="settled", cost=Decimal("0.0099"))
    sdk = _sdk(live_server_url, api_key_create(user=user, name="t")[1])
    with pytest.raises(openai.RateLimitError) as caught:  # 512 reserved output tokens do not fit in the rest
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "insufficient_quota"
    assert "“Team” is reached: $0.01 of $0.01" in caught.value.message

    _save(UserLimits.objects.get(user=user), monthly_budget=Decimal("0"))  # saved as the admin does: caches follow
    _save(GroupPolicy.objects.get(), monthly_budget=Decimal("100"))
    with pytest.raises(openai.RateLimitError) as caught:  # the group has room, the user's own budget has none
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert "Monthly budget reached" in caught.value.message

    UserLimits.objects.filter(user=user).delete()
    upstream.script(Reply(text="ok"))
    assert sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])

    _save(GroupPolicy.objects.get(), monthly_budget=Decimal("0"))
    client.force_login(other_user)
    html = client.post("/c/new", {"message": "will the team pay?", "model": "fake-model"}).content.decode()
    assert "The monthly budget of your group “Team” is reached" in html and "will the team pay?</textarea>" in html


def test_group_defaults_apply_to_members_without_limits_of_their_own(live_server_url, user, chat_model, upstream):
    _group("Slow", users=[user], member_requests_per_minute=1)
    _group("Slower", users=[user], member_requests_per_minute=1, member_tokens_per_minute=10**6)
    sdk = _sdk(live_server_url, api_key_create(user=user, name="t")[1])
    upstream.script(Reply(text="one"), Reply(text="two"))
    first = sdk.chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "1"}]
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "2"}])
    assert caught.value.code == "rate_limit_exceeded"

    UserLimits.objects.update_or_create(user=user, defaults={"requests_per_minute": 100})  # their own limit wins
    assert sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "2"}])


# --- Scoped API keys ----------------------------------------------------------------------------


def test_an_expired_key_answers_401_as_an_invalid_key(live_server_url, user, chat_model):
    key, raw = api_key_create(user=user, name="t", expires_at=timezone.now() + timedelta(days=1))
    sdk = _sdk(live_server_url, raw)
    assert sdk.models.list().data
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    ApiKey.objects.get(pk=key.pk).save()  # as an admin's save would: clears the key cache
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.models.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert "expired on" in caught.value.message


def test_a_key_calls_only_the_models_it_was_given_within_its_users(live_server_url, user, models, upstream):
    _, raw = api_key_create(user=user, name="t", models=[models["second"]])
    sdk = _sdk(live_server_url, raw)
    assert [m.id for m in sdk.models.list()] == ["second-model"]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"

    _group("Narrow", users=[user], models=[models["fake"]])  # the user lost second-model: so did the key
    assert sdk.models.list().data == []


def test_a_key_over_its_own_budget_or_rpm_answers_429_and_another_key_still_works(
    live_server_url, user, priced, upstream
):
    budgeted = _sdk(live_server_url, api_key_create(user=user, name="b", monthly_budget=Decimal("0.01"))[1])
    limited = _sdk(live_server_url, api_key_create(user=user, name="r", requests_per_minute=1)[1])
    free = _sdk(live_server_url, api_key_create(user=user, name="f")[1])
    upstream.script(*[Reply(text="ok") for _ in range(4)])

    assert budgeted.chat.completions.create(
        model="fake-model", max_tokens=100, messages=[{"role": "user", "content": "1"}]
    )
    eventually(lambda: UsageRecord.objects.filter(api_key__name="b", state="settled").exists())  # after the answer
    UsageRecord.objects.filter(api_key__name="b").update(cost=Decimal("0.01"))
    with pytest.raises(openai.RateLimitError) as caught:
        budgeted.chat.completions.create(
            model="fake-model", max_tokens=100, messages=[{"role": "user", "content": "2"}]
        )
    assert (
        caught.value.code == "insufficient_quota" and "This API key's monthly budget is reached" in caught.value.message
    )

    assert limited.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "1"}])
    with pytest.raises(openai.RateLimitError) as caught:
        limited.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "2"}])
    assert (
        caught.value.code == "rate_limit_exceeded" and "for this API key: 1 requests per minute" in caught.value.message
    )
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 61

    assert free.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "3"}])


def test_a_read_only_key_reads_stored_completions_and_creates_nothing(live_server_url, user, chat_model, upstream):
    writer = _sdk(live_server_url, api_key_create(user=user, name="w")[1])
    reader = _sdk(live_server_url, api_key_create(user=user, name="r", read_only=True)[1])
    upstream.script(Reply(text="kept"))
    stored = writer.chat.completions.create(
        model="fake-model", store=True, metadata={"k": "v"}, messages=[{"role": "user", "content": "keep this"}]
    )

    assert [c.id for c in reader.chat.completions.list()] == [stored.id]
    assert reader.chat.completions.retrieve(stored.id).choices[0].message.content == "kept"
    assert [m.content for m in reader.chat.completions.messages.list(stored.id)] == ["keep this"]
    assert [m.id for m in reader.models.list()] == ["fake-model"]

    with pytest.raises(openai.AuthenticationError) as caught:
        reader.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "new"}])
    assert caught.value.status_code == 401 and caught.value.code is None
    assert caught.value.body["message"].startswith("You have insufficient permissions for this operation.")
    with pytest.raises(openai.AuthenticationError):
        reader.chat.completions.delete(stored.id)
    with pytest.raises(openai.AuthenticationError):
        reader.chat.completions.update(stored.id, metadata={"k": "changed"})
    assert writer.chat.completions.retrieve(stored.id).metadata == {"k": "v"}
    assert len(upstream.requests) == 1


# --- The keys page ------------------------------------------------------------------------------


def _form(**fields) -> dict:
    return {"name": "my app", "expires_on": "", "monthly_budget": "", "requests_per_minute": "", **fields}


def test_the_keys_page_creates_a_scoped_key_and_shows_its_scopes_and_spend(client, user, models):
    client.force_login(user)
    tomorrow = (timezone.now() + timedelta(days=1)).date()
    response = client.post(
        "/account/keys/",
        _form(
            name="reporting <b>bot</b>",
            expires_on=tomorrow.isoformat(),
            monthly_budget="5",
            requests_per_minute="30",
            models=[models["second"].pk],
            read_only="on",
        ),
    )
    assert response.status_code == 302
    key = ApiKey.objects.get(user=user)
    assert (key.monthly_budget, key.requests_per_minute, key.read_only) == (Decimal("5"), 30, True)
    assert key.expires_at.date() == tomorrow and key.expires_at.hour == 23  # usable through that day, UTC
    assert list(key.allowed_models.all()) == [models["second"]]
    UsageRecord.objects.create(user=user, api_key=key, model="second-model", state="settled", cost=Decimal("1.25"))
    UsageRecord.objects.create(
        user=user,
        api_key=key,
        model="second-model",
        state="settled",
        cost=Decimal("7"),
        created_at=timezone.now() - timedelta(days=40),
    )

    html = client.get("/account/keys/").content.decode()
    assert "reporting &lt;b&gt;bot&lt;/b&gt;" in html and "<b>bot</b>" not in html
    assert "Models: Second Model" in html and "Read-only" in html and "30 requests/min" in html
    assert f"Valid through {tomorrow.isoformat()} (UTC)" in html
    assert "$1.2500 of $5.00" in html  # this month only


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"models": ["999999"]}, "is not a model you may use"),
        ({"models": ["not-a-number"]}, "is not a model you may use"),
        ({"expires_on": "2001-01-01"}, "This date is in the past"),
        ({"expires_on": "31/31/2031"}, "Enter a valid date"),
        ({"monthly_budget": "-1"}, "greater than or equal to 0"),
        ({"monthly_budget": "1e400"}, "no more than 12 digits in total"),
        ({"monthly_budget": "NaN"}, "Enter a number"),
        ({"requests_per_minute": "0"}, "greater than or equal to 1"),
        ({"requests_per_minute": "99999999999999999999"}, "less than or equal to"),
        ({"name": "   "}, "Give the key a name"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"name": "null\x00byte"}, "may not contain U+0000"),
    ],
)
def test_bad_key_input_gets_a_message_and_keeps_what_was_typed(client, user, models, fields, message):
    client.force_login(user)
    response = client.post("/account/keys/", _form(**{"monthly_budget": "12.50", **fields}))
    html = response.content.decode()
    assert response.status_code == 400
    assert message in html
    assert 'value="12.50"' in html or "monthly_budget" in fields or "\x00" in fields.get("name", "")
    assert not ApiKey.objects.exists()


def test_a_model_outside_the_users_access_cannot_be_put_on_a_key(client, user, models):
    _group("Writers", users=[user], models=[models["fake"]])
    client.force_login(user)
    page = client.get("/account/keys/").content.decode()
    assert "Fake Model" in page and "Second Model" not in page
    response = client.post("/account/keys/", _form(models=[models["second"].pk]))
    assert response.status_code == 400 and "is not a model you may use" in response.content.decode()
    assert not ApiKey.objects.exists()


# --- The admin ----------------------------------------------------------------------------------


def test_the_admin_edits_a_groups_models_and_budgets_and_refuses_negative_ones(admin_client, user, models):
    group = Group.objects.create(name="Research")
    url = f"/admin/auth/group/{group.pk}/change/"
    form = {
        "name": "Research",
        "policy-TOTAL_FORMS": "1",
        "policy-INITIAL_FORMS": "0",
        "policy-MIN_NUM_FORMS": "0",
        "policy-MAX_NUM_FORMS": "1",
        "policy-0-allowed_models": [models["second"].pk],
        "policy-0-monthly_budget": "-5",
        "policy-0-member_monthly_budget": "",
        "policy-0-member_requests_per_minute": "",
        "policy-0-member_tokens_per_minute": "",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "A budget cannot be negative." in response.content.decode()
    assert not GroupPolicy.objects.exists()

    form["policy-0-monthly_budget"] = "25"
    assert admin_client.post(url, form).status_code == 302
    policy = GroupPolicy.objects.get(group=group)
    assert not policy.all_models and list(policy.allowed_models.all()) == [models["second"]]
    assert policy.monthly_budget == Decimal("25")

    user.groups.add(group)
    UsageRecord.objects.create(user=user, model="second-model", state="settled", cost=Decimal("3.5"))
    listing = admin_client.get("/admin/auth/group/").content.decode()
    assert "Second Model" in listing and "3.5" in listing
    report = admin_client.get("/admin/conversations/usagerecord/report/").content.decode()
    section = report[report.index('id="report-by-group"') : report.index('id="report-by-model"')]
    assert 'data-group="Research"' in section and "3.50000000" in section and "25.00" in section


def test_the_admin_grants_a_model_to_one_user_and_lists_keys_with_their_scopes(admin_client, user, models):
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/").content.decode()
    assert "models granted directly" in page.lower()
    api_key_create(user=user, name="scoped", read_only=True, monthly_budget=Decimal("3"))
    listing = admin_client.get("/admin/conversations/apikey/").content.decode()
    assert "scoped" in listing and "3.00" in listing
    key = ApiKey.objects.get()
    admin_client.post("/admin/conversations/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_request_to_v1_with_a_hostile_model_name_is_a_404_not_a_500(live_server_url, user, models):
    _group("Writers", users=[user], models=[models["fake"]])
    raw = api_key_create(user=user, name="t")[1]
    for name in ("'; DROP TABLE x; --", "<script>", "second-model\u0000", "x" * 5000):
        response = httpx.post(
            f"{live_server_url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {raw}"},
            json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code in (400, 404) and "error" in response.json()
