"""Single sign-on against a real OpenID Connect provider: django-oauth-toolkit in a process of its own.

The provider (tests/oidc_provider) signs its tokens with its own RSA key and requires
PKCE; chatweb (the in-process live server) finds it through its discovery document.
A browser is played by an httpx client following the redirects, or by Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User

from conversations.models import Conversation, SsoIdentity
from tests.live import ROOT, free_port
from tests.oidc_provider.__main__ import CLIENT_SECRET, USERS

pytestmark = pytest.mark.django_db(transaction=True)

OIDC_BACKEND = "conversations.accounts.oidc.OidcBackend"
FAILED = "did not work"  # the sign-in page's words for a failed single sign-on


class IdentityProvider:
    def __init__(self, port: int, process: subprocess.Popen, log: Path) -> None:
        self.port, self.process, self.log = port, process, log

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/o"


@pytest.fixture(scope="session")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProvider]:
    data = tmp_path_factory.mktemp("identity-provider")
    port = free_port()
    log = data / "provider.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_", "DATABASE_", "REDIS_"))}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.oidc_provider", str(port), str(data)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    provider = IdentityProvider(port, process, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the identity provider did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield provider
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def sso(settings, identity_provider: IdentityProvider) -> IdentityProvider:
    settings.OIDC_ISSUER = identity_provider.issuer
    settings.OIDC_RP_CLIENT_ID = "chatweb"
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    settings.AUTHENTICATION_BACKENDS = [*django_settings.AUTHENTICATION_BACKENDS, OIDC_BACKEND]
    return identity_provider


class Browser:
    """An httpx client that keeps cookies and follows redirects one at a time, as a browser would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(timeout=15)

    def get(self, url: str) -> httpx.Response:
        return self.http.get(urljoin(self.base, url))

    def start(self) -> str:
        """Ask chatweb to sign in through the provider: the provider's authorization URL it redirects to."""
        response = self.get("/oidc/authenticate/")
        assert response.status_code == 302, response.text
        return response.headers["location"]

    def authorize(self, authorization_url: str, username: str) -> str:
        """Sign in at the provider's login page and return where it sends the browser back (chatweb's callback)."""
        response = self.get(authorization_url)
        assert response.status_code == 302 and "/accounts/login/" in response.headers["location"], response.text
        login = urljoin(authorization_url, response.headers["location"])
        self.get(login)
        signed_in = self.http.post(
            login,
            data={
                "username": username,
                "password": USERS[username]["password"],
                "csrfmiddlewaretoken": self.http.cookies["idp_csrftoken"],
            },
        )
        assert signed_in.status_code == 302, signed_in.text
        back = self.get(urljoin(login, signed_in.headers["location"]))
        assert back.status_code == 302, back.text
        return back.headers["location"]

    def finish(self, callback: str) -> httpx.Response:
        """Follow the callback; the page chatweb ends on."""
        response = self.get(callback)
        while response.status_code == 302:
            response = self.get(response.headers["location"])
        return response

    def sign_in(self, username: str) -> httpx.Response:
        return self.finish(self.authorize(self.start(), username))


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**query(url), **changes})))


def signed_in_as(browser: Browser) -> str | None:
    """The username the chat page shows, or None when it sends the browser to sign in."""
    page = browser.get("/")
    if page.status_code != 200:
        return None
    return page.text.split('<span class="username">', 1)[1].split("<", 1)[0]


