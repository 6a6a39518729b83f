"""The pages around the chat: accounts, conversation list, rename, delete, isolation."""

import pytest
from django.core.management import call_command
from django.test import AsyncClient

from conversations.models import Conversation, Message, SiteSettings, UserPreferences
from tests.conftest import path_append, wait_for_status
from tests.upstream import Reply


@pytest.mark.django_db
def test_first_visitor_creates_the_admin_account_and_signups_then_close(client, django_user_model):
    assert client.get("/").url.startswith("/accounts/login/")
    assert client.get("/accounts/login/").url == "/accounts/signup/"
    page = client.get("/accounts/signup/")
    assert b"will be the administrator" in page.content

    response = client.post(
        "/accounts/signup/", {"username": "root", "password1": "a-long-pass-42", "password2": "a-long-pass-42"}
    )
    assert response.status_code == 302
    admin = django_user_model.objects.get(username="root")
    assert admin.is_superuser and admin.is_staff
    assert client.get("/admin/").status_code == 200

    client.logout()
    closed = client.get("/accounts/signup/")
    assert closed.status_code == 403
    assert "Sign-up is closed; ask your admin" in closed.content.decode()
    assert b'href="/accounts/login/"' in closed.content
    assert b"Create one" not in client.get("/accounts/login/").content


@pytest.mark.django_db
def test_open_signups_create_ordinary_users(client, user, django_user_model):
    settings_row = SiteSettings.load()
    settings_row.signups_open = True
    settings_row.save()
    assert b"Create one" in client.get("/accounts/login/").content
    client.post(
        "/accounts/signup/", {"username": "carol", "password1": "a-long-pass-42", "password2": "a-long-pass-42"}
    )
    carol = django_user_model.objects.get(username="carol")
    assert not carol.is_staff and not carol.is_superuser
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_sidebar_lists_own_conversations_newest_first(client, user, other_user, chat_model):
    Conversation.objects.create(user=user, title="Older one", model=chat_model)
    Conversation.objects.create(user=user, title="Newer one", model=chat_model)
    Conversation.objects.create(user=other_user, title="Bob's secret", model=chat_model)
    client.force_login(user)
    html = client.get("/").content.decode()
    assert html.index("Newer one") < html.index("Older one")
    assert "Bob&#x27;s secret" not in html and "Bob's secret" not in html
    assert "Fake Model" in html  # the model picker


@pytest.mark.django_db
def test_another_users_conversation_is_404_everywhere(client, user, other_user, chat_model):
    theirs = Conversation.objects.create(user=other_user, title="Bob's", model=chat_model)
    client.force_login(user)
    assert client.get(f"/c/{theirs.pk}/").status_code == 404
    assert client.post(f"/c/{theirs.pk}/rename", {"title": "mine now"}).status_code == 404
    assert client.post(f"/c/{theirs.pk}/delete").status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Bob's"


