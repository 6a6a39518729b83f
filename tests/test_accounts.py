"""Accounts under attack and in daily use: throttled sign-ins, a user's own password change, and chat
sockets that end with their session (sign-out, password change, deactivation, expiry)."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Message
from tests.conftest import signed_in_session
from tests.upstream import Reply

MODEL_BACKEND = "conversations.accounts.auth.PasswordBackend"
PASSWORD = "alice-password-1"


def sign_in(client: Client, username: str, password: str, *, url: str = "/accounts/login/", **extra):
    return client.post(url, {"username": username, "password": password}, **extra)


# --- Throttled sign-ins ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_repeated_wrong_passwords_lock_the_username_out_with_a_clear_message(client, user, settings, url):
    user.is_staff = True
    user.save()
    for address in range(settings.AXES_FAILURE_LIMIT - 1):  # from as many addresses: the username itself is locked
        assert sign_in(client, "alice", "wrong", url=url, REMOTE_ADDR=f"10.0.0.{address}").status_code == 200
    assert sign_in(client, "alice", "wrong", url=url, REMOTE_ADDR="10.0.0.99").status_code == 429  # the last straw
    locked = sign_in(client, "alice", PASSWORD, url=url, REMOTE_ADDR="10.0.1.1")  # even the right password
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many failed sign-ins for “alice”" in page and "15 minutes" in page
    assert "_auth_user_id" not in client.session
    assert sign_in(Client(), "bob", "whatever", url=url, REMOTE_ADDR="10.0.1.2").status_code == 200  # others are not


@pytest.mark.django_db
def test_repeated_failures_from_one_address_lock_that_address_out(client, user, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess{i}", "wrong", REMOTE_ADDR="10.0.0.9")
    assert sign_in(client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.9").status_code == 429
    assert sign_in(Client(), "alice", PASSWORD, REMOTE_ADDR="10.0.0.10").status_code == 302  # alice elsewhere is fine


@pytest.mark.django_db
def test_a_lockout_expires(client, user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert sign_in(client, "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_admins_see_lockouts_and_clear_them(client, admin_client, user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "alice", "wrong", REMOTE_ADDR="10.0.0.7")
    listed = admin_client.get("/admin/axes/accessattempt/").content.decode()
    assert "alice" in listed and "10.0.0.7" in listed
    attempt = AccessAttempt.objects.get()
    response = admin_client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not AccessAttempt.objects.exists()
    assert sign_in(client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.7").status_code == 302


@pytest.mark.django_db
def test_the_client_address_comes_from_the_proxy_header_only_behind_a_proxy(client, user, settings):
    """Without BEHIND_PROXY a forged X-Forwarded-For changes nothing; behind it, only the proxy's own entry counts."""
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"guess{i}", "wrong", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    assert sign_in(client, "alice", PASSWORD, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4").status_code == 429

    AccessAttempt.objects.all().delete()
    settings.BEHIND_PROXY = True
    for i in range(settings.AXES_FAILURE_LIMIT):  # forged first entries, the proxy's last one the same
        sign_in(
            client, f"guess{i}", "wrong", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7"
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    assert sign_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert sign_in(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7, 203.0.113.8").status_code == 302


# --- A user's own password ----------------------------------------------------------------------


@pytest.mark.django_db
def test_users_change_their_own_password(client, user):
    client.force_login(user, backend=MODEL_BACKEND)
    assert 'href="/accounts/password/"' in client.get("/").content.decode()
    wrong = client.post("/accounts/password/", {"old_password": "nope", "new_password1": "x", "new_password2": "x"})
    assert wrong.status_code == 200 and "incorrectly" in wrong.content.decode()
    new = "a-brand-new-passphrase-7"
    done = client.post(
        "/accounts/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}, follow=True
    )
    assert "Your password is changed" in done.content.decode()
    assert client.get("/").status_code == 200  # this session stays signed in
    assert sign_in(Client(), "alice", new).status_code == 302
    assert sign_in(Client(), "alice", PASSWORD).status_code == 200


# --- Sockets end with their session --------------------------------------------------------------


def _browser(user) -> tuple[Client, object]:
    """A signed-in browser: its client and the session its sockets carry."""
    client = Client()
    client.force_login(user, backend=MODEL_BACKEND)
    return client, import_module(django_settings.SESSION_ENGINE).SessionStore(client.session.session_key)


async def _closed(tab) -> bool:
    return await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


async def _still_works(tab, upstream) -> bool:
    upstream.script(Reply(text="still open"))
    await tab.send(message="are you there?")
    return "still open" in await tab.receive_until('class="message assistant" data-status="complete"')


@pytest.mark.django_db(transaction=True)
async def test_signing_out_closes_that_browsers_sockets(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    browser, session = await sync_to_async(_browser)(user)
    _, _, tab = await open_tab(user, conversation.pk, session=session)
    _, _, elsewhere = await open_tab(user, conversation.pk)  # another browser, still signed in

    await sync_to_async(browser.post)("/accounts/logout/")

    assert await _closed(tab)
    assert await _still_works(elsewhere, upstream)


@pytest.mark.django_db(transaction=True)
async def test_changing_the_password_closes_the_users_sockets(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    browser, session = await sync_to_async(_browser)(user)
    _, _, here = await open_tab(user, conversation.pk, session=session)
    _, _, elsewhere = await open_tab(user, conversation.pk)
    new = "a-brand-new-passphrase-7"

    await sync_to_async(browser.post)(
        "/accounts/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )

    assert await _closed(elsewhere)
    assert await _closed(here)  # its session went on under a new key, which a reloaded page's socket carries
    renewed = import_module(django_settings.SESSION_ENGINE).SessionStore(browser.session.session_key)
    _, _, reloaded = await open_tab(user, conversation.pk, session=renewed)
    assert await _still_works(reloaded, upstream)


@pytest.mark.django_db(transaction=True)
async def test_an_admin_deactivating_a_user_closes_their_sockets(user, chat_model, open_tab, admin_client):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "date_joined_0": "2025-01-01",
        "date_joined_1": "00:00:00",
        "limits-TOTAL_FORMS": "0",
        "limits-INITIAL_FORMS": "0",
        "limits-MIN_NUM_FORMS": "0",
        "limits-MAX_NUM_FORMS": "1",
        "model_grants-TOTAL_FORMS": "0",
        "model_grants-INITIAL_FORMS": "0",
        "model_grants-MIN_NUM_FORMS": "0",
        "model_grants-MAX_NUM_FORMS": "1000",
        "sso_identities-TOTAL_FORMS": "0",
        "sso_identities-INITIAL_FORMS": "0",
    }  # fmt: skip  (is_active left out: unticked)
    response = await sync_to_async(admin_client.post)(f"/admin/auth/user/{user.pk}/change/", data)
    assert response.status_code == 302
    assert await _closed(tab)


@pytest.mark.django_db(transaction=True)
async def test_a_socket_closes_when_its_session_expires(user, chat_model, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    session = await sync_to_async(signed_in_session)(user)
    await sync_to_async(lambda: (session.set_expiry(1), session.save()))()
    _, _, tab = await open_tab(user, conversation.pk, session=session)
    assert await tab.communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}


@pytest.mark.django_db(transaction=True)
async def test_an_action_on_a_socket_whose_session_is_gone_is_refused(user, chat_model, upstream, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    session = await sync_to_async(signed_in_session)(user)
    _, _, tab = await open_tab(user, conversation.pk, session=session)
    await Session.objects.filter(session_key=session.session_key).adelete()  # gone without a word to the socket

    await tab.send(message="post this as alice")

    assert await _closed(tab)
    assert not await Message.objects.aexists() and upstream.requests == []
