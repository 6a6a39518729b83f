import django.core.validators
from django.db import migrations, models


def bound_the_local_model(apps, schema_editor):
    """The bundled model, registered before the field existed, gets the bound new installs get."""
    ChatModel = apps.get_model("conversations", "ChatModel")
    ChatModel.objects.filter(name="smollm2-135m", max_tokens=None).update(max_tokens=1024)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0008_message_content_html"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmodel",
            name="max_tokens",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="The longest reply in the chat, in tokens, sent to the provider as max_tokens. "
                "Blank leaves it to the provider. /v1 clients set their own.",
                null=True,
                validators=[django.core.validators.MinValueValidator(1)],
            ),
        ),
        migrations.RunPython(bound_the_local_model, migrations.RunPython.noop),
    ]
