from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0009_chatmodel_max_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="replaced",
            field=models.BooleanField(
                default=False,
                help_text="Replaced by a regenerated reply: kept with its usage and stored turn, "
                "no longer shown nor sent to the model.",
            ),
        ),
    ]
