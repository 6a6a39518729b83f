from django.core.management.base import BaseCommand

from conversations.providers.catalog import providers_sync
from conversations.providers.completions import CompletionError


class Command(BaseCommand):
    help = "Create or update providers and models from the environment (LOCAL_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL)."

    def handle(self, *args, **options):
        """A provider that cannot be reached is reported, not fatal: the app still starts."""
        try:
            done = providers_sync()
        except CompletionError as exc:
            self.stderr.write(
                f"Warning: could not list the provider's models ({exc.message}); "
                "its models were not updated. Add them in the admin or restart once it answers."
            )
            return
        for line in done:
            self.stdout.write(line)
