"""The dedup stage on a real store: each key passes once, whatever its length."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.model import SpanBatch, SpanRecord
from collector.rollup import RunState
from collector.stages import DedupStage
from collector.stats import CollectorStats
from collector.store import Store, UnitOfWork


def _record(key: bytes) -> SpanRecord:
    record = SpanRecord("default", "run", "ab" * 16, "cd" * 8, "", "chat", 3, 1, 2)
    record.dedup_key = key
    return record


def _commit(store: Store, stage: DedupStage, keys: list[bytes]) -> list[bytes]:
    batch = SpanBatch([_record(key) for key in keys])
    uow = UnitOfWork(store, RunState())
    uow.begin()
    batch.uow = uow
    stage.process(batch)
    uow.commit()
    return [record.dedup_key for record in batch.records]


@pytest.mark.parametrize("size", [32, 24])  # 32: the decoder's keys; 24: keys tests build by hand
def test_each_key_passes_once_within_and_across_batches(tmp_path: Path, size: int) -> None:
    store = Store(str(tmp_path / "dedup.db"))
    stage = DedupStage(stats=CollectorStats())
    keys = [index.to_bytes(size, "big") for index in range(1, 1001)]
    try:
        assert _commit(store, stage, keys[:600] + keys[:3]) == keys[:600]  # a copy inside the batch
        assert _commit(store, stage, keys[590:]) == keys[600:]  # ten seen in the first batch
        assert _commit(store, stage, keys[::7]) == []
        stored = store.conn.execute("SELECT count(*), min(length(k)), max(length(k)) FROM spans_seen")
        assert stored.fetchone() == (1000, size, size)
    finally:
        store.close()
