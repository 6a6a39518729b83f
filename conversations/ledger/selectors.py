"""Reads of the usage ledger, scoped to the user asking."""

from django.contrib.auth.models import User
from django.db.models import QuerySet

from conversations.models import (
    UsageRecord,
)


def usage_list(*, user: User) -> QuerySet[UsageRecord]:
    """The user's usage ledger: chat replies and /v1 calls."""
    return UsageRecord.objects.filter(user=user)
