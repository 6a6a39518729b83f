"""A chat's system prompt and parameters, presets, and a user's defaults for new chats."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from conversations.chat.settings import (
    chat_request_parameters,
    chat_settings_clean,
    conversation_settings_set,
    new_chat_settings,
    preferences_chat_set,
    preset_save,
)
from conversations.core.errors import InvalidInput
from conversations.models import ChatModel, Conversation, Message, Preset, StoredCompletion
from tests.conftest import wait_for_status


@pytest.fixture
def client_for(db):
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


# --- Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("temperature", "2.5", "Temperature: a number from 0 to 2"),
        ("temperature", "-0.1", "Temperature: a number from 0 to 2"),
        ("temperature", "warm", "not “warm”"),
        ("temperature", "nan", "Temperature"),
        ("top_p", "1.01", "Top p: a number from 0 to 1"),
        ("max_tokens", "0", "Max tokens: a whole number from 1"),
        ("max_tokens", "1.5", "Max tokens"),
        ("reasoning_effort", "extreme", "Reasoning effort: choose low, medium or high"),
    ],
)
def test_parameters_out_of_range_are_refused_with_the_field_named(chat_model, field, value, words):
    with pytest.raises(InvalidInput) as caught:
        chat_settings_clean(data={field: value}, model=chat_model)
    assert caught.value.param == field
    assert words in caught.value.message


def test_max_tokens_is_bounded_by_the_models_limit_and_reasoning_effort_needs_a_reasoning_model(chat_model):
    chat_model.max_tokens = 100
    with pytest.raises(InvalidInput, match="from 1 to 100 \\(the limit of Fake Model\\)") as caught:
        chat_settings_clean(data={"max_tokens": "101"}, model=chat_model)
    assert caught.value.param == "max_tokens"
    assert chat_settings_clean(data={"max_tokens": "100"}, model=chat_model)["max_tokens"] == 100
    with pytest.raises(InvalidInput, match="Fake Model is not a reasoning model") as caught:
        chat_settings_clean(data={"reasoning_effort": "high"}, model=chat_model)
    chat_model.reasoning = True
    assert chat_settings_clean(data={"reasoning_effort": "high"}, model=chat_model)["reasoning_effort"] == "high"


def test_the_request_sends_what_is_set_within_the_current_models_limits(chat_model, user):
    conversation = Conversation(
        user=user, model=chat_model, temperature=0.0, top_p=0.5, max_tokens=500, reasoning_effort="low"
    )
    assert chat_request_parameters(settings=conversation, model=chat_model) == {
        "max_tokens": 500,
        "temperature": 0.0,
        "top_p": 0.5,  # 0 is sent: it is not "blank"
    }
    chat_model.max_tokens, chat_model.reasoning = 200, True  # switched to a model with a lower limit
    assert chat_request_parameters(settings=conversation, model=chat_model) == {
        "max_tokens": 200,
        "temperature": 0.0,
        "top_p": 0.5,
        "reasoning_effort": "low",
    }
    assert chat_request_parameters(settings=Conversation(user=user), model=None) == {}


# --- A chat's settings, end to end ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_system_prompt_and_parameters_are_sent_and_recorded_in_the_stored_request(
    user, chat_model, upstream, open_tab
):
    chat_model.reasoning, chat_model.max_tokens = True, 300
    await chat_model.asave()
    conversation = await Conversation.objects.acreate(
        user=user,
        model=chat_model,
        system_prompt="Answer like a pirate.",
        temperature=0.3,
        top_p=0.9,
        reasoning_effort="medium",
    )
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Hello")
    await tab.receive_until('class="message assistant" data-status="complete"')

    sent = upstream.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["reasoning_effort"]) == (
        0.3,
        0.9,
        300,
        "medium",
    )
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    stored = await StoredCompletion.objects.aget(message=reply)
    assert stored.request == {
        "model": "fake-model",
        "stream": True,
        "max_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning_effort": "medium",
    }
    assert stored.messages[0] == {"role": "system", "content": "Answer like a pirate."}


@pytest.mark.django_db(transaction=True)
async def test_a_changed_prompt_applies_from_the_next_turn(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="First")
    await tab.receive_until('class="message assistant" data-status="complete"')
    assert upstream.requests[-1]["messages"][0]["role"] == "user"
    assert "temperature" not in upstream.requests[-1]

    await sync_to_async(conversation_settings_set)(
        conversation=await Conversation.objects.aget(pk=conversation.pk),
        data={"system_prompt": "Be brief.", "temperature": "1.2"},
    )
    await tab.send(message="Second")
    await tab.receive_until("You said: Second")
    reply = await Message.objects.filter(role="assistant").alast()
    await wait_for_status(reply.pk, "complete")

    sent = upstream.requests[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["content"] for m in sent["messages"][1:]] == ["First", "You said: First", "Second"]
    assert sent["temperature"] == 1.2


def test_settings_form_saves_and_out_of_range_keeps_what_was_typed(client_for, user, chat_model):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    client = client_for(user)
    url = f"/c/{conversation.pk}/settings"

    bad = client.post(url, {"system_prompt": "Keep me", "temperature": "3"}, headers={"HX-Request": "true"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "Temperature: a number from 0 to 2" in html
    assert 'name="temperature" type="number"' in html and 'value="3"' in html and 'aria-invalid="true"' in html
    assert "Keep me</textarea>" in html
    conversation.refresh_from_db()
    assert conversation.system_prompt == "" and conversation.temperature is None

    good = client.post(
        url, {"system_prompt": "Be kind", "temperature": "0.7", "max_tokens": ""}, headers={"HX-Request": "true"}
    )
    assert good.status_code == 200 and "Saved" in good.content.decode()
    conversation.refresh_from_db()
    assert (conversation.system_prompt, conversation.temperature, conversation.max_tokens) == ("Be kind", 0.7, None)


def test_another_users_conversation_settings_answer_404(client_for, user, other_user, chat_model):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    response = client_for(other_user).post(f"/c/{conversation.pk}/settings", {"temperature": "1"})
    assert response.status_code == 404


def test_new_chat_with_bad_parameters_keeps_the_message_and_the_settings(client_for, user, chat_model):
    response = client_for(user).post(
        "/c/new", {"message": "My long question", "model": "fake-model", "system_prompt": "Be terse", "top_p": "7"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Top p: a number from 0 to 1" in html
    assert "My long question</textarea>" in html and "Be terse</textarea>" in html
    assert not Conversation.objects.exists()


# --- Presets and defaults ------------------------------------------------------------------------


def test_presets_own_and_site_wide_start_new_chats(client_for, user, other_user, chat_model):
    other_model = ChatModel.objects.create(name="other", provider=chat_model.provider, upstream_model="o")
    site = Preset.objects.create(name="Translator", system_prompt="Translate to French.", model=other_model)
    theirs = Preset.objects.create(user=other_user, name="Bob's", system_prompt="Bob only")
    client = client_for(user)

    created = client.post(
        "/presets/", {"name": "Coder", "model": "fake-model", "system_prompt": "Write Python.", "temperature": "0.2"}
    )
    assert created.status_code == 302
    mine = Preset.objects.get(user=user)
    assert (mine.name, mine.model, mine.temperature) == ("Coder", chat_model, 0.2)

    page = client.get("/presets/").content.decode()
    assert "Coder" in page and "Translator" in page and "site-wide" in page and "Bob&#x27;s" not in page

    new_chat = client.get(f"/?preset={site.pk}").content.decode()
    assert "Translate to French.</textarea>" in new_chat
    assert '<option value="other" selected>' in new_chat
    assert client.get(f"/?preset={theirs.pk}").status_code == 404
    assert client.post(f"/presets/{theirs.pk}", {"name": "Mine now"}).status_code == 404
    assert client.post(f"/presets/{site.pk}", {"delete": "1"}).status_code == 404  # admins publish those
    assert Preset.objects.filter(pk=site.pk).exists()


def test_preset_errors_name_the_field_and_keep_the_form(client_for, user, chat_model):
    response = client_for(user).post("/presets/", {"name": "Hot", "temperature": "9", "system_prompt": "typed"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Temperature: a number from 0 to 2" in html and "typed</textarea>" in html
    assert not Preset.objects.exists()


def test_default_preset_and_own_prompt_shape_new_chats(user, chat_model):
    preset = preset_save(user=user, data={"name": "Brief", "system_prompt": "Be brief.", "temperature": "0.1"})
    preferences_chat_set(user=user, system_prompt="Call me Al.", default_preset_id=str(preset.pk))

    chosen, values = new_chat_settings(user=user)
    assert chosen == preset
    assert values["system_prompt"] == "Call me Al.\n\nBe brief."
    assert values["temperature"] == 0.1

    preferences_chat_set(user=user, system_prompt="Call me Al.", default_preset_id="")
    chosen, values = new_chat_settings(user=user)
    assert chosen is None and values["system_prompt"] == "Call me Al." and values["temperature"] is None


def test_new_chat_page_offers_the_default_and_the_chat_keeps_what_was_sent(client_for, user, chat_model, upstream):
    preferences_chat_set(user=user, system_prompt="Call me Al.", default_preset_id="")
    client = client_for(user)
    assert "Call me Al.</textarea>" in client.get("/").content.decode()
    response = client.post(
        "/c/new",
        {
            "message": "Hi",
            "model": "fake-model",
            "system_prompt": "Call me Al.",
            "temperature": "0.5",
            "max_tokens": "64",
        },
    )
    assert response.status_code == 302
    conversation = Conversation.objects.get(user=user)
    assert (conversation.system_prompt, conversation.temperature, conversation.max_tokens) == ("Call me Al.", 0.5, 64)
