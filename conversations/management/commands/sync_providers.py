from django.core.management.base import BaseCommand, CommandError

from conversations.services.completions import CompletionError
from conversations.services.providers import providers_sync


class Command(BaseCommand):
    help = "Create or update providers and models from the environment (LOCAL_MODEL, OPENAI_API_KEY, OPENAI_BASE_URL)."

    def handle(self, *args, **options):
        try:
            done = providers_sync()
        except CompletionError as exc:
            raise CommandError(f"Could not list the provider's models: {exc.message}") from exc
        for line in done:
            self.stdout.write(line)
