"""``redis://host:port/db?prefix=NAME``: the log shared by every node of a deployment.

Every write is a Lua script, so each is atomic and ``added`` is one global sequence for all nodes.
:meth:`RedisStore.append` is one script call per batch: per entry, dedupe by id, ``INCR`` the head,
store the entry, ``XADD`` it into each index stream with stream id ``<added>-0``, ``PUBLISH`` it on
each index's channel.

Keys (``P`` is the prefix, ``logsync`` by default; every key and channel starts with ``P:``):

- ``P:head`` — string: the highest ``added`` (``INCR``; never decremented).
- ``P:e:<added>`` — hash, one per entry: ``d`` the encoded immutable part (msgpack
  ``[id, time, action, indexes, exclude_clients, subprotocol]``), ``s`` status, ``i`` id, ``t`` time,
  ``r`` how many index filings remain, ``n`` the tag of the append call that created it.
- ``P:idx:<index>`` — stream: one item per filing, id ``<added>-0``, field ``t`` = the entry's time.
  ``XRANGE (<after>-0 + COUNT n`` reads after a cursor; ``XTRIM MINID`` trims the oldest.
- ``P:indexes`` — set of index names ever filed into (for :meth:`RedisStore.trim` and stats).
- ``P:horizon`` — hash index → highest ``added`` trimmed from it.
- ``P:ids`` — hash id → status: the dedupe table; it outlives trimmed entries until ``forget_ids``.
- ``P:byid`` — hash id → ``added`` of the entries still kept (its length is the entry count).
- ``P:waiting`` — sorted set of ``added`` whose status is ``waiting`` (score = added).
- ``P:unfiled`` — sorted set of ``added`` left in no index: candidates for removal by ``trim``.
- ``P:gone`` — sorted set of ids whose entries ``trim`` removed, scored by time (for ``forget_ids``).
- ``P:epoch`` — string: a random id, set once (``SET NX``) — see :meth:`LogStore.epoch`.
- ``P:rec:<kind>:<key>`` — string: a record's value, with its TTL as the key's expiry; and
  ``P:recs:<kind>`` — sorted set (all scores 0) of the record keys, for listing by prefix
  (``ZRANGEBYLEX``); members whose record expired are removed as listing finds them.
- channel ``P:pub:<index>`` — each new entry filed under ``index``, as ``msgpack [added, status, [...]]``
  (:func:`decode_published`).

The scripts build key names from the prefix rather than taking them in ``KEYS``: fine on one
primary (the deployment this store is for). On Redis Cluster every key would need the same slot,
i.e. a prefix that is a hash tag such as ``{logsync}``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from logsync.log.entry import Entry, NewEntry
from logsync.log.store import Appended, LogStats, LogStore, ReadResult, StoreUnavailable

DEFAULT_PREFIX = "logsync"
PAGE = 500  # items per call of the paged operations (trim, sweep, forget, cursor_for_time)


# Each script starts with this: ARGV[1] is the key prefix.
_PRELUDE = """
local P = ARGV[1]
local function ekey(a) return P .. ':e:' .. a end
"""

# ARGV: prefix, call tag, count, then per entry: id, time, status, blob, n, n distinct indexes.
# Returns per entry {1, added} (created; also when this very call already created it and is being
# retried after a lost reply: same tag), {0, added, blob, status} (known id, entry kept) or
# {0, '0', nil, status} (known id, entry trimmed).
_APPEND = (
    "#!lua\n"
    + _PRELUDE
    + """
local tag, count = ARGV[2], tonumber(ARGV[3])
local ids, byid = P .. ':ids', P .. ':byid'
local out = {}
local pos = 4
for i = 1, count do
  local id, time, status, blob = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
  local first = pos + 5
  pos = first + tonumber(ARGV[pos + 4])
  local mine = tag .. ':' .. i
  local known = redis.call('HGET', ids, id)
  if known then
    local a = redis.call('HGET', byid, id)
    if not a then
      out[i] = {0, '0', false, known}
    else
      local e = redis.call('HMGET', ekey(a), 'n', 'd', 's')
      if e[1] == mine then out[i] = {1, a} else out[i] = {0, a, e[2], e[3]} end
    end
  else
    local a = string.format('%d', redis.call('INCR', P .. ':head'))
    redis.call('HSET', ekey(a), 'd', blob, 's', status, 'i', id, 't', time, 'r', pos - first, 'n', mine)
    redis.call('HSET', ids, id, status)
    redis.call('HSET', byid, id, a)
    if status == 'waiting' then redis.call('ZADD', P .. ':waiting', a, a) end
    if pos == first then redis.call('ZADD', P .. ':unfiled', a, a) end
    local payload = '\\147' .. cmsgpack.pack(tonumber(a)) .. cmsgpack.pack(status) .. blob
    local sid = a .. '-0'
    for j = first, pos - 1 do
      redis.call('XADD', P .. ':idx:' .. ARGV[j], sid, 't', time)
      redis.call('SADD', P .. ':indexes', ARGV[j])
      redis.call('PUBLISH', P .. ':pub:' .. ARGV[j], payload)
    end
    out[i] = {1, a}
  end
