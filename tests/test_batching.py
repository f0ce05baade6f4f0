"""Dynamic batching in the model service: batched answers equal unbatched ones, calls that
wait together share one matrix product, a full queue refuses with RESOURCE_EXHAUSTED, and
one call's error stays that call's."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from recsys.api.model.v1 import model_pb2 as pb
from recsys.api.model.v1 import model_pb2_grpc
from recsys.errors import NotFound, ResourceExhausted
from recsys.serving.config import Settings
from services.model.batching import Batcher
from services.model.predictor import Output, Predictor, PredictorHolder
from services.model.server import create_server
from tests.servers import serving, wait_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(trained_run):
    _, run = trained_run
    return Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)


def users(predictor: Predictor, n: int) -> list[tuple[np.ndarray, list[int]]]:
    """n different dense preference vectors (seeded), as the servicer hands them over."""
    rng = np.random.default_rng(0)
    vectors = []
    for _ in range(n):
        ids = rng.choice(predictor.index.item_ids, size=5, replace=False)
        vectors.append(predictor.vector(ids, rng.normal(0, 1, 5).astype(np.float32)))
    return vectors


def batches_of(method: str = "Predict") -> tuple[float, float]:
    """(number of matrix products, users in them) recorded so far."""
    labels = {"method": method}
    count = REGISTRY.get_sample_value("recsys_model_batch_size_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("recsys_model_batch_size_sum", labels) or 0.0


TOP5 = Output("top_k", k=5)


def test_calls_waiting_together_share_a_product_and_get_their_own_answers(predictor):
    vectors = users(predictor, 20)
    expected = [
        predictor.select(predictor.network.predict(dense[None, :])[0], TOP5, ignored)
        for dense, ignored in vectors
    ]
    before = batches_of()

    async def run():
        batcher = Batcher(max_size=8, max_wait_us=0, queue_limit=100)
        try:
            return await asyncio.gather(
                *(batcher.predict(predictor, dense, ig, TOP5) for dense, ig in vectors)
            )
        finally:
            await batcher.close()

    got = asyncio.run(run())
    after = batches_of()
    assert (after[0] - before[0], after[1] - before[1]) == (3, 20)  # 8 + 8 + 4
    for answer, want in zip(got, expected, strict=True):
        assert answer.movie_ids.tolist() == want.movie_ids.tolist()
        np.testing.assert_allclose(answer.preferences, want.preferences, rtol=1e-5, atol=1e-6)


def test_a_full_queue_refuses_at_once(predictor):
    vectors = users(predictor, 10)

    async def run():
        batcher = Batcher(max_size=64, max_wait_us=50_000, queue_limit=4)
        try:
            return await asyncio.gather(
                *(batcher.predict(predictor, dense, ig, TOP5) for dense, ig in vectors),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(refused) == 6 and "MODEL_QUEUE_LIMIT=4" in str(refused[0])
    assert all(len(r.movie_ids) == 5 for r in results if not isinstance(r, Exception))


def test_one_calls_error_fails_only_that_call(predictor):
    (dense, ignored), (other, other_ignored) = users(predictor, 2)
    unknown = Output("given", movie_ids=(999_999_999,))

    async def run():
        batcher = Batcher(max_size=8, max_wait_us=0, queue_limit=100)
        try:
            return await asyncio.gather(
                batcher.predict(predictor, dense, ignored, unknown),
                batcher.predict(predictor, other, other_ignored, TOP5),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    failed, answered = asyncio.run(run())
    assert isinstance(failed, NotFound) and "999999999" in str(failed)
    assert len(answered.movie_ids) == 5


def test_a_call_waits_for_company_up_to_the_maximum_wait(predictor):
    (first, first_ignored), (second, second_ignored) = users(predictor, 2)
    before = batches_of()

    async def run():
        # the first call waits up to 1 s for company; the batch goes once it is full (2)
        batcher = Batcher(max_size=2, max_wait_us=1_000_000, queue_limit=100)
        try:
            one = asyncio.ensure_future(batcher.predict(predictor, first, first_ignored, TOP5))
            await asyncio.sleep(0.01)
            two = batcher.predict(predictor, second, second_ignored, TOP5)
            return await asyncio.gather(one, two)
        finally:
            await batcher.close()

    asyncio.run(run())
    after = batches_of()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 2)


def predict_request(predictor: Predictor, seed: int) -> pb.PredictRequest:
    rng = np.random.default_rng(seed)
    ids = rng.choice(predictor.index.item_ids, size=6, replace=False)
    return pb.PredictRequest(
        preferences=pb.SparseVector(
            movie_ids=ids.tolist(), values=rng.normal(0, 1, 6).astype(np.float32).tolist()
        ),
        top_k=pb.TopK(k=10, exclude_movie_ids=ids[:2].tolist()),
    )


def test_batched_service_answers_equal_unbatched_ones(predictor):
    holder = PredictorHolder(predictor)
    requests = [predict_request(predictor, seed) for seed in range(40)]
    answers = {}
    before = batches_of()
    for size in (1, 16):
        settings = Settings(model_port=0, model_batch_size=size, model_batch_wait_us=200_000)
        with serving(lambda s=settings: create_server(s, holder)) as (_, channel):
            wait_serving(channel)
            stub = model_pb2_grpc.ModelServiceStub(channel)
            futures = [stub.Predict.future(r, timeout=10) for r in requests]
            answers[size] = [f.result() for f in futures]
    products, users = (after - earlier for after, earlier in zip(batches_of(), before, strict=True))
    assert users == len(requests) and products < users  # batched: fewer products than calls
    for unbatched, batched in zip(answers[1], answers[16], strict=True):
        assert list(batched.predictions.movie_ids) == list(unbatched.predictions.movie_ids)
        np.testing.assert_allclose(
            batched.predictions.values, unbatched.predictions.values, rtol=1e-5, atol=1e-6
        )


def test_a_full_queue_is_resource_exhausted_through_the_channel(predictor):
    holder = PredictorHolder(predictor)
    settings = Settings(
        model_port=0, model_batch_size=64, model_batch_wait_us=1_000_000, model_queue_limit=1
    )
    with serving(lambda: create_server(settings, holder)) as (_, channel):
        wait_serving(channel)
        stub = model_pb2_grpc.ModelServiceStub(channel)
        futures = [stub.Predict.future(predict_request(predictor, n), timeout=10) for n in range(8)]
        codes = []
        for future in futures:
            try:
                future.result()
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
                assert "MODEL_QUEUE_LIMIT" in error.details()
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes
