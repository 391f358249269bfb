"""List endpoints: query arguments to parameterised SQLite, and the page blocks.

Names come from a whitelist; values only travel as ``?`` parameters. Keyset
cursors use row values, ``(col, id) < (?, ?)``, which seek an index on ``col``.
A nullable sort column stays exact (SQLite puts NULLs first ascending, last
descending) via ``OR col IS NULL``, which scans the index instead: declare NOT
NULL columns ``nullable=False``. A cursor carries a fingerprint of the filter
and sort and is refused with any other.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from . import jsontext

KINDS = ("str", "int", "float", "time", "money")
COMPARE = {"eq": "=", "ne": "IS NOT", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
LIKE = {"contains": "%{}%", "starts_with": "{}%", "ends_with": "%{}"}
OPERATORS = (*COMPARE, "in", *LIKE)
CONTROL_PARAMS = ("limit", "offset", "cursor", "sort", "filter")
MAX_IN = 100
MAX_OFFSET = 10**12
INT64 = 2**63
_IDENT = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?", re.ASCII)
ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?"
)
_INT = re.compile(r"[+-]?\d{1,19}")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,1000}")


class ListError(Exception):
    """Bad list arguments; ``details`` maps the parameter to its messages."""

    def __init__(self, message: str, details: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


def _fail(key: str, message: str) -> ListError:
    return ListError(message, {key: [message]})


@dataclass(frozen=True)
class Field:
    """A listable field: the SQL column behind an API name, and its kind."""

    column: str
    kind: str
    sortable: bool = True
    filterable: bool = True
    nullable: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS or not _IDENT.fullmatch(self.column):
            raise ValueError(f"bad Field({self.column!r}, {self.kind!r})")


@dataclass(frozen=True)
class Sort:
    name: str
    field: Field
    desc: bool


@dataclass(frozen=True)
class Cursor:
    value: Any  # raw DB sort value of the last row seen (None in feed mode)
    last_id: int


@dataclass
class ListQuery:
    """Parsed list arguments, ready to become SQL."""

    where_sql: str
    params: list
    order_sql: str
    limit: int
    offset: int
    sort: Sort
    cursor: Cursor | None
    fingerprint: str
    feed: bool = False
    id_column: str = "id"
    filter_columns: frozenset[str] = frozenset()  # the columns where_sql compares

    @property
    def cursor_mode(self) -> bool:
        return self.feed or self.cursor is not None

    def page_sql(self, table: str, columns: str = "*") -> tuple[str, list]:
        """SELECT for one page plus one extra row (to know has_more)."""
        where, params = self.where_sql, list(self.params)
        if self.cursor is not None:
            keyset, extra = _keyset(self.sort, self.id_column, self.cursor)
            where = f"{where} AND {keyset}" if where else f" WHERE {keyset}"
            params += extra
        sql = f"SELECT {columns} FROM {table}{where}{self.order_sql} LIMIT ?"
        params.append(self.limit + 1)
        if not self.cursor_mode:
            sql += " OFFSET ?"
            params.append(self.offset)
        return sql, params

    def count_sql(self, table: str) -> tuple[str, list]:
        return f"SELECT count(*) FROM {table}{self.where_sql}", list(self.params)

    def next_cursor(self, sort_value: Any, last_id: int) -> str:
        """The opaque cursor for the rows after one with these values."""
        if self.feed:
            return feed_cursor(last_id)
        return _encode({"s": self.sort.name, "d": int(self.sort.desc),
                        "v": sort_value, "i": last_id, "h": self.fingerprint})


def feed_cursor(last_id: int) -> str:
    """A feed's opaque cursor: the position after the row with this id."""
    return _encode({"a": last_id})


def parse_feed_cursor(text: str) -> int:
    """The id a feed cursor stands after, or ListError."""
    return _parse_cursor(text, None, "", feed=True).last_id


