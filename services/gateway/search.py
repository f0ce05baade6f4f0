"""Movie search by title (SearchMovies) over a model version's catalog: a case-insensitive
substring match, titles that start with the query first, pages by offset behind an opaque
token tied to the query. Pure Python: no gRPC, no protobuf."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from dataclasses import dataclass

from recsys.errors import InvalidArgument

MAX_QUERY_CHARS = 200
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
CACHED_CATALOGS = 3  # model versions whose search index is kept (as the flow keeps 3)

# MovieLens writes a leading article after the title: "Princess Bride, The (1987)",
# "Cité des enfants perdus, La (1995)". The article-first form is searched too.
TRAILING_ARTICLE = re.compile(
    r"^(?P<name>[^(]+?), (?P<article>The|A|An|La|Le|Les|L'|Il|El|Los|Las|Das|Der|Die)"
    r"(?P<rest> \(.*)?$"
)
SPACES = re.compile(r"\s+")


def normalized(text: str) -> str:
    """Case-folded, runs of whitespace as one space, trimmed."""
    return SPACES.sub(" ", text).strip().casefold()


def article_first(title: str) -> str:
    """ "Princess Bride, The (1987)" → "The Princess Bride (1987)"; other titles unchanged."""
    match = TRAILING_ARTICLE.match(title)
    if match is None:
        return title
    article = match["article"]
    joined = f"{article}{match['name']}" if article.endswith("'") else f"{article} {match['name']}"
    return joined + (match["rest"] or "")


def checked_query(query: str) -> str:
    """The normalized query; InvalidArgument (field `query`) when empty or too long."""
    text = normalized(query)
    if not text:
        raise InvalidArgument("query must name some text of a title", field="query")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidArgument(
            f"query must be at most {MAX_QUERY_CHARS} characters, got {len(text)}", field="query"
        )
    return text


def checked_page_size(page_size: int) -> int:
    size = page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}", field="page_size"
        )
    return size


def page_token(query: str, offset: int) -> str:
    """The opaque token of the page that starts at `offset` of `query`'s matches."""
    raw = json.dumps({"q": query, "o": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def offset_of(token: str, query: str) -> int:
    """Where the page of `token` starts (0 for no token); InvalidArgument (field
    `page_token`) for a token that is not one of ours or belongs to another query."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
        offset, token_query = fields["o"], fields["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidArgument(
            "page_token is not a token SearchMovies gave", field="page_token"
        ) from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidArgument("page_token is not a token SearchMovies gave", field="page_token")
    if token_query != query:
        raise InvalidArgument("page_token belongs to another query", field="page_token")
    return offset


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    genres: list[str]


@dataclass(frozen=True)
class Page:
    movies: list[Movie]
    next_offset: int | None  # None on the last page
    total: int


class TitleIndex:
    """The titles of one catalog in search order (case-folded title, then id), each with the
    normalized forms a query is matched against."""

    def __init__(self, catalog: dict[int, tuple[str, list[str]]]):
        entries = []
        for movie_id, (title, genres) in catalog.items():
            forms = {normalized(title), normalized(article_first(title))}
            entries.append((normalized(title), movie_id, title, genres, tuple(forms)))
        entries.sort(key=lambda e: (e[0], e[1]))
        self._entries = [
            (movie_id, title, genres, forms) for _, movie_id, title, genres, forms in entries
        ]

    def search(self, query: str, offset: int, size: int) -> Page:
        """`size` matches of the normalized `query` from `offset` on."""
        starting, containing = [], []
        for movie_id, title, genres, forms in self._entries:
            if any(form.startswith(query) for form in forms):
                starting.append(Movie(movie_id, title, genres))
            elif any(query in form for form in forms):
                containing.append(Movie(movie_id, title, genres))
        matches = starting + containing
        end = offset + size
        return Page(matches[offset:end], end if end < len(matches) else None, len(matches))


class TitleSearch:
    """Title indexes of the last CACHED_CATALOGS model versions, built on first use."""

    def __init__(self):
        self._indexes: OrderedDict[str, TitleIndex] = OrderedDict()

    def index(self, version: str, catalog: dict[int, tuple[str, list[str]]]) -> TitleIndex:
        index = self._indexes.get(version)
        if index is None:
            index = self._indexes[version] = TitleIndex(catalog)
            while len(self._indexes) > CACHED_CATALOGS:
                self._indexes.popitem(last=False)
        return index
