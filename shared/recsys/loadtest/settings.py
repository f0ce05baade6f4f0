"""What a load test is told: how hard and how long to push (`LoadSettings`) and which servers
to push (`Targets`). Both check themselves on construction and refuse bad values with
`InvalidArgument`, so the command line and scripts get the same one-line errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recsys.errors import InvalidArgument

DEFAULT_CONCURRENCY = 16
IN_FLIGHT_PER_RATE = 10  # open loop: at most 10 × rate requests outstanding (≥ 1)


@dataclass(frozen=True)
class LoadSettings:
    """How a run sends requests. Exactly one of `concurrency` (closed loop) and `rate` (open
    loop) is set; with neither, the closed loop at `DEFAULT_CONCURRENCY`.

    concurrency: workers, each sending its next request when the previous one answered.
    rate: open loop, requests per second with exponential (Poisson) inter-arrival times.
    duration_s: measured time, seconds (after the warm-up).
    warmup_s: seconds sent first and not recorded (connections, caches, JIT-like effects).
    deadline_ms: deadline of every call, milliseconds.
    seed: seeds the workload's choices and the open loop's arrival times.
    max_in_flight: open loop only: requests outstanding at most; arrivals beyond it are
        not sent and counted as dropped. None: 10 × rate.
    """

    concurrency: int | None = None
    rate: float | None = None
    duration_s: float = 10.0
    warmup_s: float = 2.0
    deadline_ms: float = 1000.0
    seed: int = 0
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.rate is not None:
            raise InvalidArgument(
                "give --concurrency (closed loop) or --rate (open loop), not both",
                field="concurrency",
            )
        if self.concurrency is None and self.rate is None:
            object.__setattr__(self, "concurrency", DEFAULT_CONCURRENCY)
        if self.concurrency is not None and self.concurrency < 1:
            raise InvalidArgument(
                f"--concurrency must be at least 1, got {self.concurrency}", field="concurrency"
            )
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise InvalidArgument(f"--rate must be > 0 requests/s, got {self.rate}", field="rate")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise InvalidArgument(
                f"--duration must be > 0 seconds, got {self.duration_s}", field="duration"
            )
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise InvalidArgument(
                f"--warmup must be ≥ 0 seconds, got {self.warmup_s}", field="warmup"
            )
        if not (math.isfinite(self.deadline_ms) and self.deadline_ms > 0):
            raise InvalidArgument(
                f"--deadline-ms must be > 0, got {self.deadline_ms}", field="deadline_ms"
            )
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise InvalidArgument(
                f"max_in_flight must be at least 1, got {self.max_in_flight}", field="max_in_flight"
            )

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def in_flight_limit(self) -> int:
        """Open loop: most requests outstanding at once."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(1, math.ceil(IN_FLIGHT_PER_RATE * (self.rate or 0.0)))

    def to_dict(self) -> dict[str, object]:
        return {
            "mode": "open" if self.open_loop else "closed",
            "concurrency": self.concurrency,
            "rate": self.rate,
            "max_in_flight": self.in_flight_limit if self.open_loop else None,
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "deadline_ms": self.deadline_ms,
            "seed": self.seed,
        }


def check_address(address: str, flag: str) -> str:
    """'127.0.0.1:50050' → itself; anything without a numeric port is refused."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"bad {flag} {address!r}: expected HOST:PORT", field=flag)
    return address


@dataclass(frozen=True)
class Targets:
    """Server addresses (HOST:PORT). `gateway` takes the gateway workloads, `model` the
    model service's `predict`, `feature` is read at start-up (preference vectors, the
    catalog); `health` goes to the first of gateway, model, feature that is given."""

    gateway: str | None = None
    model: str | None = None
    feature: str | None = None

    def __post_init__(self) -> None:
        for flag, address in (
            ("--target", self.gateway),
            ("--model-target", self.model),
            ("--feature-target", self.feature),
        ):
            if address is not None:
                check_address(address, flag)

    def address(self, role: str) -> str:
        """The address serving `role` ("gateway", "model", "feature" or "health")."""
        if role == "health":
            found = self.gateway or self.model or self.feature
            flag = "--target"
        else:
            found = {"gateway": self.gateway, "model": self.model, "feature": self.feature}[role]
            flag = {"gateway": "--target", "model": "--model-target"}.get(role, "--feature-target")
        if found is None:
            raise InvalidArgument(f"this workload needs {flag} HOST:PORT", field=flag)
        return found

    def to_dict(self) -> dict[str, str | None]:
        return {"gateway": self.gateway, "model": self.model, "feature": self.feature}
