"""Authentication backends: passwords (which ``PASSWORD_LOGIN=0`` limits to the break-glass admin), and
single sign-on through an OpenID Connect provider (mozilla-django-oidc's code flow, checked more strictly)."""

from __future__ import annotations

from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .services.sso import sso_setting, sso_user_sync


def password_login_allowed(username: str | None) -> bool:
    """Whether ``username`` may sign in with a password: anyone, unless password login is off."""
    return settings.PASSWORD_LOGIN or bool(settings.BREAK_GLASS_USERNAME and username == settings.BREAK_GLASS_USERNAME)


class PasswordBackend(ModelBackend):
    """Django's username and password, for the site's and the admin's sign-in pages.

    With ``PASSWORD_LOGIN=0`` only ``BREAK_GLASS_USERNAME`` signs in this way, and the
    sessions other users opened with a password before end at their next request.
    """

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any):
        if not password_login_allowed(username or kwargs.get(get_user_model().USERNAME_FIELD)):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id: int) -> AbstractBaseUser | None:
        user = super().get_user(user_id)
        return user if user is not None and password_login_allowed(user.get_username()) else None


class OidcBackend(OIDCAuthenticationBackend):
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

    def authenticate(self, request: Any, **kwargs: Any) -> AbstractBaseUser | None:
        if not settings.OIDC_ISSUER:
            return None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The token's claims, once its signature, nonce, expiry, issuer and audience are right."""
        try:
            payload = super().verify_token(token, **kwargs)
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

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> AbstractBaseUser:
        if not payload.get("sub"):
            raise SuspiciousOperation("The identity provider's token names no subject.")
        return sso_user_sync(issuer=payload["iss"], claims=self.get_userinfo(access_token, id_token, payload))
