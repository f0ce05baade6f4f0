"""The proto enums ↔ domain names maps of recsys.serving.enums: derived from the value names,
complete in both directions, and refusing unknown numbers with the field named."""

import pytest

from recsys.api.gateway.v1 import gateway_pb2 as gpb
from recsys.api.model.v1 import model_pb2 as pb
from recsys.embeddings import DIRECTIONS, METRICS
from recsys.errors import InvalidArgument
from recsys.ranking import RANK_MODES
from recsys.serving.enums import (
    DIRECTION,
    GATEWAY_METRIC,
    GATEWAY_RANK_BY,
    METRIC,
    RANK_BY,
    EnumNames,
)


def test_rank_by_names_every_mode_in_both_protos():
    assert RANK_BY.name(pb.RANK_BY_UNSPECIFIED, "f") == ""  # the version's default
    assert RANK_BY.name(pb.RANK_BY_RATING, "f") == "rating"
    assert RANK_BY.name(pb.RANK_BY_PREFERENCE, "f") == "preference"
    assert RANK_BY.name(pb.RANK_BY_RELEVANCE, "f") == "relevance"
    for mode in RANK_MODES:
        assert RANK_BY.name(RANK_BY.value(mode), "f") == mode
        assert GATEWAY_RANK_BY.name(GATEWAY_RANK_BY.value(mode), "f") == mode
        # the gateway's number of a mode is the model service's
        assert pb.RankBy.Name(RANK_BY.value(mode)) == gpb.RankBy.Name(GATEWAY_RANK_BY.value(mode))
    assert RANK_BY.value("") == pb.RANK_BY_UNSPECIFIED
    assert RANK_BY.names([3, 0, 1], "f") == ("relevance", "", "rating")


def test_metric_and_direction():
    assert METRIC.name(pb.METRIC_UNSPECIFIED, "f") == "euclidean"
    assert METRIC.name(pb.METRIC_COSINE, "f") == "cosine"
    assert METRIC.value("euclidean") == pb.METRIC_EUCLIDEAN
    assert GATEWAY_METRIC.value("cosine") == gpb.METRIC_COSINE
    assert [METRIC.name(METRIC.value(m), "f") for m in METRICS] == list(METRICS)
    assert DIRECTION.name(pb.DIRECTION_UNSPECIFIED, "f") == "nearest"
    assert DIRECTION.name(pb.DIRECTION_FARTHEST, "f") == "farthest"
    assert [DIRECTION.name(DIRECTION.value(d), "f") for d in DIRECTIONS] == list(DIRECTIONS)


def test_unknown_numbers_name_the_field():
    with pytest.raises(InvalidArgument, match="unknown rank_by 9") as caught:
        RANK_BY.name(9, "top_k.rank_by")
    assert caught.value.field == "top_k.rank_by"
    with pytest.raises(InvalidArgument, match="unknown rank_by 7"):
        RANK_BY.names([1, 9, 7, 2], "packed.rank_by")  # the smallest unknown one
    with pytest.raises(InvalidArgument, match="unknown metric -1"):
        METRIC.name(-1, "metric")


def test_a_proto_value_without_a_domain_name_and_the_reverse_fail():
    with pytest.raises(ValueError, match="no domain name"):
        EnumNames(pb.RankBy, "RANK_BY_", ("rating", "preference"), "", "rank_by")
    with pytest.raises(ValueError):  # a domain name the proto lacks
        EnumNames(pb.Metric, "METRIC_", (*METRICS, "manhattan"), "euclidean", "metric")
