"""The bundled SmolLM2 model, served by llama.cpp under its supervisor: real replies, and crashes that
end one reply, never the site."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from conversations.models import ChatModel, Conversation, Message, Provider
from conversations.providers.localmodel import MODEL_ALIAS, SupervisorState
from tests.live import free_port

llama_cpp = pytest.importorskip("llama_cpp", reason="the local model is installed by `make install-local`")

ROOT = Path(__file__).resolve().parent.parent
BACK_WITHIN = 60  # seconds for a killed model to be answering again (first restart after 1 s, then loading)


def test_the_installed_llama_cpp_is_the_portable_build():
    """AMX kernels crash on SmolLM2's Q4_1 weights, and AVX-512 is missing on many x86-64 CPUs."""
    features = llama_cpp.llama_print_system_info().decode()
    assert "AMX" not in features
    if platform.machine() == "x86_64":
        assert "AVX2 = 1" in features and "AVX512" not in features


def _wait_up(state_file: Path, *, not_pid: int | None = None, timeout: float = BACK_WITHIN) -> SupervisorState:
    """The supervisor's state once it reports a server up (another one than ``not_pid``)."""
    deadline = time.monotonic() + timeout
    while True:
        state = SupervisorState.read(state_file)
        if state and state.state == "up" and state.pid != not_pid:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the local model was not up within {timeout} s: {state}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def supervised_model(tmp_path_factory):
    """The local model under its supervisor on a free port: (port, state file)."""
    folder = tmp_path_factory.mktemp("local-model")
    port = free_port()
    state_file = folder / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conversations.providers.localmodel",
            "--port",
            str(port),
            "--context",
            "2048",
            "--state-file",
            str(state_file),
            "--log-file",
            str(folder / "server.log"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_up(state_file)
        yield port, state_file
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert SupervisorState.read(state_file).state == "stopped"


@pytest.fixture
def local_chat_model(db, supervised_model, settings):
    """The bundled model as the site knows it: the provider at the local model's address."""
    port, state_file = supervised_model
    settings.LOCAL_MODEL, settings.LOCAL_MODEL_HOST, settings.LOCAL_MODEL_PORT = True, "127.0.0.1", port
    settings.LOCAL_MODEL_STATE_FILE = state_file
    settings.COMPLETIONS = {**settings.COMPLETIONS, "READ_TIMEOUT": 60.0}
    provider = Provider.objects.create(name="Local model (llama.cpp)", base_url=f"http://127.0.0.1:{port}/v1")
    return ChatModel.objects.create(
        name=MODEL_ALIAS,
        display_name="SmolLM2 135M (local)",
        provider=provider,
        upstream_model=MODEL_ALIAS,
        max_tokens=400,
    )


@pytest.mark.django_db(transaction=True)
async def test_the_local_model_streams_a_real_reply_with_usage(user, local_chat_model, open_tab):
    conversation = await Conversation.objects.acreate(user=user, model=local_chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="What is the capital of France? Answer in one sentence.")
    html = await tab.receive_until('class="message assistant" data-status="complete"', timeout=60)

    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert html.count("beforeend:#message-") > 1  # it streamed token by token
    assert len(reply.content.split()) >= 2
    assert reply.finish_reason in ("stop", "length")
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    # llama.cpp sends no usage chunk in streams, so the counts are marked estimated.
    assert reply.usage_estimated


@pytest.mark.django_db(transaction=True)
async def test_two_people_asking_the_local_model_at_once_both_get_whole_replies(
    user, other_user, local_chat_model, open_tab
):
    """The server answers one request at a time: the second waits its turn instead of cutting the first short."""
    first = await Conversation.objects.acreate(user=user, model=local_chat_model)
    second = await Conversation.objects.acreate(user=other_user, model=local_chat_model)
    _, _, first_tab = await open_tab(user, first.pk)
    _, _, second_tab = await open_tab(other_user, second.pk)
    await first_tab.send(message="Write a short poem about rain.")
    await first_tab.receive_until("beforeend:#message-", timeout=60)

    await second_tab.send(message="Name three fruits.")

    for tab in (first_tab, second_tab):
        await tab.receive_until('class="message assistant" data-status="complete"', timeout=90)
    replies = [m async for m in Message.objects.filter(role="assistant", conversation__in=[first, second])]
    assert len(replies) == 2
    assert all(r.finish_reason in ("stop", "length") and r.content.strip() for r in replies)


@pytest.mark.django_db(transaction=True)
async def test_a_killed_local_model_ends_its_reply_with_the_text_kept_and_comes_back(
    user, admin_user, local_chat_model, supervised_model, open_tab, async_client
):
    _, state_file = supervised_model
    conversation = await Conversation.objects.acreate(user=user, model=local_chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    await tab.send(message="Write a long story about a lighthouse keeper and the sea.")
    await tab.receive_until("beforeend:#message-", timeout=60)  # the reply has started streaming

    killed = SupervisorState.read(state_file).pid
    os.kill(killed, signal.SIGKILL)

    html = await tab.receive_until('data-status="error"', timeout=30)
    assert "The local model stopped while answering. It is restarting; regenerate to try again." in html
    assert "127.0.0.1" not in html
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == "error" and reply.content.strip()  # the text so far is kept

    state = await sync_to_async(_wait_up)(state_file, not_pid=killed)
    assert state.last_exit == "killed by SIGKILL" and state.restarts >= 1
    await async_client.aforce_login(admin_user)
    providers = (await async_client.get("/admin/conversations/provider/")).content.decode()
    assert f"up ({state.restarts} restart" in providers and "last: killed by SIGKILL)" in providers

    await tab.send(message="Name a colour.")
    await tab.receive_until('class="message assistant" data-status="complete"', timeout=60)
    latest = await Message.objects.filter(conversation=conversation, role="assistant").alatest("id")
    assert latest.status == "complete" and latest.content.strip()


def _get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def test_the_start_script_keeps_serving_while_the_local_model_restarts(tmp_path):
    """scripts/serve.sh (what `make run` and the container run): killing the model leaves the site up."""
    port, model_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        PY=sys.executable,
        PORT=str(port),
        LOCAL_MODEL="1",
        LOCAL_MODEL_PORT=str(model_port),
        CHATWEB_DATA_DIR=str(tmp_path / "data"),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    make_key = (
        "from django.contrib.auth.models import User; from conversations.accounts.api_keys import api_key_create;"
        "print(api_key_create(user=User.objects.create_user('carol', password='carol-password-1'), name='t')[1])"
    )
    log = open(tmp_path / "serve.log", "w+b")
    process = subprocess.Popen(
        ["scripts/serve.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    state_file = tmp_path / "data" / "local-model.json"
    try:
        first = _wait_up(state_file, timeout=120)
        key = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", make_key],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        deadline = time.monotonic() + 30
        while True:  # Daphne may start a moment after the model
            try:
                _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "Daphne did not start"
                time.sleep(0.2)

        os.kill(first.pid, signal.SIGKILL)

        assert _get(f"http://127.0.0.1:{port}/accounts/login/")[0] == 200
        status, body = _get(f"http://127.0.0.1:{port}/v1/models", Authorization=f"Bearer {key}")
        assert status == 200 and MODEL_ALIAS in [m["id"] for m in json.loads(body)["data"]]
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ok"

        _wait_up(state_file, not_pid=first.pid)
        assert json.loads(_get(f"http://127.0.0.1:{port}/readyz")[1])["local_model"] == "up"
        assert process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.seek(0)
        output = log.read().decode()
        log.close()
    assert f"The local model (pid {first.pid}) killed by SIGKILL; restarting it" in output
