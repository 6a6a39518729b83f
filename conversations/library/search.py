"""Search over a user's own conversations: titles and the text of every message, all branches.

One function, ``conversation_search``, answers on both databases from the indexes of
``conversations.library.searchindex``: PostgreSQL full text (``simple`` configuration, GIN) or SQLite FTS5.

The query language, the same on both:
- words match whole words, all of them (AND); the last word also matches as a prefix while it is
  being typed (the query does not end with a space), and ``word*`` is a prefix anywhere;
- ``"two words"`` matches a phrase;
- ``pinned:yes|no``, ``archived:yes|no``, ``folder:name`` (``folder:none`` for none),
  ``model:name``, ``after:YYYY-MM-DD`` and ``before:YYYY-MM-DD`` narrow the results
  (``folder:"two words"`` for a name with spaces); after: includes its day, before: does not.

Results are newest first: the conversations whose title matches (on the first page), then the
matching messages, each with a snippet whose matches are marked, escaped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from datetime import timezone as dt_timezone
from typing import TypeVar

from django.contrib.auth.models import User
from django.contrib.postgres.search import SearchQuery, SearchVectorField
from django.db import connection
from django.db.models import BooleanField, Model, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from conversations.core.errors import InvalidInput
from conversations.core.ids import older_than, page_cursor, page_cursor_parse
from conversations.library.searchindex import fts_table
from conversations.models import Conversation, Message

WORD = re.compile(r"[^\W_]+")
PIECE = re.compile(r'(?P<key>[a-z]+):(?P<value>"[^"]*"?|\S*)|"(?P<phrase>[^"]*)"?|(?P<bare>\S+)')
FILTERS = ("pinned", "archived", "folder", "model", "after", "before")
YES = {"yes", "true", "1", "on"}
NO = {"no", "false", "0", "off"}
MIN_PREFIX = 2
MAX_TERMS = 16
PAGE = 20
TITLE_HITS = 5
SNIPPET_CHARS = 180
_Row = TypeVar("_Row", bound=Model)  # what ``_text_match`` narrows: conversations or messages


@dataclass(frozen=True)
class Term:
    """One word, or the words of a phrase, lower-cased; ``prefix`` matches the (last) word's beginning."""

    words: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    terms: tuple[Term, ...] = ()
    pinned: bool | None = None
    archived: bool | None = None
    folder: str | None = None
    model: str | None = None
    after: date | None = None
    before: date | None = None

    @property
    def has_filters(self) -> bool:
        return any(getattr(self, name) is not None for name in FILTERS)


@dataclass
class SearchHit:
    conversation_id: int
    title: str
    message_id: int | None
    role: str
    snippet: SafeString
    at: datetime
    pinned: bool
    archived: bool


@dataclass
class SearchPage:
    query: ParsedQuery
    hits: list[SearchHit] = field(default_factory=list)
    next_cursor: str = ""


def search_query_parse(text: str) -> ParsedQuery:
    """The query's terms and filters; a filter with a value it cannot use raises InvalidInput."""
    terms: list[Term] = []
    flags: dict[str, bool] = {}  # pinned, archived
    days: dict[str, date] = {}  # after, before
    names: dict[str, str] = {}  # folder, model
    pieces = list(PIECE.finditer(text))
    for index, piece in enumerate(pieces):
        key, value = piece.group("key"), piece.group("value")
        if key in FILTERS:
            value = value.strip('"')
            if key in ("pinned", "archived"):
                flags[key] = _filter_flag(key, value)
            elif key in ("after", "before"):
                days[key] = _filter_day(key, value)
            else:
                names[key] = _filter_name(key, value)
            continue
        if piece.group("phrase") is not None:
            words = tuple(w.lower() for w in WORD.findall(piece.group("phrase")))
            if words:
                terms.append(Term(words))
            continue
        raw = piece.group(0)
        words = tuple(w.lower() for w in WORD.findall(raw))
        if not words:
            continue
        typing = index == len(pieces) - 1 and not text[-1:].isspace()
        prefix = (raw.endswith("*") or typing) and len(words[-1]) >= MIN_PREFIX
        terms.append(Term(words, prefix=prefix))
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"A search can have at most {MAX_TERMS} words or phrases.", param="q")
    return ParsedQuery(
        terms=tuple(terms),
        pinned=flags.get("pinned"),
        archived=flags.get("archived"),
        folder=names.get("folder"),
        model=names.get("model"),
        after=days.get("after"),
        before=days.get("before"),
    )


