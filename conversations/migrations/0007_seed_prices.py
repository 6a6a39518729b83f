from datetime import datetime, timezone
from decimal import Decimal

from django.db import migrations

# USD per million tokens (input, cached input, output), as OpenAI's pricing page listed them in June 2025.
OPENAI_JUNE_2025 = {
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "o3-mini": ("1.10", "0.55", "4.40"),
    "o4-mini": ("1.10", "0.275", "4.40"),
}
SOURCE = "OpenAI pricing page, June 2025"
EFFECTIVE = datetime(2025, 6, 1, tzinfo=timezone.utc)
LOCAL_EFFECTIVE = datetime(2000, 1, 1, tzinfo=timezone.utc)


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("conversations", "ModelPrice")
    for model, (inp, cached, out) in OPENAI_JUNE_2025.items():
        ModelPrice.objects.get_or_create(
            model=model,
            effective_from=EFFECTIVE,
            defaults={
                "input_per_million": Decimal(inp),
                "cached_input_per_million": Decimal(cached),
                "output_per_million": Decimal(out),
                "source": SOURCE,
            },
        )
    ModelPrice.objects.get_or_create(
        model="smollm2-135m",
        effective_from=LOCAL_EFFECTIVE,
        defaults={
            "input_per_million": 0,
            "cached_input_per_million": 0,
            "output_per_million": 0,
            "source": "The bundled local model runs on this machine: free.",
        },
    )


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_usage_ledger")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
