"""Proto enums ↔ the library's domain names, in one place for every service: RankBy ↔ the
ranking modes of recsys.ranking, Metric ↔ the metrics of recsys.embeddings, Direction ↔
nearest / farthest. Each map is derived from the value names (RANK_BY_<MODE>, ...), so a new
ranking mode is its entry in recsys.ranking and its value in the protos, nothing else; a
proto value without a domain name (or the reverse) fails at import."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from recsys.api.gateway.v1 import gateway_pb2
from recsys.api.model.v1 import model_pb2
from recsys.embeddings import DIRECTIONS, METRICS
from recsys.errors import InvalidArgument
from recsys.ranking import RANK_MODES


class EnumNames:
    """One proto enum whose values are `prefix` + NAME.upper() for each domain name, plus
    `prefix`UNSPECIFIED, which means `unspecified` (a domain name, or "" for "the
    default of whoever answers"). `label` names the field in errors: "unknown rank_by 7"."""

    def __init__(self, enum, prefix: str, names: Sequence[str], unspecified: str, label: str):
        self.label = label
        self.unspecified = enum.Value(f"{prefix}UNSPECIFIED")
        by_value = {enum.Value(f"{prefix}{name.upper()}"): name for name in names}
        unnamed = sorted(set(enum.values()) - set(by_value) - {self.unspecified})
        if unnamed:
            raise ValueError(f"{enum.DESCRIPTOR.full_name} values {unnamed} have no domain name")
        self._names = {self.unspecified: unspecified, **by_value}
        self._values = {unspecified: self.unspecified, **{n: v for v, n in by_value.items()}}

    def name(self, value: int, field: str) -> str:
        """The domain name of proto `value`; InvalidArgument on `field` for an unknown one."""
        if value not in self._names:
            raise InvalidArgument(f"unknown {self.label} {value}", field=field)
        return self._names[value]

    def names(self, values: Iterable[int], field: str) -> tuple[str, ...]:
        """The domain name of each value; the error names the smallest unknown one."""
        values = list(values)
        unknown = set(values) - set(self._names)
        if unknown:
            raise InvalidArgument(f"unknown {self.label} {min(unknown)}", field=field)
        return tuple(self._names[v] for v in values)

    def value(self, name: str) -> int:
        """The proto value of a domain name (the unspecified one's for `unspecified`)."""
        return self._values[name]


RANK_BY = EnumNames(model_pb2.RankBy, "RANK_BY_", RANK_MODES, "", "rank_by")  # "": default
METRIC = EnumNames(model_pb2.Metric, "METRIC_", METRICS, "euclidean", "metric")
DIRECTION = EnumNames(model_pb2.Direction, "DIRECTION_", DIRECTIONS, "nearest", "direction")
GATEWAY_RANK_BY = EnumNames(gateway_pb2.RankBy, "RANK_BY_", RANK_MODES, "", "rank_by")
GATEWAY_METRIC = EnumNames(gateway_pb2.Metric, "METRIC_", METRICS, "euclidean", "metric")
