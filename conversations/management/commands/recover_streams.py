from django.core.management.base import BaseCommand

from conversations.chat.turns import messages_interrupt_orphans


class Command(BaseCommand):
    help = "Mark replies left 'streaming' by a stopped server as 'interrupted'. Run before the server starts."

    def handle(self, *args, **options):
        count = len(messages_interrupt_orphans())
        self.stdout.write(f"{count} interrupted repl{'y' if count == 1 else 'ies'} marked.")
