"""Provider keys: encrypted at rest, usable by the completions service, never shown back in full."""

import pytest
from django.db import connection

from conversations.models import Provider


@pytest.mark.django_db
def test_provider_key_is_encrypted_in_the_database_and_readable_by_the_app():
    provider = Provider.objects.create(
        name="OpenAI", base_url="https://api.openai.com/v1", api_key="sk-live-abcdef123456"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM conversations_provider WHERE id = %s", [provider.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("enc:v1:") and "abcdef" not in stored
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-live-abcdef123456"


@pytest.mark.django_db
def test_a_changed_encryption_key_is_reported_not_silently_used(settings):
    provider = Provider.objects.create(name="P", base_url="https://x.example/v1", api_key="sk-live-abcdef123456")
    settings.ENCRYPTION_KEY = "a different key"
    with pytest.raises(ValueError, match="ENCRYPTION_KEY"):
        Provider.objects.get(pk=provider.pk)


@pytest.mark.django_db
def test_admin_never_shows_the_key(admin_client):
    provider = Provider.objects.create(
        name="OpenAI", base_url="https://api.openai.com/v1", api_key="sk-live-abcdef123456"
    )
    listing = admin_client.get("/admin/conversations/provider/").content.decode()
    page = admin_client.get(f"/admin/conversations/provider/{provider.pk}/change/").content.decode()
    assert "…3456" in listing
    assert "sk-live-abcdef123456" not in listing + page and "abcdef12" not in listing + page

    # Saving the form with the key left blank keeps it.
    admin_client.post(
        f"/admin/conversations/provider/{provider.pk}/change/",
        {
            "name": "OpenAI",
            "base_url": "https://api.openai.com/v1",
            "api_key": "",
            "enabled": "on",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )
    assert Provider.objects.get(pk=provider.pk).api_key == "sk-live-abcdef123456"
