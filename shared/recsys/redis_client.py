"""Redis clients built from configuration in one place: a plain Redis, a Redis Cluster
(`REDIS_CLUSTER=1`) or the master a set of Redis Sentinels names (`REDIS_SENTINELS`),
synchronous for offline jobs or asyncio for the services. The rest of the code only uses
commands that work on all three: per-user keys share a hash tag, pipelines are
non-transactional, and multi-key atomic updates are Lua scripts on one slot.

Sentinel mode uses redis-py's own Sentinel client (`master_for`): each new connection asks
the sentinels for the current master, and a connection to a master that was demoted is
dropped on its first READONLY answer, so after a failover the client follows the new master
by itself. `unavailable(exc)` tells the errors that mean "Redis cannot serve now" (down,
hung, failing over, a Cluster slot moving) from the ones that mean a bug."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.connection
import redis.exceptions
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

SyncClient = redis.Redis | redis.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster

# Errors after which a retry later may succeed: Redis down, hung, loading, failing over
# (MasterNotFoundError is a ConnectionError; a demoted master's READONLY), or a Cluster
# whose slots are moving or uncovered (the client gives up after its own redirects).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, TTL exhausted
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,  # MovedError too
    redis.exceptions.SlotNotCoveredError,
)
# Error replies that mean the same without a class of their own in redis-py: a master with
# min-replicas-to-write and too few replicas; a replica cut off from its master.
_UNAVAILABLE_REPLIES = ("NOREPLICAS", "MASTERDOWN", "LOADING", "READONLY", "CLUSTERDOWN")


def unavailable(exc: BaseException) -> bool:
    """True when `exc` means Redis cannot serve now (answered UNAVAILABLE, retryable),
    False for anything else (a bug: a wrong command, a script error)."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        _UNAVAILABLE_REPLIES
    )


def sentinel_addresses(spec: str) -> list[tuple[str, int]]:
    """`host:port,host:port` → [(host, port), …]; ValueError naming a bad entry."""
    addresses = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _url_options(url: str) -> dict:
    """What REDIS_URL gives a Sentinel-managed connection: user, password, database (its
    host and port are not used: the sentinels name the master)."""
    parsed = redis.connection.parse_url(url) if url else {}
    options = {k: v for k, v in parsed.items() if k in ("username", "password", "db")}
    if url.startswith("rediss://"):
        options["ssl"] = True  # the Sentinel pool's SSL connection class
    return options


def redact_url(url: str) -> str:
    """A Redis URL fit for logs and error messages: the password (and a user name, which
    with ACLs is half of the credentials) replaced by `***`; the `password=` query
    parameter too. `redis://app:s3cret@host:6379/0` → `redis://***@host:6379/0`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        "password=***" if pair.lower().startswith("password=") else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class _SyncSentinelMaster(redis.Redis):
    """The master's client; closing it closes the sentinel connections too."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.connection_pool.sentinel_manager.close()


class _AsyncSentinelMaster(redis.asyncio.Redis):
    """The master's client; closing it closes the sentinel connections too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            await self.connection_pool.sentinel_manager.aclose()


def sync_client(
    url: str,
    *,
    cluster: bool = False,
    sentinels: str = "",
    sentinel_master: str = "mymaster",
    sentinel_password: str = "",
    timeout_s: float = 60.0,
) -> SyncClient:
    """For offline jobs (bulk loads): generous read timeout, fail fast on connect. With
    `sentinels` (host:port,…) the master named `sentinel_master` (credentials and database
    from `url`, which may then be empty)."""
    options = dict(socket_timeout=timeout_s, socket_connect_timeout=min(timeout_s, 5.0))
    retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1)
    if sentinels:
        manager = redis.sentinel.Sentinel(
            sentinel_addresses(sentinels),
            sentinel_kwargs=dict(options, password=sentinel_password or None),
            **options,
        )
        return manager.master_for(
            sentinel_master,
            redis_class=_SyncSentinelMaster,
            retry=retry,
            **_url_options(url),
        )
    if cluster:
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, retry=retry, **options)


def async_client(
    url: str,
    *,
    cluster: bool = False,
    sentinels: str = "",
    sentinel_master: str = "mymaster",
    sentinel_password: str = "",
    timeout_s: float = 0.25,
) -> AsyncClient:
    """The service's one client: socket timeouts of `timeout_s`, and one quick retry on a
    connection error only, so a dropped pooled connection reconnects while a dead or hung
    Redis fails within one timeout. With `sentinels` (host:port,…): the master named
    `sentinel_master`, found through them (credentials and database from `url`); the
    sentinels themselves get the same timeouts and `sentinel_password`."""
    options = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    retry = AsyncRetry(
        ExponentialWithJitterBackoff(base=0.01, cap=0.1),
        retries=1,
        supported_errors=(redis.exceptions.ConnectionError,),
    )
    if sentinels:
        manager = redis.asyncio.sentinel.Sentinel(
            sentinel_addresses(sentinels),
            sentinel_kwargs=dict(options, password=sentinel_password or None),
            **options,
        )
        return manager.master_for(
            sentinel_master, redis_class=_AsyncSentinelMaster, retry=retry, **_url_options(url)
        )
    if cluster:
        return redis.asyncio.RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, retry=retry, **options)
