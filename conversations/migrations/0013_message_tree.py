"""Messages form a tree: each has a parent, each conversation a current leaf.

Existing conversations become one path in the order they were written. A reply a regenerate
had replaced becomes a sibling of the reply that replaced it, off the path, kept as before.
"""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 500


def link_paths(apps, schema_editor):
    Conversation = apps.get_model("conversations", "Conversation")
    Message = apps.get_model("conversations", "Message")
    conversation_ids = list(Conversation.objects.values_list("pk", flat=True))
    for start in range(0, len(conversation_ids), BATCH):
        batch = conversation_ids[start : start + BATCH]
        rows = Message.objects.filter(conversation_id__in=batch).order_by("conversation_id", "created_at", "id")
        linked, leaves = [], {}
        for message in rows.only("pk", "conversation_id", "replaced"):
            message.parent_id = leaves.get(message.conversation_id)
            linked.append(message)
            if not message.replaced:
                leaves[message.conversation_id] = message.pk
        Message.objects.bulk_update(linked, ["parent"], batch_size=BATCH)
        for conversation_id, leaf_id in leaves.items():
            Conversation.objects.filter(pk=conversation_id).update(current_leaf_id=leaf_id)


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0012_deployments"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                help_text="The message this one follows; none for a conversation's first. Siblings are branches.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="conversations.message",
            ),
        ),
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                help_text="The last message of the branch shown: the path from the root to it is what the model is sent.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="conversations.message",
            ),
        ),
        migrations.RunPython(link_paths, migrations.RunPython.noop),
    ]
