"""Every key and value of a Redis, to show that a refused write changed nothing."""

from __future__ import annotations

import redis


def snapshot(client: redis.Redis) -> dict[bytes, bytes]:
    """key → DUMP of its value (type and content), for every key; one pipeline."""
    keys = sorted(client.scan_iter(count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
    return dict(zip(keys, pipe.execute(), strict=True))
