"""Providers and models bootstrapped from the environment."""

import pytest

from conversations.models import ChatModel, Provider
from conversations.providers.catalog import (
    LOCAL_MODEL_LABEL,
    LOCAL_MODEL_NAME,
    LOCAL_PROVIDER,
    OPENAI_PROVIDER,
    providers_sync,
)
from conversations.providers.completions import UpstreamConnectionError
from tests.live import free_port


@pytest.fixture
def openai_env(settings, upstream):
    settings.OPENAI_API_KEY = "sk-test-openai"
    settings.OPENAI_BASE_URL = upstream.base_url
    return settings


def default_models() -> list[str]:
    return list(ChatModel.objects.filter(is_default=True).values_list("name", flat=True))


def test_openai_models_are_registered_without_the_local_model(db, openai_env):
    openai_env.LOCAL_MODEL = False

    providers_sync()

    openai = Provider.objects.get(name=OPENAI_PROVIDER)
    assert openai.enabled
    assert (openai.base_url, openai.api_key) == (openai_env.OPENAI_BASE_URL, "sk-test-openai")
    models = {m.name: m for m in ChatModel.objects.all()}
    assert set(models) == {"fake-model", "fake-model-2"}  # not text-embedding-3-small
    assert all(m.provider == openai and m.upstream_model == m.name for m in models.values())
    assert default_models() == ["fake-model"]
    assert not Provider.objects.get(name=LOCAL_PROVIDER).enabled


def test_running_twice_creates_no_duplicates(db, openai_env):
    openai_env.LOCAL_MODEL = False

    providers_sync()
    providers_sync()

    assert Provider.objects.filter(name=OPENAI_PROVIDER).count() == 1
    assert Provider.objects.filter(name=LOCAL_PROVIDER).count() == 1
    assert sorted(ChatModel.objects.values_list("name", flat=True)) == ["fake-model", "fake-model-2"]
    assert len(default_models()) == 1


def test_admin_choices_survive_a_sync(db, openai_env):
    openai_env.LOCAL_MODEL = False
    providers_sync()
    ChatModel.objects.filter(is_default=True).update(is_default=False)
    ChatModel.objects.filter(name="fake-model-2").update(is_default=True, display_name="Second")

    providers_sync()

    assert default_models() == ["fake-model-2"]
    assert ChatModel.objects.get(name="fake-model-2").display_name == "Second"


def test_new_upstream_models_are_added_on_the_next_sync(db, openai_env, upstream, monkeypatch):
    openai_env.LOCAL_MODEL = False
    providers_sync()
    monkeypatch.setattr(upstream, "models", [*upstream.models, "fake-model-3", "whisper-1", "tts-1-hd"])

    providers_sync()

    assert sorted(ChatModel.objects.values_list("name", flat=True)) == ["fake-model", "fake-model-2", "fake-model-3"]
    assert default_models() == ["fake-model"]


def test_local_model_is_registered(db, settings):
    settings.LOCAL_MODEL = True
    settings.OPENAI_API_KEY = ""
    settings.LOCAL_MODEL_HOST, settings.LOCAL_MODEL_PORT = "127.0.0.1", 8123

    providers_sync()

    model = ChatModel.objects.get(name=LOCAL_MODEL_NAME)
    assert model.name == "smollm2-135m"
    assert model.label == LOCAL_MODEL_LABEL == "SmolLM2 135M (local)"
    assert model.provider.name == LOCAL_PROVIDER and model.provider.enabled
    assert model.provider.base_url == "http://127.0.0.1:8123/v1"
    assert model.upstream_model == "smollm2-135m"
    assert model.max_tokens == 1024  # a model this small can otherwise ramble for minutes
    assert default_models() == ["smollm2-135m"]
    assert not Provider.objects.filter(name=OPENAI_PROVIDER).exists()


def test_local_and_openai_together_then_local_turned_off(db, openai_env):
    openai_env.LOCAL_MODEL = True
    providers_sync()

    assert sorted(ChatModel.objects.values_list("name", flat=True)) == ["fake-model", "fake-model-2", "smollm2-135m"]
    assert default_models() == ["smollm2-135m"]

    openai_env.LOCAL_MODEL = False
    providers_sync()

    assert not Provider.objects.get(name=LOCAL_PROVIDER).enabled
    assert default_models() == ["fake-model"]  # the default moved to a model that works


def test_unreachable_openai_endpoint_is_reported(db, settings):
    settings.LOCAL_MODEL = False
    settings.OPENAI_API_KEY = "sk-test-openai"
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there

    with pytest.raises(UpstreamConnectionError):
        providers_sync()

    assert not ChatModel.objects.exists()


@pytest.mark.parametrize(("entered", "saved"), [("300", 300), ("", None), ("0", "error")])
def test_an_admin_sets_a_models_reply_length_limit(admin_client, chat_model, entered, saved):
    response = admin_client.post(
        f"/admin/conversations/chatmodel/{chat_model.pk}/change/",
        {
            "name": chat_model.name,
            "display_name": chat_model.display_name,
            "provider": chat_model.provider_id,
            "upstream_model": chat_model.upstream_model,
            "enabled": "on",
            "is_default": "on",
            "position": "1",
            "max_tokens": entered,
            # The deployments and aliases inlines, left empty.
            "deployments-TOTAL_FORMS": "0",
            "deployments-INITIAL_FORMS": "0",
            "aliases-TOTAL_FORMS": "0",
            "aliases-INITIAL_FORMS": "0",
        },
    )
    chat_model.refresh_from_db()
    if saved == "error":
        assert response.status_code == 200 and "greater than or equal to 1" in response.content.decode()
        assert chat_model.max_tokens is None
    else:
        assert response.status_code == 302 and chat_model.max_tokens == saved
