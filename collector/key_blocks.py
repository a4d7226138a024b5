"""Many keys bound to one SQL statement as a single value: SQLite splits them back into rows.

Looking up or inserting a batch's keys one bound value at a time costs Python work per key, and
`executemany` also releases and takes back the GIL for every row. Joined end to end (keys of one
width per block), a whole batch is one bound value of one statement: a recursive CTE walks the
offsets and `substr` cuts each key out, so the per-key work happens inside SQLite, without the
GIL. Keys are bytes, bound as a BLOB: `substr` and `length` of a TEXT value count characters
from its start, which makes a block of TEXT keys quadratic (tried for the budget stage's span
ids: 14 -> 21 us a span; as BLOBs cast back to TEXT, no gain there, so that stage kept its rows).
"""

from __future__ import annotations

from collections.abc import Collection

# ?1: the joined keys, ?2: their width; a row per key, `i` its offset.
_OFFSETS = (
    "WITH RECURSIVE offset(i) AS (SELECT 0 UNION ALL SELECT i + ?2 FROM offset WHERE i + ?2 < length(?1)) "
)


def _key(offset: str) -> str:
    # `substr` of an empty BLOB is NULL, not x'': the empty key (width 0) is spelled out.
    return f"CASE WHEN ?2 > 0 THEN substr(?1, {offset} + 1, ?2) ELSE x'' END"


def select_present(table: str, column: str) -> str:
    """SQL: the keys of a block (?1, width ?2) that `table.column` (its primary key) holds."""
    return _OFFSETS + f"SELECT t.{column} FROM offset JOIN {table} t ON t.{column} = {_key('offset.i')}"


def insert_or_ignore(table: str, column: str, value_column: str) -> str:
    """SQL: insert each key of a block (?1, width ?2) with `value_column` = ?3, skipping those present.

    The keys go in in key order, so each page of the index is written once for its neighbouring
    keys; SQLite sorts them itself, without the GIL (sorted in Python, a 50,000-key block held
    the GIL for ~18 ms of the ~50 ms its move takes)."""
    return (_OFFSETS + f"INSERT OR IGNORE INTO {table} ({column}, {value_column}) "
            f"SELECT {_key('i')}, ?3 FROM offset ORDER BY 1")


def blocks(keys: Collection[bytes]) -> dict[int, bytes]:
    """Keys grouped by width, each group joined (in the order given)."""
    widths = set(map(len, keys))
    if len(widths) == 1:  # the usual case, in C: no Python step per key
        return {widths.pop(): b"".join(keys)}
    by_width: dict[int, list[bytes]] = {}
    for key in keys:
        by_width.setdefault(len(key), []).append(key)
    return {width: b"".join(group) for width, group in by_width.items()}


def split_block(joined: bytes, width: int) -> list[bytes]:
    if width <= 0:  # the empty key is a block of its own
        return [b""]
    return [joined[offset:offset + width] for offset in range(0, len(joined), width)]