def _filter_flag(key: str, value: str) -> bool:
    if value.lower() in YES:
        return True
    if value.lower() in NO:
        return False
    raise InvalidInput(f"{key}: takes yes or no.", param="q")


def _filter_day(key: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{key}: takes a date like 2026-12-01.", param="q") from None


def _filter_name(key: str, value: str) -> str:
    if not value:
        raise InvalidInput(f"{key}: takes a name.", param="q")
    return value


def conversation_search(*, user: User, query: ParsedQuery, cursor: str = "", limit: int = PAGE) -> SearchPage:
    """One page of the user's matches, newest first; ``next_cursor`` asks for the next one.

    Filters alone (no words) list the conversations they select, by latest activity.
    """
    page = SearchPage(query=query)
    if not query.terms and not query.has_filters:
        return page
    after = None
    if cursor:
        after = page_cursor_parse(cursor)
        if after is None:
            raise InvalidInput("That page of results does not exist; search again.", param="cursor")
    if not query.terms:
        conversations = _conversation_matches(user=user, query=query)
        if after is not None:
            conversations = conversations.filter(older_than(after, field="updated_at"))
        rows = list(conversations.order_by("-updated_at", "-id")[: limit + 1])
        page.hits = [_title_hit(conversation, query) for conversation in rows[:limit]]
        if len(rows) > limit:
            page.next_cursor = page_cursor(rows[limit - 1].updated_at, rows[limit - 1].pk)
        return page
    if after is None:
        conversations = _text_match(
            _conversation_matches(user=user, query=query), query.terms, table=Conversation._meta.db_table
        )
        page.hits = [_title_hit(c, query) for c in conversations.order_by("-updated_at", "-id")[:TITLE_HITS]]
    messages = _message_matches(user=user, query=query)
    if after is not None:
        messages = messages.filter(older_than(after, field="created_at"))
    found = list(messages.select_related("conversation").order_by("-created_at", "-id")[: limit + 1])
    for message in found[:limit]:
        conversation = message.conversation
        page.hits.append(
            SearchHit(
                conversation_id=conversation.pk,
                title=conversation.title,
                message_id=message.pk,
                role=message.role,
                snippet=snippet_html(message.content, query.terms),
                at=message.created_at,
                pinned=conversation.pinned,
                archived=conversation.archived,
            )
        )
    if len(found) > limit:
        page.next_cursor = page_cursor(found[limit - 1].created_at, found[limit - 1].pk)
    return page


def _title_hit(conversation: Conversation, query: ParsedQuery) -> SearchHit:
    return SearchHit(
        conversation_id=conversation.pk,
        title=conversation.title,
        message_id=None,
        role="",
        snippet=snippet_html(conversation.title, query.terms),
        at=conversation.updated_at,
        pinned=conversation.pinned,
        archived=conversation.archived,
    )


def _conversation_filters(query: ParsedQuery, prefix: str) -> Q:
    """The filters about the conversation, on a queryset of conversations (``prefix`` "") or messages."""
    q = Q()
    if query.pinned is not None:
        q &= Q(**{f"{prefix}pinned": query.pinned})
    if query.archived is not None:
        q &= Q(**{f"{prefix}archived": query.archived})
    if query.folder is not None:
        if query.folder.lower() == "none":
            q &= Q(**{f"{prefix}folder__isnull": True})
        else:
            q &= Q(**{f"{prefix}folder__name__iexact": query.folder})
    return q


def _model_filter(name: str, prefix: str) -> Q:
    return Q(**{f"{prefix}model__name__iexact": name}) | Q(**{f"{prefix}model__display_name__iexact": name})


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=dt_timezone.utc)


