"""The shared ledger backend: Redis, for several collector replicas (the `[redis]` extra).

Atomicity is optimistic, Redis's `WATCH`/`MULTI`/`EXEC`: a transaction WATCHes every key it
reads, buffers its writes, and commits them in one `MULTI`/`EXEC`; if another client changed
a watched key meanwhile, `EXEC` fails and the whole operation runs again on fresh data. So
two replicas cannot both take the last dollar, and the decision logic stays the same Python
code as for SQLite (`ledger.Ledger`), not a second copy in Lua.

Layout under a prefix (default `cognocient:budget`):
  {p}:spend:{key}       string, Decimal USD
  {p}:rsv:{key}         hash reservation id -> "usd expires_at" (what is held against the key)
  {p}:rsvsum:{key}      string, the sum of that hash (read instead of the hash: a check costs the
                        same however many reservations are in flight on the key)
  {p}:rsvexp:{key}      sorted set reservation id -> expires_at: the reservations of a key that
                        expired are subtracted from its sum and removed when the key is next read
  {p}:rsvkeys:{id}      string, the keys a reservation holds, newline-separated
  {p}:acct:{span_id}    "1" while the span id is remembered as counted
  {p}:block:{run_key}   "budget step at"
Keys expire on their own (Redis TTLs), so there is nothing to purge. A key's hash, sum and sorted
set get the same TTLs (the longest reservation's, plus a grace), so they go together; a sum that
is missing while its hash is not (hashes written before the sums existed) is summed once.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from .model import ZERO, Reservation, RunBlock

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the Redis budget store needs the [redis] extra: pip install 'cognocient-otel[redis]'"
    ) from exc

__all__ = ["RedisLedgerStore", "RedisLedgerTxn"]

T = TypeVar("T")
MAX_ATTEMPTS = 50
_RESERVATION_GRACE_SECONDS = 60

Held = tuple[Decimal, float]  # (usd, expires_at) of one reservation on one key


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _held(raw: Any) -> Held | None:
    if raw is None:
        return None
    usd, expires_at = _text(raw).split(" ")
    return Decimal(usd), float(expires_at)


class RedisLedgerTxn:
    """Reads WATCH and cache; writes are buffered and applied to the cache (read-your-writes).

    `reader` is a client whose own connection `prefetch` reads through in one round trip, after
    WATCHing every key it reads: a change after the WATCH fails the EXEC as usual.
    """

    def __init__(self, pipe: Any, prefix: str, now: float, reader: Any) -> None:
        self._pipe = pipe
        self._p = prefix
        self._now = now
        self._reader = reader
        self._watched: set[str] = set()
        self._values: dict[str, Any] = {}
        self._fields: dict[tuple[str, str], Held | None] = {}  # (hash name, reservation id)
        self._totals: dict[str, Decimal] = {}  # key -> what its present reservations hold
        self._swept: set[str] = set()  # keys whose expired reservations were subtracted
        self._dirty: dict[str, float] = {}  # key -> latest expiry its TTL must cover (0: keep)
        self.writes: list[Callable[[Any], None]] = []

    def _watch(self, names: list[str]) -> None:
        new = [name for name in names if name not in self._watched]
        if new:
            self._pipe.watch(*new)
            self._watched.update(new)

    def _read(self, name: str, fetch: Callable[[], Any]) -> Any:
        if name not in self._values:
            self._watch([name])
            self._values[name] = fetch()
        return self._values[name]

    def _ttl(self, until: float) -> int:
        return max(1, int(until - self._now) + 1)

    # -- one read for a check ------------------------------------------------------------------
    def prefetch(self, keys: list[str], reservation_ids: list[str], run_keys: list[str], now: float) -> None:
        """WATCH everything a check reads, then read it in one pipelined round trip."""
        p = self._p
        keys = [key for key in dict.fromkeys(keys) if key not in self._totals]
        ids = [rid for rid in dict.fromkeys(reservation_ids) if rid]
        runs = list(dict.fromkeys(run_keys))
        if not (keys or ids or runs):
            return
        names = [f"{p}:{kind}:{key}" for key in keys for kind in ("spend", "rsvsum", "rsv", "rsvexp")]
        names += [f"{p}:rsvkeys:{rid}" for rid in ids] + [f"{p}:block:{key}" for key in runs]
        self._watch(names)
        with self._reader.pipeline(transaction=False) as batch:
            for key in keys:
                batch.get(f"{p}:spend:{key}")
                batch.get(f"{p}:rsvsum:{key}")
                batch.hlen(f"{p}:rsv:{key}")
                batch.zrangebyscore(f"{p}:rsvexp:{key}", "-inf", now)
                if ids:
                    batch.hmget(f"{p}:rsv:{key}", ids)
            for rid in ids:
                batch.get(f"{p}:rsvkeys:{rid}")
            for key in runs:
                batch.get(f"{p}:block:{key}")
            results = iter(batch.execute())
        for key in keys:
            self._values[f"{p}:spend:{key}"] = next(results)
            total, count, expired = next(results), next(results), next(results)
            if ids:
                for rid, raw in zip(ids, next(results), strict=True):
                    self._fields[(f"{p}:rsv:{key}", rid)] = _held(raw)
            if total is not None:
                self._totals[key] = Decimal(_text(total))
            elif not count:
                self._totals[key] = ZERO  # a new key: nothing held
            self._sweep(key, now, [_text(rid) for rid in expired])
        for name in names[4 * len(keys):]:
            self._values[name] = next(results)

    # -- spend ---------------------------------------------------------------------------------
    def spend(self, key: str) -> Decimal:
        name = f"{self._p}:spend:{key}"
        raw = self._read(name, lambda: self._pipe.get(name))
        return Decimal(_text(raw)) if raw is not None else ZERO

    def add_spend(self, key: str, amount: Decimal, *, keep_until: float) -> None:
        name = f"{self._p}:spend:{key}"
        total = str(self.spend(key) + amount)
        self._values[name] = total
        ttl = self._ttl(keep_until)
        self.writes.append(lambda pipe: pipe.set(name, total, ex=ttl))

    def spends(self, keys: list[str]) -> dict[str, Decimal]:
        return {key: self.spend(key) for key in keys}

    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        for key, (amount, keep_until) in amounts.items():
            self.add_spend(key, amount, keep_until=keep_until)

    # -- reservations --------------------------------------------------------------------------
    def _field(self, key: str, rid: str) -> Held | None:
        name = f"{self._p}:rsv:{key}"
        if (name, rid) not in self._fields:
            self._watch([name])
            self._fields[(name, rid)] = _held(self._pipe.hget(name, rid))
        return self._fields[(name, rid)]

    def _total(self, key: str) -> Decimal:
        """What the key's present (not yet swept) reservations hold."""
        if key not in self._totals:
            name = f"{self._p}:rsvsum:{key}"
            raw = self._read(name, lambda: self._pipe.get(name))
            if raw is not None:
                self._totals[key] = Decimal(_text(raw))
            else:
                self._sum_hash(key)
        return self._totals[key]

    def _sum_hash(self, key: str) -> None:
        """A key without a sum: add its hash up once (and index its reservations by expiry)."""
        name = f"{self._p}:rsv:{key}"
        self._watch([name])
        held = {_text(rid): _held(value) for rid, value in self._pipe.hgetall(name).items()}
        total = ZERO
        for rid, value in held.items():
            self._fields[(name, rid)] = value
            total += value[0] if value else ZERO
        self._totals[key] = total
        if held:
            scores = {rid: value[1] for rid, value in held.items() if value}
            self.writes.append(lambda pipe: pipe.zadd(f"{self._p}:rsvexp:{key}", scores))
            self._dirty[key] = max(scores.values(), default=0.0)

    def _sweep(self, key: str, now: float, expired: list[str] | None = None) -> None:
        """Subtract and remove the key's reservations expired at `now` (once per transaction)."""
        if key in self._swept:
            return
        self._swept.add(key)
        total = self._total(key)
        rsv, rsvexp = f"{self._p}:rsv:{key}", f"{self._p}:rsvexp:{key}"
        if expired is None:
            self._watch([rsvexp])
            expired = [_text(rid) for rid in self._pipe.zrangebyscore(rsvexp, "-inf", now)]
        # Hashes summed just now were indexed in this transaction: their expired fields are known.
        expired += [
            rid for (name, rid), value in self._fields.items()
            if name == rsv and value is not None and value[1] <= now and rid not in expired
        ]
        if not expired:
            return
        unknown = [rid for rid in expired if (rsv, rid) not in self._fields]
        if unknown:
            self._watch([rsv])
            for rid, raw in zip(unknown, self._pipe.hmget(rsv, unknown), strict=True):
                self._fields[(rsv, rid)] = _held(raw)
        for rid in expired:
            held = self._fields[(rsv, rid)]
            if held is not None:
                total -= held[0]
            self._fields[(rsv, rid)] = None
        self._totals[key] = total
        self._dirty.setdefault(key, 0.0)

        def write(pipe: Any) -> None:
            pipe.hdel(rsv, *expired)
            pipe.zrem(rsvexp, *expired)

        self.writes.append(write)

    def reserved_many(self, keys: list[str], now: float) -> dict[str, Decimal]:
        return {key: self.reserved(key, now) for key in keys}

    def reserved(self, key: str, now: float) -> Decimal:
        self._sweep(key, now)
        return self._totals[key]

    def _keys_of(self, reservation_id: str) -> tuple[str, ...]:
        name = f"{self._p}:rsvkeys:{reservation_id}"
        raw = self._read(name, lambda: self._pipe.get(name))
        return tuple(_text(raw).split("\n")) if raw else ()

    def reservation(self, reservation_id: str, now: float) -> Reservation | None:
        keys = self._keys_of(reservation_id)
        if not keys:
            return None
        held = self._field(keys[0], reservation_id)
        if held is None or held[1] <= now:
            return None
        return Reservation(reservation_id, keys, held[0], held[1])

    def _change(self, key: str, rid: str, held: Held | None) -> None:
        """Set the key's field of `rid` to `held` (None: remove it), keeping the key's sum."""
        old = self._field(key, rid)
        total = self._total(key)
        if old is not None:
            total -= old[0]
        if held is not None:
            total += held[0]
        self._totals[key] = total
        self._fields[(f"{self._p}:rsv:{key}", rid)] = held
        until = held[1] if held is not None else 0.0
        self._dirty[key] = max(self._dirty.get(key, 0.0), until)

    def put_reservation(self, reservation: Reservation) -> None:
        rid, keys = reservation.id, reservation.keys
        gone = [key for key in self._keys_of(rid) if key not in keys]
        for key in gone:
            self._change(key, rid, None)
        for key in keys:
            self._change(key, rid, (reservation.amount, reservation.expires_at))
        self._values[f"{self._p}:rsvkeys:{rid}"] = "\n".join(keys)
        value = f"{reservation.amount} {reservation.expires_at!r}"
        ttl = self._ttl(reservation.expires_at + _RESERVATION_GRACE_SECONDS)

        def write(pipe: Any) -> None:
            pipe.set(f"{self._p}:rsvkeys:{rid}", "\n".join(keys), ex=ttl)
            for key in gone:
                pipe.hdel(f"{self._p}:rsv:{key}", rid)
                pipe.zrem(f"{self._p}:rsvexp:{key}", rid)
            for key in keys:
                pipe.hset(f"{self._p}:rsv:{key}", rid, value)
                pipe.zadd(f"{self._p}:rsvexp:{key}", {rid: reservation.expires_at})

        self.writes.append(write)

    def drop_reservation(self, reservation: Reservation) -> None:
        rid, keys = reservation.id, reservation.keys
        for key in keys:
            self._change(key, rid, None)
        self._values[f"{self._p}:rsvkeys:{rid}"] = None

        def write(pipe: Any) -> None:
            pipe.delete(f"{self._p}:rsvkeys:{rid}")
            for key in keys:
                pipe.hdel(f"{self._p}:rsv:{key}", rid)
                pipe.zrem(f"{self._p}:rsvexp:{key}", rid)

        self.writes.append(write)

    def write_totals(self, pipe: Any) -> None:
        """Queue the sums this transaction changed (after its other writes, in the MULTI)."""
        for key, until in self._dirty.items():
            names = [f"{self._p}:{kind}:{key}" for kind in ("rsvsum", "rsv", "rsvexp")]
            pipe.set(names[0], str(self._totals[key]), keepttl=True)
            if until:
                # The three live as long as the key's longest reservation: set a TTL if one has
                # none, lengthen it otherwise, never shorten it.
                ttl = self._ttl(until + _RESERVATION_GRACE_SECONDS)
                for name in names:
                    pipe.expire(name, ttl, nx=True)
                    pipe.expire(name, ttl, gt=True)

    # -- span ids and blocks -------------------------------------------------------------------
    def is_accounted(self, span_id: str) -> bool:
        name = f"{self._p}:acct:{span_id}"
        return bool(self._read(name, lambda: self._pipe.exists(name)))

    def mark_accounted(self, span_id: str, *, keep_until: float) -> bool:
        if self.is_accounted(span_id):
            return False
        name = f"{self._p}:acct:{span_id}"
        self._values[name] = 1
        ttl = self._ttl(keep_until)
        self.writes.append(lambda pipe: pipe.set(name, "1", ex=ttl))
        return True

    def run_block(self, key: str) -> RunBlock | None:
        name = f"{self._p}:block:{key}"
        raw = self._read(name, lambda: self._pipe.get(name))
        if not raw:
            return None
        budget, step, at = _text(raw).rsplit(" ", 2)
        return RunBlock(budget, int(step), float(at))

    def set_run_block(self, key: str, block: RunBlock, *, keep_until: float) -> None:
        if self.run_block(key) is not None:
            return
        name = f"{self._p}:block:{key}"
        value = f"{block.budget} {block.step} {block.at!r}"
        self._values[name] = value
        ttl = self._ttl(keep_until)
        self.writes.append(lambda pipe: pipe.set(name, value, ex=ttl))


class RedisLedgerStore:
    """A ledger in Redis: `RedisLedgerStore("redis://127.0.0.1:6379/0")`."""

    def __init__(self, url: str, *, prefix: str = "cognocient:budget", timeout_seconds: float = 2.0) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self.prefix = prefix
        self.client.ping()

    def run(self, operation: Callable[[RedisLedgerTxn], T], *, now: float) -> T:
        for _ in range(MAX_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                txn = RedisLedgerTxn(pipe, self.prefix, now, reader=self.client)
                try:
                    result = operation(txn)
                    pipe.multi()
                    for write in txn.writes:
                        write(pipe)
                    txn.write_totals(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue  # another check changed what we read: decide again on fresh data
        raise RuntimeError(
            f"budget ledger: Redis transaction still conflicting after {MAX_ATTEMPTS} attempts"
        )

    def purge(self, now: float) -> None:
        """Nothing to do: Redis expires the keys itself."""

    def close(self) -> None:
        self.client.close()
