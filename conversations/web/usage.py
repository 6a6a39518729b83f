"""A user's usage and cost, and its CSV export."""

from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone

from conversations.core.requests import SignedInRequest
from conversations.ledger.csv_export import acsv_lines, csv_lines
from conversations.ledger.reports import usage_summary
from conversations.ledger.selectors import usage_list


@login_required
def usage(request: SignedInRequest) -> HttpResponse:
    """The user's usage and cost: today, this month, by model, the last 30 days per day."""
    summary = usage_summary(queryset=usage_list(user=request.user), user=request.user, now=timezone.now())
    return render(request, "conversations/usage.html", {"usage": summary, "chart": summary.chart})


@login_required
def usage_export(request: SignedInRequest) -> StreamingHttpResponse:
    """Every ledger row of the user as CSV, streamed (with the async ORM under ASGI)."""
    ledger = usage_list(user=request.user)
    lines = acsv_lines(ledger) if isinstance(request, ASGIRequest) else csv_lines(ledger)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="chatweb-usage-{stamp}.csv"'
    return response
