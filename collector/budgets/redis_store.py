"""The shared ledger backend: Redis, for several collector replicas (the `[redis]` extra).

Atomicity is optimistic, Redis's `WATCH`/`MULTI`/`EXEC`: a transaction WATCHes every key it
reads, buffers its writes, and commits them in one `MULTI`/`EXEC`; if another client changed
a watched key meanwhile, `EXEC` fails and the whole operation runs again on fresh data. So
two replicas cannot both take the last dollar, and the decision logic stays the same Python
code as for SQLite (`ledger.Ledger`), not a second copy in Lua.

Layout under a prefix (default `cognocient:budget`):
  {p}:spend:{key}       string, Decimal USD
  {p}:rsv:{key}         hash reservation id -> "usd expires_at" (what is held against the key)
  {p}:rsvkeys:{id}      string, the keys a reservation holds, newline-separated
  {p}:acct:{span_id}    "1" while the span id is remembered as counted
  {p}:block:{run_key}   "budget step at"
Keys expire on their own (Redis TTLs), so there is nothing to purge.
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


class RedisLedgerTxn:
    """Reads WATCH and cache; writes are buffered and applied to the cache (read-your-writes)."""

    def __init__(self, pipe: Any, prefix: str, now: float) -> None:
        self._pipe = pipe
        self._p = prefix
        self._now = now
        self._watched: set[str] = set()
        self._values: dict[str, Any] = {}
        self.writes: list[Callable[[Any], None]] = []

    def _read(self, name: str, fetch: Callable[[], Any]) -> Any:
        if name not in self._values:
            if name not in self._watched:
                self._pipe.watch(name)
                self._watched.add(name)
            self._values[name] = fetch()
        return self._values[name]

    def _ttl(self, until: float) -> int:
        return max(1, int(until - self._now) + 1)

    def spend(self, key: str) -> Decimal:
        name = f"{self._p}:spend:{key}"
        raw = self._read(name, lambda: self._pipe.get(name))
        return Decimal(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else ZERO

    def add_spend(self, key: str, amount: Decimal, *, keep_until: float) -> None:
        name = f"{self._p}:spend:{key}"
        total = str(self.spend(key) + amount)
        self._values[name] = total
        ttl = self._ttl(keep_until)
        self.writes.append(lambda pipe: pipe.set(name, total, ex=ttl))

    def _held(self, key: str) -> dict[str, tuple[Decimal, float]]:
        name = f"{self._p}:rsv:{key}"

        def fetch() -> dict[str, tuple[Decimal, float]]:
            held = {}
            for rid, value in self._pipe.hgetall(name).items():
                usd, expires_at = value.decode().split(" ")
                held[rid.decode()] = (Decimal(usd), float(expires_at))
            return held

        return self._read(name, fetch)

    def spends(self, keys: list[str]) -> dict[str, Decimal]:
        return {key: self.spend(key) for key in keys}

    def add_spends(self, amounts: dict[str, tuple[Decimal, float]]) -> None:
        for key, (amount, keep_until) in amounts.items():
            self.add_spend(key, amount, keep_until=keep_until)

    def reserved_many(self, keys: list[str], now: float) -> dict[str, Decimal]:
        return {key: self.reserved(key, now) for key in keys}

    def reserved(self, key: str, now: float) -> Decimal:
        return sum((usd for usd, expires_at in self._held(key).values() if expires_at > now), ZERO)

    def reservation(self, reservation_id: str, now: float) -> Reservation | None:
        name = f"{self._p}:rsvkeys:{reservation_id}"
        raw = self._read(name, lambda: self._pipe.get(name))
        if not raw:
            return None
        keys = tuple((raw.decode() if isinstance(raw, bytes) else raw).split("\n"))
        held = self._held(keys[0]).get(reservation_id)
        if held is None or held[1] <= now:
            return None
        return Reservation(reservation_id, keys, held[0], held[1])

    def put_reservation(self, reservation: Reservation) -> None:
        rid, keys = reservation.id, reservation.keys
        value = f"{reservation.amount} {reservation.expires_at!r}"
        for key in keys:
            self._held(key)[rid] = (reservation.amount, reservation.expires_at)
        self._values[f"{self._p}:rsvkeys:{rid}"] = "\n".join(keys)
        ttl = self._ttl(reservation.expires_at + _RESERVATION_GRACE_SECONDS)
        # Expired fields of a key's hash are dropped when the key is next written.
        stale = {key: [r for r, (_, exp) in self._held(key).items() if exp <= self._now] for key in keys}

        def write(pipe: Any) -> None:
            pipe.set(f"{self._p}:rsvkeys:{rid}", "\n".join(keys), ex=ttl)
            for key in keys:
                name = f"{self._p}:rsv:{key}"
                if stale[key]:
                    pipe.hdel(name, *stale[key])
                pipe.hset(name, rid, value)
                # The hash lives as long as its longest reservation: set a TTL if it has none,
                # lengthen it otherwise, never shorten it.
                pipe.expire(name, ttl, nx=True)
                pipe.expire(name, ttl, gt=True)

        self.writes.append(write)

    def drop_reservation(self, reservation: Reservation) -> None:
        rid, keys = reservation.id, reservation.keys
        for key in keys:
            self._held(key).pop(rid, None)
        self._values[f"{self._p}:rsvkeys:{rid}"] = None

        def write(pipe: Any) -> None:
            pipe.delete(f"{self._p}:rsvkeys:{rid}")
            for key in keys:
                pipe.hdel(f"{self._p}:rsv:{key}", rid)

        self.writes.append(write)

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
        budget, step, at = (raw.decode() if isinstance(raw, bytes) else raw).rsplit(" ", 2)
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
                txn = RedisLedgerTxn(pipe, self.prefix, now)
                try:
                    result = operation(txn)
                    pipe.multi()
                    for write in txn.writes:
                        write(pipe)
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
