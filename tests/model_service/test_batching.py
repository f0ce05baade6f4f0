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
from recsys.packed import Rows
from recsys.serving.config import Settings
from services.model.batching import Batcher
from services.model.predictor import Outputs, Predictor, PredictorHolder, RowPredictions
from services.model.server import create_server
from tests.support.servers import serving, wait_serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def predictor(trained_run):
    _, run = trained_run
    return Predictor.load(str(run.artifact_path.parent), run.artifact_path.name)


def users(predictor: Predictor, n: int, size: int = 5) -> list[Rows]:
    """n different one-row preference vectors (seeded), as the servicer hands them over."""
    rng = np.random.default_rng(0)
    vectors = []
    for _ in range(n):
        ids = rng.choice(predictor.index.item_ids, size=size, replace=False)
        vectors.append(Rows.from_lists([ids], [rng.normal(0, 1, size).astype(np.float32)]))
    return vectors


def row(answer: tuple[RowPredictions, int]) -> tuple[np.ndarray, np.ndarray]:
    """(movie ids, predicted preferences) of a batcher's answer; the row's error raised."""
    predictions, j = answer
    if j in predictions.errors:
        raise predictions.errors[j]
    return predictions.predictions.ids(j), predictions.predictions.row_values(j)


def batches_of(method: str = "Predict") -> tuple[float, float]:
    """(number of matrix products, users in them) recorded so far."""
    labels = {"method": method}
    count = REGISTRY.get_sample_value("recsys_model_batch_size_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("recsys_model_batch_size_sum", labels) or 0.0


TOP5 = Outputs.single(5)


def test_calls_waiting_together_share_a_product_and_get_their_own_answers(predictor):
    vectors = users(predictor, 20)
    expected = [row((predictor.predict_rows(v, TOP5), 0)) for v in vectors]
    before = batches_of()

    async def run():
        batcher = Batcher(max_size=8, max_wait_us=0, queue_limit=100)
        try:
            return await asyncio.gather(*(batcher.predict(predictor, v, TOP5) for v in vectors))
        finally:
            await batcher.close()

    got = asyncio.run(run())
    after = batches_of()
    assert (after[0] - before[0], after[1] - before[1]) == (3, 20)  # 8 + 8 + 4
    for answer, (ids, values) in zip(got, expected, strict=True):
        got_ids, got_values = row(answer)
        assert got_ids.tolist() == ids.tolist()
        assert got_values.tobytes() == values.tobytes()  # a row's answer is its own, exactly


@pytest.mark.parametrize("rank_by", ["", "rating", "preference"])
def test_a_rows_predictions_do_not_depend_on_its_batch(predictor, rank_by):
    """Byte for byte, whatever the batch's size and the rows beside it: the gateway's
    coalesced answers must equal its one-at-a-time answers."""
    vectors = users(predictor, 70, size=12)
    alone = [predictor.predict_rows(v, Outputs.single(20, rank_by)) for v in vectors]
    for size in (1, 2, 3, 4, 5, 9, 33, 70):
        batch = vectors[:size]
        together = predictor.predict_rows(
            Rows.from_lists([v.movie_ids for v in batch], [v.values for v in batch]),
            Outputs(np.full(size, 20), (rank_by,) * size, Rows.empty(size), Rows.empty(size)),
        )
        for j in range(size):
            assert together.predictions.ids(j).tolist() == alone[j].predictions.ids(0).tolist()
            assert (
                together.predictions.row_values(j).tobytes()
                == alone[j].predictions.row_values(0).tobytes()
            ), f"row {j} of a batch of {size}"


def test_a_full_queue_refuses_at_once(predictor):
    vectors = users(predictor, 10)

    async def run():
        batcher = Batcher(max_size=64, max_wait_us=50_000, queue_limit=4)
        try:
            return await asyncio.gather(
                *(batcher.predict(predictor, v, TOP5) for v in vectors),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    results = asyncio.run(run())
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(refused) == 6 and "MODEL_QUEUE_LIMIT=4" in str(refused[0])
    assert all(len(row(r)[0]) == 5 for r in results if not isinstance(r, Exception))


def test_one_calls_error_fails_only_that_call(predictor):
    first, other = users(predictor, 2)
    unknown = Outputs.single(0, given=[999_999_999])

    async def run():
        batcher = Batcher(max_size=8, max_wait_us=0, queue_limit=100)
        try:
            return await asyncio.gather(
                batcher.predict(predictor, first, unknown),
                batcher.predict(predictor, other, TOP5),
            )
        finally:
            await batcher.close()

    failed, answered = asyncio.run(run())
    with pytest.raises(NotFound, match="999999999"):
        row(failed)
    assert len(row(answered)[0]) == 5


def test_a_call_waits_for_company_up_to_the_maximum_wait(predictor):
    first, second = users(predictor, 2)
    before = batches_of()

    async def run():
        # the first call waits up to 1 s for company; the batch goes once it is full (2)
        batcher = Batcher(max_size=2, max_wait_us=1_000_000, queue_limit=100)
        try:
            one = asyncio.ensure_future(batcher.predict(predictor, first, TOP5))
            await asyncio.sleep(0.01)
            two = batcher.predict(predictor, second, TOP5)
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