def failure_reasons(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(r.reason for r in caplog.records if r.name == "chatweb.sso")


# --- The authorization-code flow ----------------------------------------------------------------


def test_first_sign_in_creates_the_user_linked_by_sub_with_their_groups(sso, live_server_url):
    local = User.objects.create_user(username="ada", email="ada@example.com", password="a-local-password-9")
    browser = Browser(live_server_url)

    authorization = browser.start()
    params = query(authorization)
    assert authorization.startswith(f"{sso.issuer}/authorize/")
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) >= 43
    assert params["state"] and params["nonce"] and params["scope"] == "openid email profile groups"
    page = browser.finish(browser.authorize(authorization, "ada"))

    assert page.status_code == 200 and urlsplit(str(page.url)).path == "/"
    # Same email and username as a local account, but another person as far as chatweb knows: not taken over.
    assert signed_in_as(browser) == "ada-2"
    user = User.objects.get(username="ada-2")
    assert user.pk != local.pk and user.email == "ada@example.com" and user.first_name == "Ada"
    assert not user.has_usable_password()
    identity = SsoIdentity.objects.get(user=user)
    assert identity.issuer == sso.issuer and identity.subject and identity.last_login_at
    assert sorted(user.groups.values_list("name", flat=True)) == ["engineering", "reviewers"]
    assert not local.groups.exists()


def test_signing_in_again_keeps_the_account_and_makes_its_groups_the_providers(sso, live_server_url):
    Browser(live_server_url).sign_in("ada")
    user = User.objects.get(sso_identities__issuer=sso.issuer)
    user.groups.set([Group.objects.create(name="left-the-team"), Group.objects.get(name="engineering")])

    browser = Browser(live_server_url)
    browser.sign_in("ada")

    assert signed_in_as(browser) == user.username
    assert User.objects.count() == 1
    assert sorted(user.groups.values_list("name", flat=True)) == ["engineering", "reviewers"]


def test_each_provider_user_gets_their_own_account(sso, live_server_url):
    ada, grace = Browser(live_server_url), Browser(live_server_url)
    ada.sign_in("ada")
    grace.sign_in("grace")
    assert (signed_in_as(ada), signed_in_as(grace)) == ("ada", "grace")
    assert list(User.objects.get(username="grace").groups.values_list("name", flat=True)) == ["research"]


def test_an_admin_links_an_existing_account_to_the_providers_user(sso, live_server_url, admin_client):
    Browser(live_server_url).sign_in("ada")
    subject = SsoIdentity.objects.get().subject
    User.objects.filter(sso_identities__subject=subject).delete()
    existing = User.objects.create_user(username="ada.lovelace", password="a-local-password-9")
    data = {
        "username": existing.username, "first_name": "", "last_name": "", "email": "", "is_active": "on",
        "date_joined_0": "2025-01-01", "date_joined_1": "00:00:00",
        "limits-TOTAL_FORMS": "0", "limits-INITIAL_FORMS": "0",
        "model_grants-TOTAL_FORMS": "0", "model_grants-INITIAL_FORMS": "0",
        "sso_identities-TOTAL_FORMS": "1", "sso_identities-INITIAL_FORMS": "0",
        "sso_identities-0-issuer": sso.issuer, "sso_identities-0-subject": subject,
    }  # fmt: skip
    assert admin_client.post(f"/admin/auth/user/{existing.pk}/change/", data).status_code == 302

    browser = Browser(live_server_url)
    browser.sign_in("ada")
    assert signed_in_as(browser) == "ada.lovelace"


# --- Refused ------------------------------------------------------------------------------------


def assert_refused(browser: Browser, page: httpx.Response) -> None:
    assert page.status_code == 200 and urlsplit(str(page.url)).path == "/accounts/login/"
    assert FAILED in page.text and "Sign in with Example IdP" in page.text
    assert signed_in_as(browser) is None
    assert not SsoIdentity.objects.exists() and not User.objects.exists()


def test_a_wrong_state_is_refused(sso, live_server_url, caplog):
    browser = Browser(live_server_url)
    callback = browser.authorize(browser.start(), "ada")
    assert_refused(browser, browser.finish(with_query(callback, state="not-the-state-chatweb-sent")))
    assert "state" in failure_reasons(caplog)
    # A callback with no sign-in started in this browser at all: refused the same way.
    stranger = Browser(live_server_url)
    assert_refused(stranger, stranger.finish(callback))


