"""The ``<id:...>`` path converter: a row id that fits the database's bigint, so /c/10**30/ is a 404, not an overflow."""

from django.urls import register_converter
from django.urls.converters import IntConverter

from .selectors import ROW_ID_PATTERN


class RowIdConverter(IntConverter):
    regex = ROW_ID_PATTERN


register_converter(RowIdConverter, "id")
