"""The gateway's coalescing of concurrent requests' upstream calls: the batching rules of
the Coalescer, and through real servers, concurrent answers equal to one-at-a-time answers,
byte for byte, whatever each request's fate (good, unknown user, bad input, too short a
deadline) and across a model swap."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import redis
from prometheus_client import REGISTRY

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.artifacts import copy_version
from recsys.errors import DeadlineExceeded, NotFound, Unavailable
from recsys.featurestore.loader import load_features
from recsys.serving.coalesce import Coalescer
from services.model.predictor import Predictor
from tests.support.stack import running_stack

# --- the rules, with an upstream stand-in that records the batches it is sent ------------


class Upstream:
    """Answers each item with item × 10 once released; an item "bad" fails on its own, a
    batch holding "down" fails as a whole."""

    def __init__(self):
        self.batches: list[tuple[object, list]] = []
        self.release = asyncio.Event()

    async def send(self, key, items, timeout_s, request_ids):
        self.batches.append((key, list(items)))
        await self.release.wait()
        if "down" in items:
            raise Unavailable("upstream down")
        return [NotFound(f"no {i}") if i == "bad" else i * 10 for i in items]


def run(body):
    return asyncio.run(asyncio.wait_for(body(), 10))


async def settle():
    """Let every task that can run, run (a submit, then the batch call it starts)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lone_request_goes_at_once_and_waiting_ones_go_together():
    async def body():
        upstream = Upstream()
        coalescer = Coalescer("test", upstream.send, max_batch=64, max_in_flight=1)
        first = asyncio.ensure_future(coalescer.submit("v1", 1, 5))
        await settle()
        assert upstream.batches == [("v1", [1])]  # nothing was in flight: no waiting
        rest = [asyncio.ensure_future(coalescer.submit("v1", i, 5)) for i in (2, 3, 4)]
        await settle()
        assert len(upstream.batches) == 1  # one call in flight: the others wait for it
        upstream.release.set()
        assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
        assert upstream.batches == [("v1", [1]), ("v1", [2, 3, 4])]

    run(body)


def test_keys_never_share_a_batch_and_batches_are_bounded():
    async def body():
        upstream = Upstream()
        coalescer = Coalescer("test", upstream.send, max_batch=2, max_in_flight=1)
        calls = [coalescer.submit(key, i, 5) for key, i in [("a", 1), ("a", 2), ("b", 3)]]
        calls += [coalescer.submit("a", i, 5) for i in (4, 5, 6)]
        upstream.release.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40, 50, 60]
        assert upstream.batches == [("a", [1]), ("a", [2, 4]), ("b", [3]), ("a", [5, 6])]

    run(body)


def test_each_member_keeps_its_own_error_and_deadline():
    async def body():
        upstream = Upstream()
        coalescer = Coalescer("test", upstream.send, max_batch=8, max_in_flight=2)
        held = asyncio.ensure_future(coalescer.submit("v", 1, 5))
        hasty = asyncio.ensure_future(coalescer.submit("v", 2, 0.05))
        with pytest.raises(DeadlineExceeded):  # its batch is still waiting upstream
            await hasty
        assert not held.done()
        mixed = [coalescer.submit("v", i, 5) for i in (3, "bad")]
        upstream.release.set()
        assert await held == 10
        three, bad = await asyncio.gather(*mixed, return_exceptions=True)
        assert three == 30 and isinstance(bad, NotFound) and str(bad) == "no bad"
        failing = Upstream()
        second = Coalescer("test", failing.send, max_batch=8, max_in_flight=1)
        blocker = asyncio.ensure_future(second.submit("v", 0, 5))
        await settle()
        down = [asyncio.ensure_future(second.submit("v", i, 5)) for i in (7, "down")]
        failing.release.set()
        assert await blocker == 0
        errors = await asyncio.gather(*down, return_exceptions=True)
        assert failing.batches[-1] == ("v", [7, "down"])
        assert all(isinstance(e, Unavailable) for e in errors) and errors[0] is not errors[1]

    run(body)


def test_a_cancelled_member_is_dropped_from_the_batch_it_waits_for():
    async def body():
        upstream = Upstream()
        coalescer = Coalescer("test", upstream.send, max_batch=8, max_in_flight=1)
        first = asyncio.ensure_future(coalescer.submit("v", 1, 5))
        gone = asyncio.ensure_future(coalescer.submit("v", 2, 5))
        kept = asyncio.ensure_future(coalescer.submit("v", 3, 5))
        await settle()
        gone.cancel()
        upstream.release.set()
        assert (await first, await kept) == (10, 30)
        assert upstream.batches == [("v", [1]), ("v", [3])]

    run(body)


# --- through the real services --------------------------------------------------------------

NEW = "29990101T000000000000Z"


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        yield running