def parse_list_args(args: Mapping[str, str], fields: dict[str, Field], *,
                    shorthands: dict[str, tuple[str, str]] | None = None,
                    default_sort: str = "-created_at", max_limit: int = 100,
                    default_limit: int = 20, feed: bool = False, id_column: str = "id",
                    extra_params: Sequence[str] = ()) -> ListQuery:
    """Validate list query arguments or raise ListError for the first bad one.

    Empty values count as absent. ``feed=True`` fixes the order to id
    ascending; its cursor means "after this id" and holds for any filter.
    """
    shorthands = shorthands or {}
    given = {key: args[key] for key in args if args[key] not in (None, "")}
    known = (*CONTROL_PARAMS, *shorthands, *extra_params)
    for key in given:
        if key not in known:
            raise _fail(key, f"unknown query parameter '{key}'; allowed: "
                        + ", ".join(known))
    if "offset" in given and (feed or "cursor" in given):
        raise _fail("offset", "this list pages by cursor only" if feed
                    else "use either offset or cursor, not both")
    limit = _parse_count("limit", given.get("limit", str(default_limit)), 1, max_limit)
    offset = _parse_count("offset", given.get("offset", "0"), 0, MAX_OFFSET)
    sort = _parse_sort(given.get("sort"), fields, default_sort, feed, id_column)
    conditions = [
        _condition(fields[name], op, _from_text(given[key], fields[name], key), key)
        for key, (name, op) in shorthands.items() if key in given
    ]
    if "filter" in given:
        conditions += _parse_filter(given["filter"], fields, shorthands)
    conditions.sort(key=json.dumps)  # a canonical order makes the fingerprint stable
    fingerprint = _fingerprint(conditions, sort)
    cursor = None
    if "cursor" in given:
        cursor = _parse_cursor(given["cursor"], sort, fingerprint, feed)
    where = " AND ".join(sql for sql, _ in conditions)
    return ListQuery(
        where_sql=f" WHERE {where}" if where else "",
        params=[p for _, params in conditions for p in params],
        order_sql=_order_sql(sort, id_column),
        limit=limit, offset=offset, sort=sort, cursor=cursor,
        fingerprint=fingerprint, feed=feed, id_column=id_column,
        filter_columns=frozenset(sql.split(" ", 1)[0] for sql, _ in conditions),  # see _condition
    )


def _parse_count(name: str, text: str, low: int, high: int) -> int:
    if not _INT.fullmatch(text) or not low <= int(text) <= high:
        if name == "limit":
            raise _fail(name, f"limit must be between {low} and {high}")
        raise _fail(name, f"{name} must be an integer >= {low}")
    return int(text)


def _parse_sort(text: str | None, fields: dict[str, Field], default: str,
                feed: bool, id_column: str) -> Sort:
    if feed:
        if text not in (None, "id"):
            raise _fail("sort", "this list is always sorted by id")
        return Sort("id", Field(id_column, "int", nullable=False), False)
    text = default if text is None else text
    name = text.removeprefix("-")
    fld = fields.get(name)
    if fld is None or not fld.sortable:
        allowed = ", ".join(sorted(n for n, f in fields.items() if f.sortable))
        raise _fail("sort", f"sort must be one of: {allowed} (prefix - for descending)")
    return Sort(name, fld, text.startswith("-"))


def _order_sql(sort: Sort, id_column: str) -> str:
    direction = " DESC" if sort.desc else " ASC"
    if sort.field.column == id_column:
        return f" ORDER BY {id_column}{direction}"
    return f" ORDER BY {sort.field.column}{direction}, {id_column}{direction}"


def _keyset(sort: Sort, id_column: str, cursor: Cursor) -> tuple[str, list]:
    """Rows strictly after the cursor in (sort column, id) order."""
    op = "<" if sort.desc else ">"
    col = sort.field.column
    if col == id_column:
        return f"{id_column} {op} ?", [cursor.last_id]
    if cursor.value is None:
        sql = f"({col} IS NULL AND {id_column} {op} ?)"
        if not sort.desc:  # ascending: NULLs come first, then every non-NULL
            sql = f"({sql} OR {col} IS NOT NULL)"
        return sql, [cursor.last_id]
    sql = f"({col}, {id_column}) {op} (?, ?)"
    if sort.desc and sort.field.nullable:  # descending: NULLs come last
        sql = f"({sql} OR {col} IS NULL)"
    return sql, [cursor.value, cursor.last_id]


