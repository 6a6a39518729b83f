"""A paginator that never counts a whole table: at most ``cap`` rows, or PostgreSQL's estimate. Its own
module because the stored completion and usage lists both page with it."""

from typing import Any

from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts up to ``cap`` rows with a LIMITed subquery instead of ``COUNT(*)`` over the table.

    The unfiltered list on PostgreSQL takes ``pg_class.reltuples`` (kept by ANALYZE/autovacuum)
    when it says the table is larger than the cap. ``is_capped`` / ``is_estimate`` tell the
    template to say "more than" / "about".
    """

    cap = 10_000
    object_list: QuerySet[Any]  # the admin's lists page querysets

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_capped = False
        self.is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where and connections[queryset.db].vendor == "postgresql":
            estimate = self._table_estimate(queryset)
            if estimate > self.cap:
                self.is_estimate = True
                return estimate
        bounded = queryset.order_by()[: self.cap + 1].count()
        if bounded > self.cap:
            self.is_capped = True
            return self.cap
        return bounded

    def page(self, number: Any) -> Page:
        """The page's primary keys first, then those rows by primary key, in the same order.

        Asked for whole rows, PostgreSQL answers an id-prefix search matching many rows by walking
        the created_at index newest first and stopping at the page's last match, reading the table
        row of every entry it passes (with ids that grew with time, 279,104 rows for a prefix
        matching 65,536 of 10^6: 180-260 ms). Asked for the ids alone, it walks the
        ``(created_at, id)`` index and tests each id there, without reading the table (60 ms for
        the same walk), as it does for a deep page of the whole list. The second query has no
        LIMIT, so it looks the page's rows up by key and sorts those few.
        """
        page = super().page(number)
        if isinstance(page.object_list, QuerySet):
            ids = list(page.object_list.values_list("pk", flat=True))
            page.object_list = self.object_list.filter(pk__in=ids)
        return page

    @staticmethod
    def _table_estimate(queryset: QuerySet) -> int:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [connections[queryset.db].ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else -1