end
return out
"""
)

# ARGV: prefix, after, limit, indexes... Returns {more, added, blob, status, added, blob, status, ...}.
_READ = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + """
local after, limit = ARGV[2], tonumber(ARGV[3])
local start = '(' .. after .. '-0'
local seen, list = {}, {}
for i = 4, #ARGV do
  local rows = redis.call('XRANGE', P .. ':idx:' .. ARGV[i], start, '+', 'COUNT', limit + 1)
  for _, row in ipairs(rows) do
    local a = tonumber(string.match(row[1], '^%d+'))
    if not seen[a] then
      seen[a] = true
      list[#list + 1] = a
    end
  end
end
table.sort(list)
local out = {0}
if #list > limit then out[1] = 1 end
for k = 1, math.min(#list, limit) do
  local a = string.format('%d', list[k])
  local e = redis.call('HMGET', ekey(a), 'd', 's')
  out[#out + 1] = a
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
end
return out
"""
)

# ARGV: prefix, id. Returns {added, blob, status} or nil.
_GET = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + """
local a = redis.call('HGET', P .. ':byid', ARGV[2])
if not a then return false end
local e = redis.call('HMGET', ekey(a), 'd', 's')
return {a, e[1], e[2]}
"""
)

# ARGV: prefix, limit (> 0). Returns {added, blob, status, ...} of the oldest waiting entries.
_WAITING = (
    "#!lua flags=no-writes\n"
    + _PRELUDE
    + """
local out = {}
for _, a in ipairs(redis.call('ZRANGE', P .. ':waiting', 0, tonumber(ARGV[2]) - 1)) do
  local e = redis.call('HMGET', ekey(a), 'd', 's')
  out[#out + 1] = a
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
end
return out
"""
)

# ARGV: prefix, id, status.
_SET_STATUS = (
    "#!lua\n"
    + _PRELUDE
    + """
local id, status = ARGV[2], ARGV[3]
if redis.call('HEXISTS', P .. ':ids', id) == 1 then redis.call('HSET', P .. ':ids', id, status) end
local a = redis.call('HGET', P .. ':byid', id)
if a then
  redis.call('HSET', ekey(a), 's', status)
  if status == 'waiting' then
    redis.call('ZADD', P .. ':waiting', a, a)
  else
    redis.call('ZREM', P .. ':waiting', a)
  end
end
return 0
"""
)

# ARGV: prefix, keep_last (-1: none), before_time_ms ('' : none), budget, indexes...
# Per index, removes the oldest filings: all but the newest keep_last, then on while the entry time
# is before before_time_ms; raises the index's horizon; an entry whose last filing goes is queued
# in P:unfiled. Stops after `budget` filings. Returns {filings removed, indexes finished}.
_TRIM = (
    "#!lua\n"
    + _PRELUDE
    + """
local keep = tonumber(ARGV[2])
local before = nil
if ARGV[3] ~= '' then before = tonumber(ARGV[3]) end
local budget = tonumber(ARGV[4])
local removed, finished = 0, 0
for i = 5, #ARGV do
  local index = ARGV[i]
  local key = P .. ':idx:' .. index
  local cut = 0
  if keep >= 0 then cut = redis.call('XLEN', key) - keep end
  local here, last, start, state = 0, nil, '-', nil
  while state == nil do
    local rows = redis.call('XRANGE', key, start, '+', 'COUNT', 256)
    if #rows == 0 then state = 'done' end
    for _, row in ipairs(rows) do
      if not (here < cut or (before and tonumber(row[2][2]) < before)) then
        state = 'done'
        break
      end
      if removed >= budget then
        state = 'budget'
        break
      end
      local a = string.match(row[1], '^%d+')
      if redis.call('HINCRBY', ekey(a), 'r', -1) <= 0 then
        redis.call('ZADD', P .. ':unfiled', a, a)
      end
      here = here + 1
      removed = removed + 1
      last = a
    end
    if state == nil then start = '(' .. rows[#rows][1] end
  end
  if last then
    redis.call('XTRIM', key, 'MINID', string.format('%d', tonumber(last) + 1) .. '-0')
    local h = redis.call('HGET', P .. ':horizon', index)
    if not h or tonumber(h) < tonumber(last) then redis.call('HSET', P .. ':horizon', index, last) end
  end
  if state == 'budget' then break end
  finished = finished + 1
end
return {removed, finished}
"""
)

# ARGV: prefix, before_time_ms ('' : none), budget, after. Removes unfiled entries (after `after`
# in added order) that are not waiting and, when before_time_ms is given, older than it; their ids
# stay in P:ids and go to P:gone. Returns {entries removed, candidates scanned, last scanned}.
_SWEEP = (
    "#!lua\n"
    + _PRELUDE
    + """
local before = nil
if ARGV[2] ~= '' then before = tonumber(ARGV[2]) end
local unfiled = P .. ':unfiled'
local rows = redis.call('ZRANGEBYSCORE', unfiled, '(' .. ARGV[4], '+inf', 'LIMIT', 0, tonumber(ARGV[3]))
local removed = 0
for _, a in ipairs(rows) do
  local e = redis.call('HMGET', ekey(a), 's', 't', 'i')
  if not e[3] then
    redis.call('ZREM', unfiled, a)
  elseif e[1] ~= 'waiting' and (not before or tonumber(e[2]) < before) then
    redis.call('DEL', ekey(a))
    redis.call('HDEL', P .. ':byid', e[3])
    redis.call('ZREM', unfiled, a)
    redis.call('ZREM', P .. ':waiting', a)
    redis.call('ZADD', P .. ':gone', e[2], e[3])
    removed = removed + 1
  end
end
return {removed, #rows, rows[#rows] or ARGV[4]}
"""
)

# ARGV: prefix, before_time_ms, budget. Ends dedupe for removed entries' ids older than that.
_FORGET = (
    "#!lua\n"
    + _PRELUDE
    + """
local gone = P .. ':gone'
local rows = redis.call('ZRANGEBYSCORE', gone, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(rows) do redis.call('HDEL', P .. ':ids', id) end
if #rows > 0 then redis.call('ZREM', gone, unpack(rows)) end
return #rows
"""
)


def parse_url(url: str) -> tuple[str, str]:
    """Split ``redis://…?prefix=NAME&…`` into the URL for redis-py (without ``prefix``) and the prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    if not prefix:
        raise ValueError(f"empty prefix in log store URL {url!r}")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def encode_entry(new: NewEntry) -> bytes:
    """The immutable part of an entry as stored and published (everything but ``added``/status)."""
    data: bytes = msgpack.packb(
        [new.id, new.time, new.action, new.indexes, new.exclude_clients, new.subprotocol],
        use_bin_type=True,
    )
    return data


def decode_entry(added: int, blob: bytes, status: str) -> Entry:
    """An :class:`Entry` from its stored blob (:func:`encode_entry`)."""
    action_id, time, action, indexes, exclude_clients, subprotocol = msgpack.unpackb(
        blob, raw=False
    )
    return Entry(added, action_id, time, action, indexes, exclude_clients, subprotocol, status)


def decode_published(payload: bytes) -> Entry:
    """The :class:`Entry` a message on ``{prefix}:pub:<index>`` carries (as it was when appended)."""
    added, status, fields = msgpack.unpackb(payload, raw=False)
    action_id, time, action, indexes, exclude_clients, subprotocol = fields
    return Entry(added, action_id, time, action, indexes, exclude_clients, subprotocol, status)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(flat: Sequence[Any]) -> list[Entry]:
    """Entries from a flat ``[added, blob, status, …]`` script reply."""
    return [
        decode_entry(int(flat[i]), flat[i + 1], flat[i + 2].decode())
        for i in range(0, len(flat), 3)
    ]


class RedisStore(LogStore):
    """A :class:`LogStore` in Redis (7.0 or later), shared by all nodes that use the same prefix."""

    def __init__(self, url: str, *, retries: int = 6) -> None:
        """``retries``: how many times a call that lost its connection is re-sent (with backoff
        growing to 1 s) before it raises :class:`StoreUnavailable`."""
        redis_url, self.prefix = parse_url(url)
        self.redis_url = (
            redis_url  # without the prefix: what a broker on the same Redis connects to
        )
        parts = urlsplit(redis_url)
        self._where = f"{parts.hostname or parts.path}:{parts.port or 6379}"
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url,
            # Concurrent calls beyond this many wait for a connection (the URL may say otherwise).
            max_connections=32,
            timeout=30,
            socket_connect_timeout=5.0,
            socket_timeout=30.0,
            # Rides over a restart or failover; append is safe to retry (the call tag), the other
            # writes are idempotent.
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.02), retries=retries),
        )
        self._redis = redis.asyncio.Redis.from_pool(pool)
        self._append = self._redis.register_script(_APPEND)
        self._read = self._redis.register_script(_READ)
        self._get = self._redis.register_script(_GET)
        self._waiting = self._redis.register_script(_WAITING)
        self._set_status = self._redis.register_script(_SET_STATUS)
        self._trim = self._redis.register_script(_TRIM)
        self._sweep = self._redis.register_script(_SWEEP)
        self._forget = self._redis.register_script(_FORGET)
        self._in_flight = 0

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def channel(self, index: str) -> str:
        """The pub/sub channel on which new entries filed under ``index`` are published."""
        return f"{self.prefix}:pub:{index}"

    @property
    def queue_depth(self) -> int:
        """Store calls in flight: waiting for a pooled connection or for Redis's answer. (Redis
        has no queue of its own to read; a call's commands are counted once, as one call.)"""
        return self._in_flight

    @contextlib.contextmanager
    def _available(self) -> Iterator[None]:
        self._in_flight += 1
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise StoreUnavailable(
                f"Redis log store at {self._where} unavailable: {error}"
            ) from error
        finally:
            self._in_flight -= 1

    async def append(self, entries: Sequence[NewEntry]) -> list[Appended]:
        if not entries:
            return []
        args: list[str | bytes | int] = [self.prefix, os.urandom(8).hex(), len(entries)]
        for new in entries:
            indexes = list(dict.fromkeys(new.indexes))
            args += [new.id, int(new.time), new.status, encode_entry(new), len(indexes), *indexes]
        with self._available():
            rows = await self._append(args=args)
        results = []
        for new, row in zip(entries, rows, strict=True):
            if row[0] == 1:
                results.append(Appended(Entry.from_new(int(row[1]), new), created=True))
            elif row[2] is None:  # known id whose entry was trimmed
                known = Entry.from_new(0, new)
                known.status = row[3].decode()
                results.append(Appended(known, created=False))
            else:
                results.append(Appended(decode_entry(int(row[1]), row[2], row[3].decode()), False))
        return results

    async def read(self, indexes: Collection[str], after: int, limit: int) -> ReadResult:
        if not indexes:
            return ReadResult([], after, False)
        with self._available():
            reply = await self._read(args=[self.prefix, max(after, 0), max(limit, 0), *indexes])
        found = _entries(reply[1:])
        return ReadResult(found, found[-1].added if found else after, reply[0] == 1)

    async def get(self, action_id: str) -> Entry | None:
        with self._available():
            reply = await self._get(args=[self.prefix, action_id])
        return None if reply is None else _entries(reply)[0]

    async def seen(self, action_id: str) -> str | None:
        with self._available():
            status = await self._redis.hget(self.key("ids"), action_id)
        return None if status is None else _text(status)

    async def set_status(self, action_id: str, status: str) -> None:
        with self._available():
            await self._set_status(args=[self.prefix, action_id, status])

    async def head(self) -> int:
        with self._available():
            value = await self._redis.get(self.key("head"))
        return int(value or 0)

    async def waiting(self, limit: int) -> list[Entry]:
        if limit <= 0:
            return []
        with self._available():
            return _entries(await self._waiting(args=[self.prefix, limit]))

    async def cursor_for_time(self, index: str, time_ms: int) -> int:
        # The head first: an entry appended while the index is scanned has a higher added, so a
        # reader resuming from this head still gets it.
        head = await self.head()
        key = self.key(f"idx:{index}")
        start = "-"
        with self._available():
            while True:
                rows: Any = await self._redis.xrange(key, start, "+", count=PAGE)
                for stream_id, fields in rows:
                    if int(fields[b"t"]) >= time_ms:
                        return int(stream_id.split(b"-", 1)[0]) - 1
                if len(rows) < PAGE:
                    return head
                start = "(" + rows[-1][0].decode()

    async def horizon(self, index: str) -> int:
        with self._available():
            value = await self._redis.hget(self.key("horizon"), index)
        return int(value or 0)

    async def trim(
        self,
        *,
        index_prefix: str = "",
        before_time_ms: int | None = None,
        keep_last: int | None = None,
    ) -> int:
        keep = -1 if keep_last is None else max(keep_last, 0)
        before = "" if before_time_ms is None else str(int(before_time_ms))
        removed = 0
        with self._available():
            if keep_last is not None or before_time_ms is not None:
                cursor = 0
                pattern = _glob_escape(index_prefix) + "*"
                while True:
                    cursor, names = await self._redis.sscan(
                        self.key("indexes"), cursor, match=pattern, count=PAGE
                    )
                    pending = sorted(names)
                    while pending:
                        done, finished = await self._trim(
                            args=[self.prefix, keep, before, PAGE, *pending[:PAGE]]
                        )
                        removed += int(done)
                        pending = pending[int(finished) :]
                    if cursor == 0:
                        break
            after = b"0"
            while True:
                done, scanned, after = await self._sweep(args=[self.prefix, before, PAGE, after])
                removed += int(done)
                if scanned < PAGE:
                    break
        return removed

    async def forget_ids(self, before_time_ms: int) -> int:
        forgotten = 0
        with self._available():
            while True:
                done: int = await self._forget(args=[self.prefix, int(before_time_ms), PAGE])
                forgotten += done
                if done < PAGE:
                    return forgotten

    async def stats(self) -> LogStats:
        with self._available():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(self.key("head"))
                pipe.hlen(self.key("byid"))
                pipe.hlen(self.key("ids"))
                pipe.scard(self.key("indexes"))
                head, entries, ids, indexes = await pipe.execute()
        return LogStats(int(head or 0), entries, ids, indexes)

    # -- records -------------------------------------------------------------------------------

    async def epoch(self) -> str:
        with self._available():
            await self._redis.set(self.key("epoch"), os.urandom(8).hex(), nx=True)
            value = await self._redis.get(self.key("epoch"))
        assert value is not None  # set just above, never deleted
        return _as_bytes(value).decode()

    def _record_key(self, kind: str, key: str) -> str:
        if ":" in kind:
            raise ValueError(f"a record kind has no ':' ({kind!r})")
        return self.key(f"rec:{kind}:{key}")

    async def get_record(self, kind: str, key: str) -> bytes | None:
        with self._available():
            value = await self._redis.get(self._record_key(kind, key))
        return None if value is None else _as_bytes(value)

    async def put_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> None:
        with self._available():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._record_key(kind, key), value, px=ttl_ms)
                pipe.zadd(self.key(f"recs:{kind}"), {key: 0})
                await pipe.execute()

    async def add_record(
        self, kind: str, key: str, value: bytes, *, ttl_ms: int | None = None
    ) -> bool:
        with self._available():
            added = await self._redis.set(self._record_key(kind, key), value, px=ttl_ms, nx=True)
            if added:
                await self._redis.zadd(self.key(f"recs:{kind}"), {key: 0})
        return bool(added)

    async def delete_record(self, kind: str, key: str) -> bool:
        with self._available():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._record_key(kind, key))
                pipe.zrem(self.key(f"recs:{kind}"), key)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    async def list_records(
        self, kind: str, prefix: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        start = f"[{prefix}" if prefix else "-"
        end = f"[{prefix}\U0010ffff" if prefix else "+"
        with self._available():
            while len(found) < limit:
                wanted = limit - len(found)
                keys = await self._redis.zrangebylex(
                    self.key(f"recs:{kind}"), start, end, start=0, num=wanted
                )
                names = [_as_bytes(k).decode() for k in keys]
                values = await self._redis.mget([self._record_key(kind, n) for n in names])
                expired = [n for n, v in zip(names, values, strict=True) if v is None]
                if expired:
                    await self._redis.zrem(self.key(f"recs:{kind}"), *expired)
                found += [
                    (n, _as_bytes(v)) for n, v in zip(names, values, strict=True) if v is not None
                ]
                if len(keys) < wanted:
                    break
                start = f"({names[-1]}"
        return found

    async def close(self) -> None:
        await self._redis.aclose()


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