def test_a_code_bound_to_another_pkce_challenge_is_refused(sso, live_server_url, caplog):
    """Two sign-ins started in one browser: the code of the first, returned under the second's state,
    is exchanged with the second's code verifier, which the provider refuses."""
    browser = Browser(live_server_url)
    first, second = browser.start(), browser.start()
    callback = browser.authorize(first, "ada")
    assert_refused(browser, browser.finish(with_query(callback, state=query(second)["state"])))
    assert "Get Token Error" in failure_reasons(caplog)  # the provider refused the exchange


def test_a_token_with_another_nonce_is_refused(sso, live_server_url, caplog):
    """The code comes from an authorization request like chatweb's (same client, challenge and state)
    but with a nonce of someone else's: its ID token carries that nonce."""
    browser = Browser(live_server_url)
    authorization = browser.start()
    replayed = with_query(authorization, nonce="a-nonce-from-another-sign-in")
    assert_refused(browser, browser.finish(browser.authorize(replayed, "ada")))
    assert "Nonce" in failure_reasons(caplog)


def test_an_expired_token_is_refused(sso, settings, live_server_url, caplog):
    settings.OIDC_RP_CLIENT_ID = "chatweb-expired"  # the provider issues it tokens expired two minutes ago
    browser = Browser(live_server_url)
    assert_refused(browser, browser.sign_in("ada"))
    assert "expired" in failure_reasons(caplog)


def test_a_token_from_another_issuer_is_refused(sso, settings, live_server_url, caplog):
    settings.OIDC_RP_CLIENT_ID = "chatweb-elsewhere"  # the provider names another issuer in its tokens
    browser = Browser(live_server_url)
    assert_refused(browser, browser.sign_in("ada"))
    assert "another identity provider" in failure_reasons(caplog)


def test_an_unreachable_provider_reads_as_a_failed_sign_in(settings, sso, live_server_url):
    settings.OIDC_ISSUER = f"http://127.0.0.1:{free_port()}/o"
    browser = Browser(live_server_url)
    response = browser.get("/oidc/authenticate/")
    assert response.status_code == 302 and response.headers["location"] == "/accounts/login/"
    assert FAILED in browser.get("/accounts/login/").text


def test_without_an_issuer_there_is_no_single_sign_on(live_server_url):
    browser = Browser(live_server_url)
    assert browser.get("/oidc/authenticate/").status_code == 404
    assert browser.get("/oidc/callback/?code=x&state=y").status_code == 404
    assert "Sign in with" not in browser.get("/accounts/login/").text


# --- Signing out --------------------------------------------------------------------------------


async def test_signing_out_ends_the_session_and_its_open_sockets(sso, live_server_url, open_tab):
    browser = Browser(live_server_url)
    await sync_to_async(browser.sign_in, thread_sensitive=False)("ada")
    user = await User.objects.aget(username="ada")
    conversation = await Conversation.objects.acreate(user=user)
    session = import_module(django_settings.SESSION_ENGINE).SessionStore(browser.http.cookies["sessionid"])
    connected, _, tab = await open_tab(user, conversation.pk, session=session)
    assert connected

    def sign_out() -> httpx.Response:
        browser.get("/")  # the page sets the CSRF cookie its sign-out form sends
        return browser.http.post(
            urljoin(live_server_url, "/accounts/logout/"),
            data={"csrfmiddlewaretoken": browser.http.cookies["csrftoken"]},
            headers={"Referer": live_server_url},
        )

    response = await sync_to_async(sign_out, thread_sensitive=False)()

    assert response.status_code == 302
    assert await tab.communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert await sync_to_async(signed_in_as, thread_sensitive=False)(browser) is None


# --- Password sign-in turned off ----------------------------------------------------------------


@pytest.fixture
def passwords_off(settings, sso):
    settings.PASSWORD_LOGIN = False
    settings.BREAK_GLASS_USERNAME = "root"


