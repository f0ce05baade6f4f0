"""Hot reload of the model service: a newer version in MODEL_DIR is loaded beside the one
serving and swapped in; a corrupt or inconsistent one is refused with a log line while the
old one keeps serving; under load through the gateway, the swap fails no request."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

import grpc
import pytest
import redis

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.gateway.v1 import gateway_pb2_grpc
from recsys.api.model.v1 import model_pb2, model_pb2_grpc
from recsys.artifacts import copy_version
from recsys.errors import FailedPrecondition
from recsys.featurestore.loader import load_features
from recsys.launcher import LocalStack
from services.model.predictor import Predictor, PredictorHolder
from services.model.reload import ModelWatcher

pytestmark = pytest.mark.slow

OLD = "20200101T000000000000Z"
NEW = "29990101T000000000000Z"


@pytest.fixture
def model_dir(trained_run, tmp_path):
    _, run = trained_run
    copy_version(run.artifact_path, tmp_path, OLD)
    return tmp_path


def watcher_for(model_dir: Path) -> ModelWatcher:
    return ModelWatcher(PredictorHolder(Predictor.load(str(model_dir), OLD)), str(model_dir), 1)


def test_a_newer_version_is_swapped_in_and_the_old_one_still_answers(trained_run, model_dir):
    _, run = trained_run
    watcher = watcher_for(model_dir)
    assert asyncio.run(watcher.check()) is False  # nothing newer yet
    copy_version(run.artifact_path, model_dir, NEW)
    assert asyncio.run(watcher.check()) is True
    holder = watcher.holder
    assert (holder.predictor.version, holder.previous.version) == (NEW, OLD)
    assert holder.get().version == NEW and holder.get(OLD).version == OLD
    with pytest.raises(FailedPrecondition, match="is loaded, the request is for"):
        holder.get("19990101T000000000000Z")
    assert asyncio.run(watcher.check()) is False  # already serving the newest


def corrupt_model_file(path: Path) -> None:
    model_file = path / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:200])


def drop_an_item(path: Path) -> None:
    items = json.loads((path / "items.json").read_text())
    (path / "items.json").write_text(json.dumps(items[:-1]))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(corrupt_model_file, "cannot load"), (drop_an_item, "disagree on the item count")],
)
def test_a_broken_version_is_refused_once_and_the_old_one_keeps_serving(
    trained_run, model_dir, caplog, damage, reason
):
    _, run = trained_run
    watcher = watcher_for(model_dir)
    damage(copy_version(run.artifact_path, model_dir, NEW))
    with caplog.at_level(logging.INFO, logger="services.model.reload"):
        assert asyncio.run(watcher.check()) is False
        assert asyncio.run(watcher.check()) is False  # not tried again at once
    refusals = [r for r in caplog.records if r.message.startswith("model version refused")]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert refusals[0].model_version == NEW and reason in refusals[0].message
    assert watcher.holder.predictor.version == OLD and watcher.holder.previous is None
    assert NEW in watcher.refused


def test_a_refused_version_is_tried_again_later(trained_run, model_dir, monkeypatch):
    """A failure may have been transient: after REFUSED_RETRY_S the version is loaded."""
    from services.model import reload

    _, run = trained_run
    watcher = watcher_for(model_dir)
    published = copy_version(run.artifact_path, model_dir, NEW)
    good = (published / "model.keras").read_bytes()
    corrupt_model_file(published)
    assert asyncio.run(watcher.check()) is False
    (published / "model.keras").write_bytes(good)  # repaired (or the memory came back)
    assert asyncio.run(watcher.check()) is False  # within REFUSED_RETRY_S: not tried
    monkeypatch.setattr(reload, "REFUSED_RETRY_S", 0.0)
    assert asyncio.run(watcher.check()) is True
    assert watcher.holder.predictor.version == NEW


def wait_for_model_version(address: str, version: str, timeout: float = 60.0) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        deadline = time.monotonic() + timeout
        while stub.GetModelInfo(model_pb2.GetModelInfoRequest(), timeout=5).model_version != (
            version
        ):
            assert time.monotonic() < deadline, f"the model service never served {version}"
            time.sleep(0.05)


def test_hot_reload_under_load_fails_no_request(trained_run, model_dir, tmp_path):
    """The real processes, MODEL_POLL_S=0.2. The new version is published before its
    features are loaded (the order a careless rollout takes): the gateway keeps answering
    with the old version until they are, then follows the model service to the new one.
    The fallback is observed: requests sent once the gateway must have learnt that the
    model serves the new version (its cache of it expired), but before the new features
    exist, are all answered OK with the old version — of each kind, rate included."""
    from services.gateway.versions import MODEL_VERSION_TTL_S

    source, run = trained_run
    stack = LocalStack(
        model_dir=model_dir,
        redis_dir=tmp_path / "redis",
        environment={"MODEL_POLL_S": "0.2"},
    )
    answers: list[tuple[str, str, float]] = []  # (call, version, sent at time.monotonic())
    errors: list[str] = []
    stop = threading.Event()

    def ask(channel):
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        calls = {
            "recommend": lambda: stub.Recommend(pb.RecommendRequest(user_id=3, k=5), timeout=5),
            "similar": lambda: stub.SimilarItems(pb.SimilarItemsRequest(movie_id=1), timeout=5),
            "rate": lambda: stub.RateItems(
                pb.RateItemsRequest(user_id=9, ratings=[pb.Rating(movie_id=2, rating=4.0)]),
                timeout=5,
            ),
        }
        while not stop.is_set():
            for name, call in calls.items():
                sent = time.monotonic()
                try:
                    reply = call()
                    version = reply.user.model_version if name == "rate" else reply.model_version
                    answers.append((name, version, sent))
                except grpc.RpcError as error:
                    errors.append(f"{name}: {error.code().name} {error.details()}")

    def latest(name: str) -> str:
        return next((v for n, v, _ in reversed(answers) if n == name), "")

    try:
        with redis.Redis.from_url(stack.start_redis()) as client:
            load_features(client, model_dir / OLD, source.data.ratings, source.data.items)
            stack.start_services(timeout=120)
            with grpc.insecure_channel(stack.address("gateway")) as channel:
                threads = [threading.Thread(target=ask, args=(channel,)) for _ in range(2)]
                for thread in threads:
                    thread.start()
                time.sleep(0.5)
                copy_version(run.artifact_path, model_dir, NEW)
                wait_for_model_version(stack.address("model"), NEW)  # features not loaded yet
                window_from = time.monotonic() + MODEL_VERSION_TTL_S + 0.5
                time.sleep(MODEL_VERSION_TTL_S + 1.5)  # requests meanwhile fall back
                window_to = time.monotonic()
                load_features(client, model_dir / NEW, source.data.ratings, source.data.items)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and latest("recommend") != NEW:
                    time.sleep(0.1)
                time.sleep(0.5)
                stop.set()
                for thread in threads:
                    thread.join(30)
    finally:
        stop.set()
        stack.stop()
    assert errors == [], errors[:5]
    assert {version for _, version, _ in answers} == {OLD, NEW}
    kinds = {"recommend", "similar", "rate"}
    assert {name for name, version, _ in answers if version == NEW} == kinds
    fallback = [(n, v) for n, v, sent in answers if window_from <= sent < window_to]
    assert {name for name, _ in fallback} == kinds and {v for _, v in fallback} == {OLD}
    assert latest("recommend") == latest("similar") == NEW
