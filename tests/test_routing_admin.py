"""An admin sets up a model with two deployments and an alias, tests them, and reads a completion's attempts."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations.models import ChatModel, Deployment, ModelAlias, Provider, StoredCompletion
from tests.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)

INLINES = {
    "deployments-TOTAL_FORMS": "1",
    "deployments-INITIAL_FORMS": "0",
    "aliases-TOTAL_FORMS": "1",
    "aliases-INITIAL_FORMS": "0",
}


def test_an_admin_adds_a_second_deployment_and_an_alias_inline(admin_client, chat_model, upstream):
    backup = Provider.objects.create(name="Backup", base_url=f"http://127.0.0.1:{free_port()}/v1")
    response = admin_client.post(
        reverse("admin:conversations_chatmodel_change", args=[chat_model.pk]),
        {
            "name": chat_model.name,
            "display_name": "",
            "provider": chat_model.provider_id,
            "upstream_model": chat_model.upstream_model,
            "enabled": "on",
            "is_default": "on",
            "position": "1",
            "max_tokens": "",
            **INLINES,
            "deployments-0-provider": backup.pk,
            "deployments-0-upstream_model": "backup-id",
            "deployments-0-priority": "1",
            "deployments-0-weight": "1",
            "deployments-0-enabled": "on",
            "aliases-0-name": "default",
        },
    )
    assert response.status_code == 302
    (deployment,) = Deployment.objects.filter(model=chat_model)
    assert deployment.provider == backup and deployment.upstream_model == "backup-id" and deployment.priority == 1
    assert ModelAlias.objects.get(name="default").model == chat_model


def test_an_alias_cannot_take_a_models_name(admin_client, chat_model):
    other = ChatModel.objects.create(name="other", provider=chat_model.provider, upstream_model="x")
    response = admin_client.post(
        reverse("admin:conversations_chatmodel_change", args=[other.pk]),
        {
            "name": "other",
            "provider": other.provider_id,
            "upstream_model": "x",
            "enabled": "on",
            "position": "1",
            **INLINES,
            "deployments-TOTAL_FORMS": "0",
            "aliases-0-name": chat_model.name,
        },
    )
    assert response.status_code == 200 and "A model has that name already." in response.content.decode()


def test_the_test_action_shows_each_deployments_latency_or_error(admin_client, chat_model, upstream):
    down = Provider.objects.create(name="Down", base_url=f"http://127.0.0.1:{free_port()}/v1")
    Deployment.objects.create(model=chat_model, provider=down, upstream_model="down-id")
    response = admin_client.post(
        reverse("admin:conversations_chatmodel_changelist"),
        {"action": "test_deployments", "_selected_action": [chat_model.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Fake / fake-upstream: " in page and " ms" in page
    assert "Down / down-id: failed (502): Could not reach the provider." in page
    assert upstream.requests[-1]["max_tokens"] == 1


def test_the_fetch_models_action_lists_what_a_provider_offers(admin_client, chat_model, upstream):
    response = admin_client.post(
        reverse("admin:conversations_provider_changelist"),
        {"action": "fetch_models", "_selected_action": [chat_model.provider_id]},
        follow=True,
    )
    page = response.content.decode()
    assert "Fake offers 3 models; not used yet:" in page
    assert "upstream_model=fake-model-2" in page and ">text-embedding-3-small</a>" in page
    Provider.objects.filter(pk=chat_model.provider_id).update(base_url=f"http://127.0.0.1:{free_port()}/v1")
    response = admin_client.post(
        reverse("admin:conversations_provider_changelist"),
        {"action": "fetch_models", "_selected_action": [chat_model.provider_id]},
        follow=True,
    )
    assert "Fake: Could not reach the provider at http://127.0.0.1:" in response.content.decode()


def test_a_completions_failed_attempts_are_shown(admin_client, user):
    stored = StoredCompletion.objects.create(
        id="chatcmpl-routed",
        user=user,
        model="m",
        provider="Second",
        upstream_model="second-id",
        attempts=[
            {
                "deployment": "First / first-id",
                "status": 502,
                "error": "Could not reach the provider.",
                "at": "2026-12-01T23:00:00+00:00",
            }
        ],
    )
    page = admin_client.get(reverse("admin:conversations_storedcompletion_change", args=[stored.pk])).content.decode()
    assert "First / first-id — Could not reach the provider. at 2026-12-01T23:00:00+00:00" in page