def _parse_filter(text: str, fields: dict[str, Field],
                  shorthands: dict[str, tuple[str, str]]) -> list[tuple[str, list]]:
    try:
        data = jsontext.loads(text)
    except jsontext.TooDeep as exc:
        raise _fail("filter", f"filter: {exc}") from None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _fail("filter", "filter must be a JSON object")
    conditions = []
    for key, value in data.items():
        where = f"filter.{key}"
        if key in shorthands and key not in fields:
            name, op = shorthands[key]
            conditions.append(_condition(fields[name], op, value, where))
            continue
        if key not in fields or not fields[key].filterable:
            names = sorted([*(n for n, f in fields.items() if f.filterable), *shorthands])
            raise _fail(where, f"unknown filter field '{key}'; allowed: {', '.join(names)}")
        ops = value if isinstance(value, dict) else {"eq": value}
        if not ops:
            raise _fail(where, f"{where} needs at least one operator")
        conditions += [_condition(fields[key], op, v, where) for op, v in ops.items()]
    return conditions


def _condition(fld: Field, op: str, value: Any, where: str) -> tuple[str, list]:
    """One whitelisted ``column op ?`` comparison and its parameters (the SQL always
    starts with the column: ListQuery.filter_columns reads it there)."""
    col = fld.column
    if op not in OPERATORS:
        raise _fail(where, f"unknown operator '{op}' in {where}; "
                    f"allowed: {', '.join(OPERATORS)}")
    if op == "in":
        if not isinstance(value, list) or not 0 < len(value) <= MAX_IN:
            raise _fail(where, f"{where}: in needs a non-empty array "
                        f"of at most {MAX_IN} values")
        values = [_coerce(v, fld, where) for v in value]
        return f"{col} IN ({', '.join('?' * len(values))})", values
    if isinstance(value, (list, dict)):
        raise _fail(where, f"{where}: {op} needs a single value (use in for a list)")
    if op in LIKE:
        if fld.kind != "str":
            raise _fail(where, f"{where}: {op} only works on text fields")
        pattern = LIKE[op].format(_escape_like(_coerce(value, fld, where)))
        return f"{col} LIKE ? ESCAPE '\\'", [pattern]
    return f"{col} {COMPARE[op]} ?", [_coerce(value, fld, where)]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _coerce(value: Any, fld: Field, where: str) -> Any:
    """A JSON value as the DB value of this field, or ListError."""
    if fld.kind == "str":
        if not isinstance(value, str):
            raise _fail(where, f"{where} must be a string")
        return value
    if fld.kind == "time":
        normal = _iso_time(value) if isinstance(value, str) else None
        if normal is None:
            raise _fail(where, f"{where} must be an ISO date or datetime")
        return normal
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise _fail(where, f"{where} must be a number")
    if fld.kind == "int" and not isinstance(value, int):
        raise _fail(where, f"{where} must be an integer")
    # Checked before rounding: a huge money value times 10**6 is inf, which round() refuses.
    if abs(value) * (1_000_000 if fld.kind == "money" else 1) >= INT64:
        raise _fail(where, f"{where} is out of range")
    number = round(value * 1_000_000) if fld.kind == "money" else value
    return float(number) if fld.kind == "float" else number


def _from_text(text: str, fld: Field, where: str) -> Any:
    """A query-string value as the JSON value it stands for."""
    if fld.kind == "int" and _INT.fullmatch(text):
        return int(text)
    if fld.kind in ("float", "money") and _NUMBER.fullmatch(text):
        return float(text)
    if fld.kind in ("int", "float", "money"):
        raise _fail(where, f"{where} must be a number")
    return text


