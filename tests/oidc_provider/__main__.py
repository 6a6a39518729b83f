"""Run the test identity provider: ``python -m tests.oidc_provider PORT DATA_DIR``.

Creates its database, a signing key, the users and groups of ``USERS`` and chatweb's
clients (``CLIENTS``, all with ``CLIENT_SECRET``, redirecting to any loopback port), then
serves on 127.0.0.1:PORT until killed.
"""

import os
import sys
from pathlib import Path

CLIENT_SECRET = "chatweb-client-secret"
CLIENTS = ["chatweb", "chatweb-expired", "chatweb-elsewhere"]
USERS = {
    "ada": {
        "password": "ada-idp-password",
        "email": "ada@example.com",
        "first_name": "Ada",
        "groups": ["engineering", "reviewers"],
    },
    "grace": {
        "password": "grace-idp-password",
        "email": "grace@example.com",
        "first_name": "Grace",
        "groups": ["research"],
    },
}


def main() -> None:
    port, data_dir = sys.argv[1], Path(sys.argv[2])
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "signing-key.pem"
    if not key_file.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    os.environ.update(
        DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings", OIDC_PROVIDER_PORT=port, OIDC_PROVIDER_DATA=str(data_dir)
    )
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    for username, spec in USERS.items():
        user, _ = User.objects.get_or_create(username=username)
        user.email, user.first_name = spec["email"], spec["first_name"]
        user.set_password(spec["password"])
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in spec["groups"]])
    for client_id in CLIENTS:
        if not Application.objects.filter(client_id=client_id).exists():
            Application.objects.create(
                name=client_id,
                client_id=client_id,
                client_secret=CLIENT_SECRET,
                client_type=Application.CLIENT_CONFIDENTIAL,
                authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                redirect_uris="http://127.0.0.1/oidc/callback/",
                algorithm=Application.RS256_ALGORITHM,
                skip_authorization=True,
            )
    run("127.0.0.1", int(port), get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
