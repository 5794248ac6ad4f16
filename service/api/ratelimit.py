"""Sliding one-minute rate limits: submits per API key, measurement posts per device.

With a broker configured the window lives in Redis (one sorted set per key, trimmed and counted by
one Lua script), so every API replica shares it. Without one (tests, a process without Redis) it is
kept in this process's memory. A Redis that stops answering falls back to the memory window rather
than refusing every request: the limit then holds per replica until Redis is back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from edgedistill.service.queue import redis_ping_url

WINDOW_S = 60.0
log = logging.getLogger(__name__)


class Limiter(Protocol):
    per_minute: int

    def check(self, key: str) -> float | None:
        """Record a hit; None when allowed, else the seconds to wait before retrying."""
        ...


class RateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float | None:
        """Record a hit; None when allowed, else the seconds to wait before retrying."""
        if self.per_minute <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW_S:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(0.0, hits[0] + WINDOW_S - now)
            hits.append(now)
            return None


# KEYS[1]: the window; ARGV: now (s), window (s), limit, member. Returns -1 when recorded, else the
# seconds until the oldest hit leaves the window. Redis's own clock (TIME) would also do; the caller's
# is passed so tests can drive it.
_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
return '-1'
"""


class RedisRateLimiter:
    def __init__(self, url: str, per_minute: int, *, prefix: str, clock: Callable[[], float] = time.time) -> None:
        import redis

        self.per_minute = per_minute
        self.prefix = prefix
        self.clock = clock
        self._client: Any = redis.Redis.from_url(redis_ping_url(url), socket_connect_timeout=2, socket_timeout=2)
        self._script: Any = self._client.register_script(_SCRIPT)
        self._fallback = RateLimiter(per_minute)

    def check(self, key: str) -> float | None:
        if self.per_minute <= 0:
            return None
        import redis

        try:
            wait = float(self._script(keys=[f"{self.prefix}:{key}"], args=self._args()))
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limit kept in memory for now: %s", exc)
            return self._fallback.check(key)
        return None if wait < 0 else max(0.0, wait)

    def _args(self) -> list[str | float | int]:
        return [self.clock(), WINDOW_S, self.per_minute, uuid.uuid4().hex]

    def close(self) -> None:
        self._client.close()


def make_limiter(per_minute: int, broker_url: str | None, *, prefix: str) -> Limiter:
    if broker_url:
        return RedisRateLimiter(broker_url, per_minute, prefix=prefix)
    return RateLimiter(per_minute)
