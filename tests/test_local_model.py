"""The bundled SmolLM2 model, served by llama.cpp on loopback, answers through the chat path."""

import subprocess
import time
import urllib.request

import pytest

from conversations.localmodel import MODEL_ALIAS, server_command, server_environment
from conversations.models import ChatModel, Conversation, Message, Provider
from tests.live import free_port

pytest.importorskip("llama_cpp", reason="the local model is installed by `make install-local`")


@pytest.fixture(scope="module")
def local_model_url():
    port = free_port()
    process = subprocess.Popen(
        server_command(port=port, context=2048),
        env=server_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the local model server did not start")
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
async def test_the_local_model_streams_a_real_reply_with_usage(user, local_model_url, open_tab, settings):
    settings.COMPLETIONS = {**settings.COMPLETIONS, "READ_TIMEOUT": 60.0}
    provider = await Provider.objects.acreate(name="Local", base_url=local_model_url)
    model = await ChatModel.objects.acreate(
        name=MODEL_ALIAS, display_name="SmolLM2 135M (local)", provider=provider, upstream_model=MODEL_ALIAS
    )
    conversation = await Conversation.objects.acreate(user=user, model=model)
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
