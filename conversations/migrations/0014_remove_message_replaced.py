"""A replaced reply is now a sibling off the current path (0013), so the flag has no job left.

Its own migration: PostgreSQL refuses to alter a table with the deferred foreign-key checks
that 0013's updates leave pending in the same transaction.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("conversations", "0013_message_tree"),
    ]

    operations = [
        migrations.RemoveField(model_name="message", name="replaced"),
    ]