def _iso_time(text: str) -> str | None:
    """ISO date/datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC; naive is UTC)."""
    if not ISO_TIME.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return moment.isoformat(timespec="microseconds") + "Z"


def _fingerprint(conditions: list[tuple[str, list]], sort: Sort) -> str:
    canonical = json.dumps([conditions, sort.name, sort.desc])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _encode(payload: dict) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(text: str, sort: Sort, fingerprint: str, feed: bool) -> Cursor:
    invalid = _fail("cursor", "Invalid cursor")
    if not _CURSOR.fullmatch(text):
        raise invalid
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise invalid from None
    if not isinstance(data, dict) or set(data) != ({"a"} if feed else set("sdvih")):
        raise invalid
    last_id = data["a" if feed else "i"]
    if not _fits(last_id, "int"):
        raise invalid
    if feed:
        return Cursor(None, last_id)
    if (data["h"], data["s"], data["d"]) != (fingerprint, sort.name, int(sort.desc)):
        raise ListError("Invalid cursor", {"cursor": [
            "cursor was issued for a different filter or sort; start again without it"]})
    if not (_fits(data["v"], sort.field.kind)
            or (data["v"] is None and sort.field.nullable)):
        raise invalid
    return Cursor(data["v"], last_id)


def _fits(value: Any, kind: str) -> bool:
    """Whether a decoded cursor value has the DB type of this kind."""
    if kind in ("str", "time"):
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if kind == "float":
        return math.isfinite(value)
    return isinstance(value, int) and abs(value) < INT64


def build_page(rows: Sequence[Any], query: ListQuery, *, total: int | None,
               base_path: str, args: Mapping[str, str],
               sort_value_of: Callable[[Any], Any] | None = None,
               id_of: Callable[[Any], int] | None = None) -> tuple[list, dict, dict]:
    """Trim the extra row; return (rows, pagination block, links block).

    ``sort_value_of``/``id_of`` read a row's raw DB values; by default
    ``row[sort column]`` and ``row[id column]`` (sqlite3.Row or dict rows).
    In feed mode ``cursor`` is always the position to poll from next.
    """
    has_more = len(rows) > query.limit
    page = list(rows[: query.limit])
    value_of = sort_value_of or (lambda row: row[query.sort.field.column.split(".")[-1]])
    ident_of = id_of or (lambda row: row[query.id_column.split(".")[-1]])
    cursor = None
    if page and (has_more or query.feed):
        cursor = query.next_cursor(value_of(page[-1]), ident_of(page[-1]))
    elif query.feed and query.cursor is not None:
        cursor = query.next_cursor(None, query.cursor.last_id)
    links = {"self": _link(base_path, args), "next": None, "prev": None,
             "first": None, "last": None}
    if query.cursor_mode:
        pagination = {"limit": query.limit, "has_more": has_more, "cursor": cursor}
        if not query.feed:
            pagination["total"] = total
        links["first"] = _link(base_path, args, cursor=None)
        if has_more:
            links["next"] = _link(base_path, args, cursor=cursor)
        return page, pagination, links
    next_offset = query.offset + query.limit if has_more else None
    prev_offset = max(query.offset - query.limit, 0) if query.offset > 0 else None
    pagination = {
        "total": total, "limit": query.limit, "offset": query.offset,
        "has_more": has_more, "next_offset": next_offset,
        "previous_offset": prev_offset, "next_cursor": cursor,
    }
    last = None if total is None else max(total - 1, 0) // query.limit * query.limit
    for name, offset in (("next", next_offset), ("prev", prev_offset),
                         ("first", 0), ("last", last)):
        if offset is not None:
            links[name] = _link(base_path, args, offset=offset)
    return page, pagination, links


def _link(base_path: str, args: Mapping[str, str], **changes: Any) -> str:
    """base_path with the original args, some replaced (None drops one)."""
    items = {key: args[key] for key in args}
    for key, value in changes.items():
        if value is None:
            items.pop(key, None)
        else:
            items[key] = str(value)
    query = urlencode(items)
    return f"{base_path}?{query}" if query else base_path
