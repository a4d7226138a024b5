"""The dedup stage on a real store: each key passes once, whatever its length, across the move of
recent marks into `spans_seen`, a rollback and a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.key_blocks import split_block
from collector.model import SpanBatch, SpanRecord
from collector.rollup import RunState
from collector.stages import DedupStage
from collector.stats import CollectorStats
from collector.store import Store, StoreError, UnitOfWork


def _record(key: bytes) -> SpanRecord:
    record = SpanRecord("default", "run", "ab" * 16, "cd" * 8, "", "chat", 3, 1, 2)
    record.dedup_key = key
    return record


def _process(store: Store, stage: DedupStage, keys: list[bytes]) -> tuple[UnitOfWork, SpanBatch]:
    batch = SpanBatch([_record(key) for key in keys])
    uow = UnitOfWork(store, RunState())
    uow.begin()
    batch.uow = uow
    stage.process(batch)
    return uow, batch


def _commit(store: Store, stage: DedupStage, keys: list[bytes]) -> list[bytes]:
    uow, batch = _process(store, stage, keys)
    uow.commit()
    return [record.dedup_key for record in batch.records]


def _recent_keys(store: Store) -> list[bytes]:
    return [key for keys, width in store.conn.execute("SELECT keys, width FROM spans_recent_blocks")
            for key in split_block(keys, width)]


def _marks(store: Store) -> dict[str, int]:
    return {"spans_recent": len(_recent_keys(store)),
            "spans_seen": store.conn.execute("SELECT count(*) FROM spans_seen").fetchone()[0]}


def _keys(count: int, size: int = 32, first: int = 1) -> list[bytes]:
    return [index.to_bytes(size, "big") for index in range(first, first + count)]


@pytest.mark.parametrize("size", [32, 24])  # 32: the decoder's keys; 24: keys tests build by hand
def test_each_key_passes_once_within_and_across_batches(tmp_path: Path, size: int) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats())
    keys = _keys(1000, size)
    try:
        assert _commit(store, stage, keys[:600] + keys[:3]) == keys[:600]  # a copy inside the batch
        assert _commit(store, stage, keys[590:]) == keys[600:]  # ten seen in the first batch
        assert _commit(store, stage, keys[::7]) == []
        stored = _recent_keys(store) + [key for (key,) in store.conn.execute("SELECT k FROM spans_seen")]
        assert sorted(stored) == keys
    finally:
        store.close()


def test_a_key_marked_earlier_in_the_same_transaction_is_a_duplicate(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats())
    keys = _keys(300)
    try:
        assert _commit(store, stage, keys[:100]) == keys[:100]
        uow, first = _process(store, stage, keys[50:200])  # 50 committed before: duplicates
        second = SpanBatch([_record(key) for key in keys[150:300]])
        second.uow = uow
        stage.process(second)  # 150..199 marked by the first batch, not committed yet
        uow.commit()
        assert [record.dedup_key for record in first.records] == keys[100:200]
        assert [record.dedup_key for record in second.records] == keys[200:300]
        assert (first.duplicates, second.duplicates) == (50, 50)
        assert sorted(_recent_keys(store)) == keys
    finally:
        store.close()


def test_recent_marks_move_to_spans_seen_and_still_count(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats(), settle_after=250)
    keys = _keys(1000)
    try:
        assert _commit(store, stage, keys[:300]) == keys[:300]
        assert _marks(store) == {"spans_recent": 300, "spans_seen": 0}
        # 300 >= 250: the next transaction moves them first, then appends its own new keys.
        assert _commit(store, stage, keys[250:400]) == keys[300:400]
        assert _marks(store) == {"spans_recent": 100, "spans_seen": 300}
        assert _commit(store, stage, keys[:400]) == []  # found in spans_seen and in recent
        assert _commit(store, stage, keys[350:1000]) == keys[400:1000]
        assert _marks(store) == {"spans_recent": 700, "spans_seen": 300}  # 100 < 250: not moved
        assert _commit(store, stage, [keys[0], b"m" * 32]) == [b"m" * 32]
        assert _marks(store) == {"spans_recent": 1, "spans_seen": 1000}
    finally:
        store.conn.close()  # as kill -9 leaves it: the recent mark still in its block
    # A restart finds both kinds again (every mark is a committed row).
    store = Store(str(tmp_path / "dedup.db"))
    try:
        assert _marks(store) == {"spans_recent": 1, "spans_seen": 1000}
        fresh = DedupStage(stats=CollectorStats(), settle_after=250)
        fresh.setup(store)
        assert _commit(store, fresh, [*keys[::3], b"m" * 32, b"n" * 32]) == [b"n" * 32]
    finally:
        store.close()


def test_a_rolled_back_transaction_marks_nothing(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats(), settle_after=100)
    keys = _keys(300)
    try:
        assert _commit(store, stage, keys[:150]) == keys[:150]
        # This transaction would move the 150 recent marks and add 100 new ones: rolled back.
        uow, batch = _process(store, stage, keys[100:250])
        assert [record.dedup_key for record in batch.records] == keys[150:250]
        uow.rollback()
        assert _marks(store) == {"spans_recent": 150, "spans_seen": 0}
        # Nothing of it counted: its new keys pass again, the old ones are still duplicates.
        assert _commit(store, stage, keys[100:250]) == keys[150:250]
        assert _marks(store) == {"spans_recent": 100, "spans_seen": 150}
        assert _commit(store, stage, keys[:250]) == []
    finally:
        store.close()


def test_keys_of_several_lengths_in_one_batch_each_pass_once(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats(), settle_after=4)
    short, long = _keys(3, 24), _keys(3, 32)
    try:
        assert _commit(store, stage, [short[0], long[0], short[1], long[1]]) == [
            short[0], long[0], short[1], long[1]]
        # Settled first (4 recent marks), then each length looked up in its own block.
        assert _commit(store, stage, [*short, *long]) == [short[2], long[2]]
        assert _marks(store) == {"spans_recent": 2, "spans_seen": 4}
        assert _commit(store, stage, [*long, *short]) == []
        assert _commit(store, stage, [b"", short[0]]) == [b""]  # a record built without a key
        assert _commit(store, stage, [b"", long[0]]) == []
        another = _keys(1, 32, first=99)
        assert _commit(store, stage, another) == another  # 4 recent marks: short, long, empty, another
        # This transaction moves the 4 into spans_seen first, the empty key too; found there.
        assert _commit(store, stage, [b""]) == []
        assert _marks(store) == {"spans_recent": 0, "spans_seen": 8}
    finally:
        store.close()
    store = Store(str(tmp_path / "dedup.db"))  # and loaded back at a restart
    try:
        fresh = DedupStage(stats=CollectorStats(), settle_after=4)
        fresh.setup(store)
        assert _commit(store, fresh, [b"", *short, *long, b"new"]) == [b"new"]
    finally:
        store.close()


def test_a_store_with_a_row_per_recent_mark_is_moved_over_at_open(tmp_path: Path) -> None:
    """Stores written before the marks were kept in blocks: their recent marks still count."""
    path = str(tmp_path / "old.db")
    keys = _keys(50)
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE spans_recent (k BLOB NOT NULL, t INTEGER NOT NULL)")
    old.executemany("INSERT INTO spans_recent VALUES (?, 1)", [(key,) for key in keys[:30]])
    old.commit()
    old.close()
    store = Store(path)
    try:
        assert _marks(store) == {"spans_recent": 0, "spans_seen": 30}
        tables = {name for (name,) in store.conn.execute("SELECT name FROM sqlite_master")}
        assert "spans_recent" not in tables
        stage = DedupStage(stats=CollectorStats())
        stage.setup(store)
        assert _commit(store, stage, keys) == keys[30:]
    finally:
        store.close()



def test_a_clean_close_moves_the_recent_marks_into_spans_seen(tmp_path: Path) -> None:
    """So that any version of the collector (one that predates the blocks too) finds them."""
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats())
    keys = _keys(20)
    try:
        assert _commit(store, stage, [*keys[:10], b""]) == [*keys[:10], b""]
        assert _marks(store) == {"spans_recent": 11, "spans_seen": 0}
    finally:
        store.close()
    reopened = sqlite3.connect(str(tmp_path / "dedup.db"))
    try:
        assert sorted(key for (key,) in reopened.execute("SELECT k FROM spans_seen")) == [b"", *keys[:10]]
        assert reopened.execute("SELECT count(*) FROM spans_recent_blocks").fetchone() == (0,)
    finally:
        reopened.close()


def test_a_store_of_a_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    path = str(tmp_path / "newer.db")
    Store(path).close()
    newer = sqlite3.connect(path)
    newer.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    newer.commit()
    newer.close()
    with pytest.raises(StoreError, match=r"newer collector.*schema version 99"):
        Store(path)


def test_a_store_path_that_cannot_be_opened_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(StoreError, match=r"cannot open the SQLite store"):
        Store(str(folder))