def test_with_password_login_off_only_the_break_glass_admin_signs_in_with_a_password(passwords_off, client):
    User.objects.create_superuser(username="root", password="break-glass-passphrase-1")
    User.objects.create_user(username="alice", password="alice-password-1", is_staff=True)
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Example IdP" in page and "Local administrator sign-in" in page

    for url in ("/accounts/login/", "/admin/login/"):
        refused = client.post(url, {"username": "alice", "password": "alice-password-1"})
        assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert (
        client.post("/accounts/login/", {"username": "root", "password": "break-glass-passphrase-1"}).status_code == 302
    )
    assert client.get("/admin/").status_code == 200
    assert client.get("/accounts/signup/").status_code == 403


def test_turning_password_login_off_ends_password_sessions_but_the_break_glass_admins(settings, client):
    alice = User.objects.create_user(username="alice", password="alice-password-1")
    root = User.objects.create_superuser(username="root", password="break-glass-passphrase-1")
    alice_browser, root_browser = client, type(client)()
    alice_browser.force_login(alice, backend="conversations.accounts.auth.PasswordBackend")
    root_browser.force_login(root, backend="conversations.accounts.auth.PasswordBackend")
    settings.PASSWORD_LOGIN, settings.BREAK_GLASS_USERNAME = False, "root"
    assert alice_browser.get("/").status_code == 302
    assert root_browser.get("/").status_code == 200


# --- In Chromium ----------------------------------------------------------------------------------

SHOTS = ROOT / "test-artifacts" / "screenshots"


def chromium_session():
    """Playwright's Chromium; Django's ORM stays outside it (it refuses to run while Playwright's loop does)."""
    from tests.test_browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return pytest.importorskip("playwright.sync_api").sync_playwright()


def test_signing_in_through_the_providers_page_in_chromium(sso, live_server_url):
    from playwright.sync_api import expect

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    with chromium_session() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width, height, scheme in [
            (375, 740, "light"),
            (375, 740, "dark"),
            (1280, 800, "light"),
            (1280, 800, "dark"),
        ]:
            context = chromium.new_context(viewport={"width": width, "height": height}, color_scheme=scheme)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{live_server_url}/usage/")
            button = page.get_by_role("link", name="Sign in with Example IdP")
            expect(button).to_be_visible()
            assert button.bounding_box()["height"] >= 44
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") == 0
            page.screenshot(path=str(SHOTS / f"sso-login-{width}-{scheme}.png"))
            button.click()
            expect(page.get_by_role("heading", name="Example Identity Provider")).to_be_visible()
            page.get_by_label("Username").fill("grace")
            page.get_by_label("Password").fill(USERS["grace"]["password"])
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{live_server_url}/usage/")  # back where the person was going
            page.goto(f"{live_server_url}/")
            expect(page.locator(".username")).to_have_text("grace")
            page.screenshot(path=str(SHOTS / f"sso-signed-in-{width}-{scheme}.png"))
            context.close()
        chromium.close()
    assert User.objects.get(username="grace").sso_identities.get().issuer == sso.issuer


def test_a_failed_sign_in_and_the_break_glass_form_in_chromium(passwords_off, live_server_url):
    from playwright.sync_api import expect

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    User.objects.create_superuser(username="root", password="break-glass-passphrase-1")
    with chromium_session() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width in (375, 1280):
            context = chromium.new_context(viewport={"width": width, "height": 740})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{live_server_url}/oidc/callback/?code=stolen&state=forged")
            expect(page.get_by_role("alert")).to_contain_text("Signing in through Example IdP did not work")
            password = page.get_by_label("Password")
            expect(password).to_be_hidden()  # tucked away: only the break-glass admin uses it
            page.screenshot(path=str(SHOTS / f"sso-failed-{width}.png"))
            page.get_by_text("Local administrator sign-in").click()
            page.get_by_label("Username").fill("root")
            password.fill("break-glass-passphrase-1")
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.locator(".username")).to_have_text("root")
            context.close()
        chromium.close()
