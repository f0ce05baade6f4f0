"""Redis clients built from configuration in one place: a plain Redis or a Redis Cluster
(`REDIS_CLUSTER=1`), synchronous for offline jobs or asyncio for the services. The rest of
the code only uses commands that work on both: per-user keys share a hash tag, pipelines are
non-transactional, and multi-key atomic updates are Lua scripts on one slot."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

SyncClient = redis.Redis | redis.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster


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


def sync_client(url: str, *, cluster: bool = False, timeout_s: float = 60.0) -> SyncClient:
    """For offline jobs (bulk loads): generous read timeout, fail fast on connect."""
    options = dict(socket_timeout=timeout_s, socket_connect_timeout=min(timeout_s, 5.0))
    if cluster:
        return redis.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(
        url, retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1), **options
    )


def async_client(url: str, *, cluster: bool = False, timeout_s: float = 0.25) -> AsyncClient:
    """The service's one client: socket timeouts of `timeout_s`, and one quick retry on a
    connection error only, so a dropped pooled connection reconnects while a dead or hung
    Redis fails within one timeout."""
    options = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    if cluster:
        return redis.asyncio.RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(
        url,
        retry=AsyncRetry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.1),
            retries=1,
            supported_errors=(redis.exceptions.ConnectionError,),
        ),
        **options,
    )