def batches_sent() -> tuple[float, float]:
    """(batch calls, requests in them) the gateway sent to the model service so far."""
    labels = {"upstream": "model"}
    count = REGISTRY.get_sample_value("recsys_gateway_batch_size_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("recsys_gateway_batch_size_sum", labels) or 0.0


def inline(ratings: dict[int, float]) -> pb.InlineRatings:
    return pb.InlineRatings(ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()])


def mixed_requests(stack) -> list[tuple[str, object, float]]:
    """(method, request, timeout) of every kind of fate a member can have."""
    users = sorted(int(u) for u in stack.data.ratings["user_id"].unique())
    movies = sorted(int(m) for m in stack.artifact.recommender.index.item_ids)
    calls = [("Recommend", pb.RecommendRequest(user_id=u, k=7), 10.0) for u in users[:24]]
    calls += [
        ("Recommend", pb.RecommendRequest(user_id=424242, k=5), 10.0),  # unknown user
        ("Recommend", pb.RecommendRequest(user_id=-3), 10.0),  # bad input
        ("Recommend", pb.RecommendRequest(user_id=users[0], k=5000), 10.0),  # bad k
        ("Recommend", pb.RecommendRequest(user_id=users[1], rank_by=pb.RANK_BY_RATING), 10.0),
        ("Recommend", pb.RecommendRequest(inline_ratings=inline({movies[0]: 5.0})), 10.0),
        ("PredictRatings", pb.PredictRatingsRequest(user_id=users[2], movie_ids=movies[:4]), 10),
        ("PredictRatings", pb.PredictRatingsRequest(user_id=users[3], movie_ids=[999_999]), 10),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=movies[5], k=6), 10.0),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=movies[6], farthest=True), 10.0),
        ("SimilarItems", pb.SimilarItemsRequest(movie_id=999_999), 10.0),  # unknown movie
        ("Recommend", pb.RecommendRequest(user_id=users[4], k=3), 0.0001),  # too short
    ]
    return calls


def outcome(future) -> tuple:
    """(status code, details, response bytes) of a finished call. A deadline's details
    depend on where it ran out (the client's channel or the gateway), so only its code."""
    try:
        return ("OK", "", future.result().SerializeToString(deterministic=True))
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return (error.code().name, "", b"")
        return (error.code().name, error.details(), b"")


def send_together(stack, calls) -> list[tuple]:
    futures = [getattr(stack.stub, m).future(r, timeout=t) for m, r, t in calls]
    return [outcome(f) for f in futures]


def send_alone(stack, calls) -> list[tuple]:
    return [outcome(getattr(stack.stub, m).future(r, timeout=t)) for m, r, t in calls]


def test_concurrent_answers_equal_one_at_a_time_answers_byte_for_byte(stack):
    calls = mixed_requests(stack)
    alone = send_alone(stack, calls)
    codes = [code for code, _, _ in alone]
    assert codes.count("OK") == 29 and codes[-1] == "DEADLINE_EXCEEDED"
    assert {"NOT_FOUND", "INVALID_ARGUMENT"} <= set(codes)
    before = batches_sent()
    for _ in range(3):
        assert send_together(stack, calls) == alone
    count, requests = (b - a for a, b in zip(before, batches_sent(), strict=True))
    assert count < requests  # the burst was coalesced: fewer calls than requests


def test_answers_across_a_model_swap_are_those_of_the_version_they_name(stack, tmp_path):
    """A copy of the model under a newer version, features loaded, swapped in while a burst
    runs: every answer equals the one-at-a-time answer of the version it names."""
    calls = [(m, r, t) for m, r, t in mixed_requests(stack) if t > 1]
    old = stack.artifact.version
    answers = {old: send_alone(stack, calls)}
    copy_version(stack.artifact.path, tmp_path, NEW)
    with redis.Redis.from_url(stack.redis_url) as client:
        load_features(client, tmp_path / NEW, stack.data.ratings, stack.data.items, "recsys")
    newer = Predictor.load(str(tmp_path), NEW)
    futures = [getattr(stack.stub, m).future(r, timeout=t) for m, r, t in calls]
    stack.model.run(_swap(stack.holder, newer))
    futures += [getattr(stack.stub, m).future(r, timeout=t) for m, r, t in calls]
    during = [outcome(f) for f in futures]
    stack.gateway.run(asyncio.sleep(1.1))  # past the gateway's trust in the version it knew
    answers[NEW] = send_alone(stack, calls)
    assert answers[NEW] != answers[old]  # the same model, but the responses name the version
    for j, answer in enumerate(during):
        call = j % len(calls)
        assert answer in (answers[old][call], answers[NEW][call]), (calls[call][1], answer[:2])


async def _swap(holder, predictor):
    holder.swap(predictor)