def _message_matches(*, user: User, query: ParsedQuery) -> QuerySet[Message]:
    messages = Message.objects.filter(conversation__user=user).filter(_conversation_filters(query, "conversation__"))
    if query.model is not None:
        messages = messages.filter(_model_filter(query.model, "conversation__") | Q(model_name__iexact=query.model))
    if query.after is not None:
        messages = messages.filter(created_at__gte=_day_start(query.after))
    if query.before is not None:
        messages = messages.filter(created_at__lt=_day_start(query.before))
    if query.terms:
        messages = _text_match(messages, query.terms, table=Message._meta.db_table)
    return messages


def _conversation_matches(*, user: User, query: ParsedQuery) -> QuerySet[Conversation]:
    conversations = Conversation.objects.filter(user=user).filter(_conversation_filters(query, ""))
    if query.model is not None:
        conversations = conversations.filter(_model_filter(query.model, ""))
    if query.after is not None:
        conversations = conversations.filter(updated_at__gte=_day_start(query.after))
    if query.before is not None:
        conversations = conversations.filter(updated_at__lt=_day_start(query.before))
    return conversations


def _text_match(queryset: QuerySet[_Row], terms: tuple[Term, ...], *, table: str) -> QuerySet[_Row]:
    """Rows of ``table`` whose indexed text matches every term."""
    if connection.vendor == "postgresql":
        vector = RawSQL(f'"{table}"."search_vector"', [], output_field=SearchVectorField())
        tsquery = SearchQuery(postgres_tsquery(terms), search_type="raw", config="simple")
        # The same rows (an alias adds no attribute); the stubs' plugin types alias() on a generic queryset as Any.
        matching: QuerySet[_Row] = queryset.alias(search=vector).filter(search=tsquery)
        return matching
    fts = fts_table(table)
    match = RawSQL(
        f'"{table}"."id" IN (SELECT rowid FROM "{fts}" WHERE "{fts}" MATCH %s)',
        [fts5_query(terms)],
        output_field=BooleanField(),
    )
    return queryset.filter(match)


def postgres_tsquery(terms: tuple[Term, ...]) -> str:
    """A tsquery of the terms. Words hold only letters and digits, so quoting them is enough."""

    def lexeme(word: str, prefix: bool) -> str:
        return f"'{word}'" + (":*" if prefix else "")

    parts = []
    for term in terms:
        words = [lexeme(w, term.prefix and i == len(term.words) - 1) for i, w in enumerate(term.words)]
        parts.append(words[0] if len(words) == 1 else "(" + " <-> ".join(words) + ")")
    return " & ".join(parts)


def fts5_query(terms: tuple[Term, ...]) -> str:
    """An FTS5 MATCH expression of the terms: each a quoted phrase, the prefix ones starred."""
    return " ".join('"' + " ".join(term.words) + '"' + ("*" if term.prefix else "") for term in terms)


def snippet_html(text: str, terms: tuple[Term, ...], *, width: int = SNIPPET_CHARS) -> SafeString:
    """A window of ``text`` around its first match, escaped, with every match in it wrapped in <mark>."""
    tokens = list(WORD.finditer(text))
    lowered = [token.group(0).lower() for token in tokens]
    spans: list[tuple[int, int]] = []
    for term in terms:
        size = len(term.words)
        for i in range(len(tokens) - size + 1):
            if _term_matches(term, lowered[i : i + size]):
                spans.append((tokens[i].start(), tokens[i + size - 1].end()))
    spans.sort()
    first = spans[0][0] if spans else 0
    start = 0 if first < width // 3 else text.rfind(" ", 0, first - width // 3) + 1
    end = min(len(text), start + width)
    if end < len(text):
        end = text.rfind(" ", start + width // 2, end) if " " in text[start + width // 2 : end] else end
    parts: list[str] = []
    position = start
    for span_start, span_end in spans:
        if span_start < position or span_end > end:
            continue
        parts.append(escape(text[position:span_start]))
        parts.append(f"<mark>{escape(text[span_start:span_end])}</mark>")
        position = span_end
    parts.append(escape(text[position:end]))
    body = " ".join("".join(parts).split())
    return mark_safe(("… " if start > 0 else "") + body + (" …" if end < len(text) else ""))  # noqa: S308 - every piece of the text escaped above


def _term_matches(term: Term, words: list[str]) -> bool:
    *whole, last = term.words
    if words[: len(whole)] != list(whole):
        return False
    return words[-1].startswith(last) if term.prefix else words[-1] == last
