"""Single sign-on through an OpenID Connect provider, on mozilla-django-oidc: its backend and its two views
(start, callback), checked more strictly and failing on the sign-in page instead of an error page.

mozilla-django-oidc runs the authorization-code flow: a state, a nonce and a PKCE challenge
kept in the session, the token exchange, the ID token's signature against the provider's
published keys. The provider's endpoints come from its discovery document, and the account
from ``accounts.sso``.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from conversations.accounts.sso import sso_setting, sso_user_sync
from conversations.core.errors import SsoFailed

SSO_FAILED = "Signing in through {name} did not work. Try again; if it keeps failing, tell an administrator."

logger = logging.getLogger("chatweb.sso")


class OidcBackend(OIDCAuthenticationBackend):  # type: ignore[misc]  # mozilla-django-oidc ships no types
    """Sign-in through the ``OIDC_ISSUER`` provider: the authorization-code flow with PKCE, state and nonce.

    Beyond mozilla-django-oidc's checks (signature, nonce, expiry), the ID token must name
    this issuer and this client as its audience. Its user is the account linked to the
    token's issuer and ``sub`` (``sso_user_sync``), with the userinfo endpoint's claims
    added when they are about the same subject. Settings are read when used, not when
    Django instantiates the backend (for every request of a signed-in user).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()

    get_settings = staticmethod(sso_setting)
    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_TOKEN_ENDPOINT"))
    OIDC_OP_USER_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_USER_ENDPOINT"))
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: sso_setting("OIDC_OP_JWKS_ENDPOINT"))
    OIDC_RP_CLIENT_ID = property(lambda self: settings.OIDC_RP_CLIENT_ID)
    OIDC_RP_CLIENT_SECRET = property(lambda self: settings.OIDC_RP_CLIENT_SECRET)
    OIDC_RP_SIGN_ALGO = property(lambda self: settings.OIDC_RP_SIGN_ALGO)
    OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request: Any, **kwargs: Any) -> User | None:
        if not settings.OIDC_ISSUER:
            return None
        user: User | None = super().authenticate(request, **kwargs)
        return user

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The token's claims, once its signature, nonce, expiry, issuer and audience are right."""
        try:
            payload: dict[str, Any] = super().verify_token(token, **kwargs)
        except jwt.PyJWTError as exc:  # expired, not valid yet, malformed
            raise SuspiciousOperation(f"The identity provider's token was refused: {exc}") from exc
        if "exp" not in payload:
            raise SuspiciousOperation("The identity provider's token has no expiry.")
        if payload.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("The token was issued by another identity provider.")
        audience = payload.get("aud")
        audience = [audience] if isinstance(audience, str) else audience or []
        client_id = settings.OIDC_RP_CLIENT_ID
        if client_id not in audience or (len(audience) > 1 and payload.get("azp") != client_id):
            raise SuspiciousOperation("The token was issued to another client.")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The ID token's claims, with the userinfo endpoint's (about the same ``sub``) over them."""
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT:
            userinfo = super().get_userinfo(access_token, id_token, payload)
            if str(userinfo.get("sub")) != str(payload.get("sub")):
                raise SuspiciousOperation("The userinfo endpoint answered about another subject.")
            claims.update(userinfo)
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        if not payload.get("sub"):
            raise SuspiciousOperation("The identity provider's token names no subject.")
        return sso_user_sync(issuer=payload["iss"], claims=self.get_userinfo(access_token, id_token, payload))


def _sso_failed(request: HttpRequest, exc: Exception | None = None) -> HttpResponse:
    """Back to the sign-in page, saying single sign-on failed; why goes to the log (never a token)."""
    logger.warning("single sign-on failed", extra={"reason": f"{type(exc).__name__}: {exc}"[:300] if exc else ""})
    messages.error(request, SSO_FAILED.format(name=settings.OIDC_PROVIDER_NAME))
    return redirect("login")


class SsoStartView(OIDCAuthenticationRequestView):  # type: ignore[misc]  # mozilla-django-oidc ships no types
    """Send the browser to the identity provider with a fresh state, nonce and PKCE challenge."""

    get_settings = staticmethod(sso_setting)

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the endpoints are looked up in get(), where a failure can be told

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404
        try:
            self.OIDC_OP_AUTH_ENDPOINT = sso_setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except SsoFailed as exc:
            return _sso_failed(request, exc)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        response: HttpResponse = super().get(request)  # a redirect to the provider
        return response


class SsoCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]  # mozilla-django-oidc ships no types
    """Where the provider sends the browser back: a wrong state, nonce, issuer or an expired token
    reads as a failed sign-in on the sign-in page, never an error page."""

    get_settings = staticmethod(sso_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404
        try:
            response: HttpResponse = super().get(request)
            return response
        except (
            SuspiciousOperation,
            SsoFailed,
            requests.RequestException,
            ValueError,
            KeyError,
            IntegrityError,
        ) as exc:  # IntegrityError: the same person's first sign-in twice at once
            return _sso_failed(request, exc)

    def login_failure(self) -> HttpResponse:
        return _sso_failed(self.request)
