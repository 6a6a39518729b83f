"""Attachments in S3-compatible storage (django-storages) against a real S3 server: moto's, over HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conversations.chat.turns import message_send
from conversations.models import Attachment, Conversation
from tests.live import free_port
from tests.test_attachments import png, signed_in, upload

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

pytestmark = pytest.mark.django_db(transaction=True)
BUCKET = "chatweb-attachments"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, settings: Any) -> Any:
    """An empty bucket on the S3 server, and chatweb's attachments stored in it."""
    credentials = {
        "aws_access_key_id": "chatweb",
        "aws_secret_access_key": "chatweb-secret",
        "region_name": "us-east-1",
    }
    s3 = boto3.resource("s3", endpoint_url=s3_endpoint, **credentials).Bucket(BUCKET)
    if s3.creation_date is None:
        s3.create()
    s3.objects.all().delete()
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": "chatweb",
                "secret_key": "chatweb-secret",
                "location": "attachments",
                "default_acl": "private",
                "file_overwrite": False,
            },
        },
    }
    return s3


def keys(bucket: Any) -> list[str]:
    return sorted(o.key for o in bucket.objects.all())


def test_files_go_to_the_bucket_are_served_from_it_and_leave_with_their_conversation(
    bucket, user, other_user, chat_model
):
    client = signed_in(user)
    assert upload(client, "chart.png", png(800, 400)).status_code == 200
    attachment = Attachment.objects.get()
    assert keys(bucket) == [f"attachments/{attachment.file.name}"]

    served = client.get(f"/files/{attachment.pk}")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content).startswith(b"\x89PNG")
    assert signed_in(other_user).get(f"/files/{attachment.pk}").status_code == 404

    conversation = Conversation.objects.create(user=user, model=chat_model)
    chat_model.accepts_images = True
    chat_model.save()
    message_send(conversation=conversation, content="Look", attachment_ids=[attachment.pk])
    client.post(f"/c/{conversation.pk}/delete")
    assert keys(bucket) == []


def test_a_refused_file_leaves_nothing_in_the_bucket(bucket, user):
    assert upload(signed_in(user), "cat.png", b"<html><script>alert(1)</script></html>").status_code == 400
    assert keys(bucket) == [] and not Attachment.objects.exists()