@pytest.mark.django_db
def test_conversation_page_shows_messages_with_markdown_and_escaped_user_text(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Hello", model=chat_model)
    path_append(
        conversation,
        {"role": "user", "content": "<b>not bold</b>"},
        {"role": "assistant", "content": "**bold** and `code`"},
    )
    client.force_login(user)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in html
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert f'ws-connect="/ws/c/{conversation.pk}/?streaming="' in html


@pytest.mark.django_db
def test_rename_and_delete(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Old title", model=chat_model)
    client.force_login(user)
    response = client.post(f"/c/{conversation.pk}/rename", {"title": "  New   title "}, HTTP_HX_REQUEST="true")
    assert 'value="New title"' in response.content.decode()
    assert '<h1 id="conversation-title" hx-swap-oob="true">New title</h1>' in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "New title"

    response = client.post(f"/c/{conversation.pk}/rename", {"title": "   "}, HTTP_HX_REQUEST="true")
    assert "cannot be empty" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "New title"

    assert client.post(f"/c/{conversation.pk}/delete").url == "/"
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


@pytest.mark.django_db
def test_new_conversation_with_an_empty_message_keeps_the_page_and_says_why(client, user, chat_model):
    client.force_login(user)
    response = client.post("/c/new", {"message": "  ", "model": "fake-model"})
    assert response.status_code == 400
    assert "Type a message first" in response.content.decode()
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_no_model_configured_says_so(client, user):
    client.force_login(user)
    response = client.post("/c/new", {"message": "hello"})
    assert response.status_code == 400
    assert "No model is set up yet" in response.content.decode()
    assert "hello</textarea>" in response.content.decode()  # what was typed is kept


@pytest.mark.django_db(transaction=True)
async def test_new_conversation_is_titled_from_the_first_message_and_replied_to(user, chat_model, upstream):
    upstream.script(Reply(text="Sure thing."))
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.post("/c/new", {"message": "Plan a trip to Lisbon in May please", "model": "fake-model"})
    conversation = await Conversation.objects.aget(user=user)
    assert response.url == f"/c/{conversation.pk}/"
    assert conversation.title == "Plan a trip to Lisbon in May please"
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    reply = await wait_for_status(reply.pk, "complete")
    assert reply.content == "Sure thing."


@pytest.mark.django_db
def test_replies_left_streaming_are_marked_interrupted_at_startup(user, chat_model):
    conversation = Conversation.objects.create(user=user, model=chat_model)
    left = Message.objects.create(conversation=conversation, role="assistant", status="streaming", content="half a")
    done = Message.objects.create(conversation=conversation, role="assistant", status="complete", content="whole")
    call_command("recover_streams")
    left.refresh_from_db()
    done.refresh_from_db()
    assert left.status == "interrupted" and left.content == "half a"
    assert done.status == "complete"


@pytest.mark.django_db
def test_api_key_is_shown_once_stored_hashed_and_revocable(client, user, other_user):
    from conversations.models import ApiKey

    client.force_login(user)
    created = client.post("/account/keys/", {"name": "my script"})
    assert created.status_code == 302 and created.url == "/account/keys/"  # a reload cannot post it again
    shown = client.get(created.url)
    assert "no-store" in shown["Cache-Control"]  # the page with the secret is kept by no cache
    html = shown.content.decode()
    key = ApiKey.objects.get(user=user)
    raw = html.split('id="new-key" aria-label="New API key" data-select-on-click')[0].rsplit('value="', 1)[1]
    raw = raw.split('"')[0]
    assert raw.startswith("sk-cw-") and len(raw) > 40
    assert key.hashed != raw and raw not in key.hashed and key.prefix == raw[:12]
    listing = client.get("/account/keys/").content.decode()  # the reload
    assert "my script" in listing and raw not in listing and key.prefix in listing
    assert ApiKey.objects.filter(user=user).count() == 1

    client.force_login(other_user)
    assert client.post(f"/account/keys/{key.pk}/revoke").status_code == 404
    client.force_login(user)
    client.post(f"/account/keys/{key.pk}/revoke")
    key.refresh_from_db()
    assert not key.is_active
    assert "Give the key a name" in client.post("/account/keys/", {"name": " "}).content.decode()


@pytest.mark.django_db
def test_finished_replies_are_shown_from_their_rendered_copy(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Cached", model=chat_model)
    path_append(
        conversation,
        {"role": "assistant", "content": "**bold**", "content_html": "<p><strong>bold</strong> (kept)</p>"},
    )
    client.force_login(user)
    assert "<p><strong>bold</strong> (kept)</p>" in client.get(f"/c/{conversation.pk}/").content.decode()


@pytest.mark.django_db
def test_a_long_conversation_opens_on_its_latest_messages_and_loads_earlier_ones(client, user, other_user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Long", model=chat_model)
    path_append(conversation, *({"role": "user", "content": f"message number {i}"} for i in range(250)))
    client.force_login(user)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "message number 249" in page and "message number 150" in page and "message number 149" not in page

    pages = [page]
    while 'hx-trigger="intersect once"' in pages[-1]:
        url = pages[-1].split('class="earlier')[1].split('hx-get="')[1].split('"')[0].replace("&amp;", "&")
        pages.append(client.get(url).content.decode())
    assert len(pages) == 3
    assert "message number 149" in pages[1] and "message number 50" in pages[1] and "message number 49" not in pages[1]
    assert "message number 0<" in pages[2] and "message number 49" in pages[2]

    client.force_login(other_user)
    assert client.get(url).status_code == 404


@pytest.mark.django_db
def test_a_picked_theme_is_kept_for_the_user_and_written_into_every_page(client, user, other_user, chat_model):
    client.force_login(user)
    assert "data-theme" not in client.get("/").content.decode()  # follows the browser by default

    response = client.post("/account/theme", {"theme": "dark"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'value="dark" aria-pressed="true"' in response.content.decode()
    assert UserPreferences.objects.get(user=user).theme == "dark"
    for path in ("/", "/usage/", "/account/keys/"):
        assert '<html lang="en" data-theme="dark">' in client.get(path).content.decode()

    assert client.post("/account/theme", {"theme": "sepia"}).status_code == 400
    assert client.post("/account/theme", {"theme": "light", "next": "/usage/"}).url == "/usage/"
    assert client.post("/account/theme", {"theme": "light", "next": "https://evil.example/"}).url == "/"
    assert UserPreferences.objects.get(user=user).theme == "light"

    client.force_login(other_user)  # another user's choice is their own
    assert "data-theme" not in client.get("/").content.decode()
    client.logout()
    assert client.post("/account/theme", {"theme": "dark"}).status_code == 302
    assert not UserPreferences.objects.filter(user=other_user).exists()


@pytest.mark.django_db
def test_replies_name_the_model_by_its_display_name(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Names", model=chat_model)
    path_append(
        conversation,
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "model_name": chat_model.name},
        {"role": "assistant", "content": "Old", "model_name": "retired-model"},
    )
    client.force_login(user)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert '<div class="role">Fake Model</div>' in html
    assert '<div class="role">retired-model</div>' in html  # a model gone from the admin keeps its name
    assert '<h1 id="conversation-title">Names</h1>' in html and html.count("<h1") == 1


@pytest.mark.django_db
def test_a_reply_loaded_mid_stream_shows_its_finished_blocks_formatted_and_the_rest_as_text(client, user, chat_model):
    conversation = Conversation.objects.create(user=user, title="Live", model=chat_model)
    [reply] = path_append(conversation, {
        "role": "assistant", "status": "streaming", "model_name": chat_model.name,
        "content": "## Plan\n\n<script>alert(1)</script> and **bold**\n\n- one\n- <img src=x onerror=alert(2)>",
    })  # fmt: skip
    client.force_login(user)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    body = html[html.index(f'id="message-{reply.pk}-body"') :]
    body = body[: body.index("</article>")]
    assert (
        '<div class="markdown blocks"><h2>Plan</h2>\n<p>&lt;script&gt;alert(1)&lt;/script&gt; and <strong>bold</strong></p>'
        in body
    )
    assert f'<div id="message-{reply.pk}-tail" class="tail">- one\n- &lt;img src=x onerror=alert(2)&gt;</div>' in body
    assert "<script" not in body and "<img" not in body
