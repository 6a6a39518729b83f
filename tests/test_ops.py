"""What operators rely on: health endpoints and a clean deployment check."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_healthz_answers_without_a_session(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
async def test_readyz_reports_its_checks_and_stays_ready_while_the_local_model_is_down(async_client, settings):
    settings.LOCAL_MODEL_PORT = free_port()  # nothing listens there
    response = await async_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok", "local_model": "down"}

    settings.LOCAL_MODEL = False
    assert (await async_client.get("/readyz")).json()["local_model"] == "off"


@pytest.mark.django_db(transaction=True)
async def test_readyz_is_503_when_the_channel_layer_is_down(async_client, settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]}}
    }
    channel_layers.backends.clear()
    try:
        response = await async_client.get("/readyz")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"] == "ok" and body["channel_layer"] != "ok"


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": secrets.token_urlsafe(60),
        "HTTPS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "ALLOWED_HOSTS": "chat.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        "CHATWEB_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_settings_starting_with_a_dollar_are_taken_as_written(tmp_path):
    """A SECRET_KEY from Django's generator starts with "$" once in 50: every worker must use it as set.

    django-environ would read it as another variable's name, find none, and the worker would make a
    key of its own: sessions signed by one worker were then refused by the next.
    """
    key = "$" + secrets.token_urlsafe(50)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatweb.settings",
        "SECRET_KEY": key,
        "OIDC_CLIENT_SECRET": r"$HOME and \$HOME",
        "CHATWEB_DATA_DIR": str(tmp_path),
    }
    read = "from django.conf import settings; print(settings.SECRET_KEY); print(settings.OIDC_RP_CLIENT_SECRET)"
    result = subprocess.run([sys.executable, "-c", read], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == [key, r"$HOME and \$HOME"], result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_container_entrypoint_migrates_and_serves(tmp_path):
    """The image's entrypoint, run directly: a fresh data dir gets migrated and served, and stops cleanly."""
    import signal
    import time
    import urllib.request

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        PORT=str(port),
        CHATWEB_DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
        LOCAL_MODEL="0",
    )
    process = subprocess.Popen(
        ["scripts/entrypoint.sh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
        assert (tmp_path / "data" / "chatweb.sqlite3").exists()
        assert (tmp_path / "static" / "chatweb.css").exists()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/chatweb.css", timeout=2) as response:
            assert response.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    output = process.stdout.read().decode()
    assert "Applying conversations.0001_initial... OK" in output


def test_container_entrypoint_runs_other_commands_as_given():
    result = subprocess.run(
        ["scripts/entrypoint.sh", "echo", "hello from the container"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.strip() == "hello from the container"
