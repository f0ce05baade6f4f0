"""The load generator: report statistics on hand-made samples, the closed and open loops
against the real echo server, every workload against the real stack, and `recsys loadtest`
end to end. No test asserts a speed."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest
from prometheus_client import REGISTRY

from recsys.cli import main
from recsys.errors import InvalidArgument
from recsys.loadtest import (
    LoadSettings,
    Sample,
    Targets,
    Workload,
    build_workload,
    parse_mix,
    run_load,
    summarize,
)
from recsys.loadtest.echo import start_echo_server
from recsys.loadtest.population import Population, UserRatings
from recsys.loadtest.report import latency_histogram
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack

MS = 1_000_000  # ns


# --- statistics -------------------------------------------------------------------------


def test_summary_of_hand_made_latencies():
    # 20 requests, in ms: ten of 1, five of 2, then 3, 4, 5, 10, 50.
    latencies = [1] * 10 + [2] * 5 + [3, 4, 5, 10, 50]
    statuses = ["OK"] * 17 + ["UNAVAILABLE", "UNAVAILABLE", "DEADLINE_EXCEEDED"]
    details = [None] * 17 + ["failed to connect", "failed to connect", "Deadline Exceeded"]
    rpcs = ["recommend-stored"] * 15 + ["similar"] * 5
    samples = [
        Sample(rpc, ms * MS, status, detail)
        for rpc, ms, status, detail in zip(rpcs, latencies, statuses, details, strict=True)
    ]
    report = summarize(samples, elapsed_s=2.0, workload="recommend-stored=0.75,similar=0.25")

    # Nearest rank: pX = sorted[ceil(X/100 · 20) − 1] (0-based).
    # p50 → [9] = 1; p90 → [17] = 5; p95 → [18] = 10; p99 → [19] = 50; p99.9 → [19] = 50.
    # mean = (10·1 + 5·2 + 3 + 4 + 5 + 10 + 50) / 20 = 92 / 20 = 4.6.
    stats = report.latency
    assert (stats.min, stats.p50, stats.p90, stats.p95, stats.p99, stats.p999, stats.max) == (
        1,
        1,
        5,
        10,
        50,
        50,
        50,
    )
    assert stats.mean == pytest.approx(4.6)
    # 10 buckets of (50 − 1) / 10 = 4.9 ms from 1: [1, 5.9) holds 1·10, 2·5, 3, 4, 5 = 18;
    # [5.9, 10.8) holds 10; the last, [45.1, 50], holds 50; the rest are empty.
    assert [b.count for b in report.histogram] == [18, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert report.histogram[0].from_ms == 1 and report.histogram[-1].to_ms == 50
    assert sum(b.count for b in report.histogram) == report.count == 20
    # 20 requests in 2 s → 10 RPS; 17 OK → 8.5 RPS.
    assert (report.rps, report.rps_ok) == (10, 8.5)
    assert report.status_codes == {"OK": 17, "UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1}
    assert [(e.status, e.details, e.count) for e in report.errors] == [
        ("UNAVAILABLE", "failed to connect", 2),
        ("DEADLINE_EXCEEDED", "Deadline Exceeded", 1),
    ]
    # similar: 3, 4, 5, 10, 50 → p50 = [ceil(2.5) − 1] = [2] = 5, p99 = [4] = 50; 2 OK.
    # recommend-stored: ten 1s, five 2s → p50 = [7] = 1, p99 = [ceil(14.85) − 1] = [14] = 2.
    similar, stored = report.by_rpc["similar"], report.by_rpc["recommend-stored"]
    assert (similar.count, similar.ok, similar.p50_ms, similar.p99_ms) == (5, 2, 5, 50)
    assert (stored.count, stored.ok, stored.p50_ms, stored.p99_ms) == (15, 15, 1, 2)

    document = json.loads(json.dumps(report.to_json()))
    assert document["latency_ms"]["p99.9"] == 50 and document["rps_ok"] == 8.5
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["python"]
    text = report.to_text()
    assert "failed to connect" in text and "DEADLINE_EXCEEDED" in text and "By rpc" in text


def test_histogram_edges_and_an_empty_run():
    assert latency_histogram(np.array([])) == []
    (only,) = latency_histogram(np.array([2.0, 2.0, 2.0]))
    assert (only.from_ms, only.to_ms, only.count) == (2.0, 2.0, 3)
    empty = summarize([], elapsed_s=1.0, workload="health")
    assert (empty.count, empty.rps, empty.latency, empty.histogram) == (0, 0, None, [])
    assert "0 requests" in empty.to_text()


# --- settings and workloads (no server) -------------------------------------------------


def test_settings_targets_and_mix_are_checked():
    assert LoadSettings().concurrency == 16 and not LoadSettings().open_loop
    assert LoadSettings(rate=50).in_flight_limit == 500
    for bad in (
        {"concurrency": 4, "rate": 10},
        {"concurrency": 0},
        {"rate": -1},
        {"duration_s": 0},
        {"warmup_s": -1},
        {"deadline_ms": 0},
    ):
        with pytest.raises(InvalidArgument):
            LoadSettings(**bad)
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        Targets(gateway="localhost")
    with pytest.raises(InvalidArgument, match="--model-target"):
        Targets(gateway="127.0.0.1:1").address("model")
    assert Targets(model="127.0.0.1:2").address("health") == "127.0.0.1:2"

    assert parse_mix("recommend-stored=0.7, similar=0.2,rate=0.1") == [
        ("recommend-stored", 0.7),
        ("similar", 0.2),
        ("rate", 0.1),
    ]
    assert parse_mix("health") == [("health", 1.0)]
    for bad, message in (
        ("similar=x", "bad weight"),
        ("similar=0", "bad weight"),
        ("similar=-1", "bad weight"),
        ("similar=inf", "bad weight"),
        ("recommend=1", "unknown rpc"),
        ("similar=1,similar=2", "twice"),
        (" , ", "empty"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            parse_mix(bad)


def test_workloads_are_seeded_and_follow_the_data():
    population = Population(
        user_ids=[1, 2, 3],
        movie_ids=[10, 20, 30, 40, 50, 60],
        rating_scale=(0.5, 5.0),
        user_ratings=UserRatings.from_columns(
            [2, 1, 2, 1, 2], [10, 20, 30, 40, 50], [4.0, 3.5, 5.0, 1.0, 2.5]
        ),
    )
    spec = parse_mix("recommend-stored=2,recommend-inline=1,similar=1,rate=1,health=1")

    def calls(seed):
        workload = Workload(spec, population, seed)
        return [workload() for _ in range(300)]

    first, again, other = calls(0), calls(0), calls(1)
    assert [(c.rpc, c.request) for c in first] == [(c.rpc, c.request) for c in again]
    assert [(c.rpc, c.request) for c in first] != [(c.rpc, c.request) for c in other]
    assert {c.rpc for c in first} == {name for name, _ in spec}
    for call in first:
        request = call.request
        if call.rpc == "recommend-stored":
            assert request.user_id in (1, 2, 3) and request.k == 10
        elif call.rpc == "recommend-inline":
            pairs = {(r.movie_id, r.rating) for r in request.inline_ratings.ratings}
            assert pairs in ({(20, 3.5), (40, 1.0)}, {(10, 4.0), (30, 5.0), (50, 2.5)})
        elif call.rpc == "similar":
            assert request.movie_id in population.movie_ids and request.k == 10
        elif call.rpc == "rate":
            movies = [r.movie_id for r in request.ratings]
            assert 1 <= len(movies) <= 5 and len(set(movies)) == len(movies)
            assert all(
                r.rating * 2 == int(r.rating * 2) and 0.5 <= r.rating <= 5 for r in request.ratings
            )
    rated = [r.rating for c in first if c.rpc == "rate" for r in c.request.ratings]
    assert any(r != int(r) for r in rated)  # ml-latest's scale: half stars occur
    assert Population([1]).rating_values() == [1.0, 2.0, 3.0, 4.0, 5.0]


# --- the loops against the echo server --------------------------------------------------


async def against_echo(settings: LoadSettings, spec: str = "health"):
    """Run the load test in this event loop against an echo server started in it too."""
    echo = await start_echo_server()
    try:
        targets = Targets(gateway=f"127.0.0.1:{echo.port}")
        return await run_load(settings, targets, await build_workload(spec, targets))
    finally:
        await echo.stop(0)


def test_closed_loop_against_the_echo_server():
    report = asyncio.run(against_echo(LoadSettings(concurrency=4, duration_s=1.0, warmup_s=0.2)))
    assert report.count > 0 and report.status_codes == {"OK": report.count}
    assert report.errors == [] and report.dropped == 0
    # every recorded request answered and counted once
    assert len(report.samples) == len(report.latencies_ms) == report.count
    assert sum(b.count for b in report.histogram) == report.count
    assert report.settings["mode"] == "closed" and report.settings["concurrency"] == 4
    assert report.targets == {"health": report.targets["health"]}


def test_open_loop_sends_about_rate_times_duration():
    settings = LoadSettings(rate=200, duration_s=1.0, warmup_s=0.2, seed=3)
    report = asyncio.run(against_echo(settings))
    # Poisson arrivals: 200 expected, standard deviation √200 ≈ 14; the bound is loose.
    assert 100 <= report.count + report.dropped <= 300
    assert report.status_codes == {"OK": report.count}
    assert report.settings["mode"] == "open" and report.settings["rate"] == 200


def test_a_server_that_never_answers_is_reported_as_deadline_exceeded():
    # A listening socket nobody serves: TCP connects, the HTTP/2 handshake never ends, so
    # every call runs into its deadline. (gRPC deadlines have millisecond granularity: a
    # 0.001 ms deadline against a fast server still lets some calls through.)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()

        async def run():
            targets = Targets(gateway=f"127.0.0.1:{hung.getsockname()[1]}")
            settings = LoadSettings(concurrency=2, duration_s=0.3, warmup_s=0, deadline_ms=50)
            return await run_load(settings, targets, await build_workload("health", targets))

        report = asyncio.run(run())
    assert report.count > 0 and report.ok == 0
    assert report.status_codes == {"DEADLINE_EXCEEDED": report.count}
    assert report.errors[0].status == "DEADLINE_EXCEEDED" and report.errors[0].details
    assert report.latency.min >= 49  # each call waited for its whole deadline


def test_a_target_that_is_down_is_reported_not_raised():
    with socket.socket() as probe:  # a port nobody listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def run():
        targets = Targets(gateway=f"127.0.0.1:{port}")
        settings = LoadSettings(concurrency=2, duration_s=0.3, warmup_s=0)
        return await run_load(settings, targets, await build_workload("health", targets))

    report = asyncio.run(run())
    assert report.count > 0 and set(report.status_codes) == {"UNAVAILABLE"}
    assert report.errors[0].status == "UNAVAILABLE" and report.errors[0].details


def test_the_chained_echo_server_calls_each_upstream_in_turn():
    """The topology floor of bench/serving.py: front → upstream, then → a second upstream.
    Live upstreams: every call OK. A second upstream whose own upstream is down: every
    call fails with the status the failing hop answered, so no hop is skipped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{probe.getsockname()[1]}"

    async def run(second_upstream_of: list[str]):
        first = await start_echo_server()
        second = await start_echo_server(upstreams=second_upstream_of)
        front = await start_echo_server(
            upstreams=[f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
        )
        try:
            targets = Targets(gateway=f"127.0.0.1:{front.port}")
            settings = LoadSettings(concurrency=2, duration_s=0.3, warmup_s=0)
            return await run_load(settings, targets, await build_workload("health", targets))
        finally:
            for server in (front, second, first):
                await server.stop(0)

    live = asyncio.run(run([]))
    assert live.count > 0 and live.status_codes == {"OK": live.count}
    broken = asyncio.run(run([down]))
    assert broken.count > 0 and set(broken.status_codes) == {"UNAVAILABLE"}
    assert "upstream" in broken.errors[0].details


def test_the_coalesced_echo_chain_batches_its_upstream_calls():
    """The coalesced floor of bench/serving.py: concurrent Checks reach each upstream as
    fewer raw batch calls than Checks, every Check OK; a dead upstream fails every Check."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{probe.getsockname()[1]}"

    def batch_calls(upstream: str) -> float:
        labels = {"upstream": upstream}
        return REGISTRY.get_sample_value("recsys_gateway_batch_size_count", labels) or 0.0

    async def run(upstreams_of):
        first, second = await start_echo_server(), await start_echo_server()
        live = [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"]
        front = await start_echo_server(upstreams=upstreams_of(live), coalesce=True)
        try:
            targets = Targets(gateway=f"127.0.0.1:{front.port}")
            settings = LoadSettings(concurrency=16, duration_s=0.5, warmup_s=0)
            return await run_load(settings, targets, await build_workload("health", targets))
        finally:
            for server in (front, second, first):
                await server.stop(0)

    before = batch_calls("echo-1")
    report = asyncio.run(run(lambda live: live))
    assert report.count > 0 and report.status_codes == {"OK": report.count}
    assert 0 < batch_calls("echo-1") - before < report.count
    broken = asyncio.run(run(lambda live: [live[0], down]))
    assert broken.count > 0 and set(broken.status_codes) == {"UNAVAILABLE"}


class EchoService:
    """The echo server with the start / stop / port shape `ServiceThread` runs."""

    port = 0

    async def start(self) -> None:
        self.echo = await start_echo_server()
        self.port = self.echo.port

    async def stop(self, grace: float) -> None:
        await self.echo.stop(grace)


async def echo_service() -> EchoService:
    return EchoService()


def test_cli_against_the_echo_server(tmp_path, capsys):
    with ServiceThread(echo_service) as echo:
        address = echo.address
        code = main(
            ["loadtest", "--target", address, "--rpc", "health", "--concurrency", "2"]
            + ["--duration", "0.5", "--warmup", "0.1", "--json", str(tmp_path / "r.json")]
            + ["--png", str(tmp_path / "latency.png")]
        )
    assert code == 0
    out, err = capsys.readouterr()
    assert "Requests/sec" in out and "Latency histogram (ms)" in out and "OK" in out
    progress = [line for line in err.splitlines() if line.startswith("loadtest:")]
    assert progress and "100%" in progress[-1] and "requests=" in progress[-1]
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["settings"]["rpc"] == "health"
    assert document["settings"]["targets"] == {"health": address}
    assert document["settings"]["concurrency"] == 2 and document["settings"]["deadline_ms"] == 1000
    assert document["count"] == document["status_codes"]["OK"] > 0
    assert sum(b["count"] for b in document["histogram_ms"]) == document["count"]
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rpc", "health", "--concurrency", "4", "--rate", "10"], "not both"),
        (["--rpc", "recommend"], "unknown rpc 'recommend'"),
        (["--mix", "recommend-stored=0.7,similar=abc"], "bad weight 'abc' for similar"),
        (["--rpc", "health", "--mix", "health=1"], "--rpc NAME or --mix"),
        ([], "--rpc NAME or --mix"),
        (["--rpc", "predict"], "--model-target"),
        (["--rpc", "health", "--duration", "0"], "--duration"),
    ],
)
def test_cli_refuses_bad_flags_in_one_line(flags, message, capsys):
    assert main(["loadtest", "--target", "127.0.0.1:9", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("recsys loadtest: ")


def test_cli_refuses_a_malformed_target(capsys):
    assert main(["loadtest", "--target", "localhost", "--rpc", "health"]) == 2
    assert "bad --target 'localhost': expected HOST:PORT" in capsys.readouterr().err


# --- every workload against the real stack ----------------------------------------------


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    with running_stack(trained_run, redis_server.url) as running:
        yield running


def stack_targets(stack) -> Targets:
    return Targets(
        gateway=stack.gateway.address, model=stack.model.address, feature=stack.features.address
    )


def load_stack(stack, spec: str, warmup_s: float = 0.1, **workload_options):
    async def run():
        targets = stack_targets(stack)
        workload = await build_workload(spec, targets, **workload_options)
        settings = LoadSettings(concurrency=4, duration_s=0.5, warmup_s=warmup_s)
        return await run_load(settings, targets, workload)

    return asyncio.run(run())


@pytest.mark.slow
@pytest.mark.parametrize("rpc", ["recommend-stored", "recommend-inline", "similar", "predict"])
def test_workloads_get_only_ok_from_the_stack(stack, rpc):
    report = load_stack(stack, rpc, data=stack.data)
    assert report.count > 0
    assert report.status_codes == {"OK": report.count}, report.errors
    role = "model" if rpc == "predict" else "gateway"
    assert report.targets == {role: getattr(stack_targets(stack), role)}


@pytest.mark.slow
def test_without_data_ids_come_from_the_feature_service(stack):
    users = int(stack.data.ratings["user_id"].max())
    for rpc in ("recommend-inline", "similar"):
        report = load_stack(stack, rpc, users=users)
        assert report.count > 0 and report.status_codes == {"OK": report.count}, report.errors


def revisions(stack) -> dict[int, int]:
    """Every user's write revision in the stack's Redis."""
    import redis

    from recsys.featurestore.layout import KeyLayout

    with redis.Redis.from_url(stack.redis_url) as client:
        keys = list(client.scan_iter(match=b"recsys:rev:{*}"))
        values = client.mget(keys) if keys else []
    return {KeyLayout.user_of_ratings_key(k): int(v) for k, v in zip(keys, values, strict=True)}


@pytest.mark.slow
def test_rate_writes_through_the_stack(stack):
    """Every RateItems is OK and lands: the users' revisions moved (at most once per write:
    writes of one user may share a round), and each written user's features hold exactly
    their stored ratings."""
    import redis

    from recsys.featurestore import layout
    from recsys.featurestore.layout import KeyLayout

    before = revisions(stack)
    report = load_stack(stack, "rate", warmup_s=0.0, data=stack.data)  # every write counted
    assert report.count > 0 and report.status_codes == {"OK": report.count}, report.errors
    written = {u: r - before.get(u, 0) for u, r in revisions(stack).items() if r != before.get(u)}
    assert 1 <= sum(written.values()) <= report.count
    keys = KeyLayout()
    with redis.Redis.from_url(stack.redis_url) as client:
        for user_id in written:
            ratings = layout.decode_ratings(client.hgetall(keys.ratings(user_id)))
            packed = client.hget(keys.user(stack.artifact.version, user_id), "ratings")
            assert layout.decode_packed_ratings(packed) == ratings, user_id


@pytest.mark.slow
def test_cli_mix_against_the_stack(stack, synthetic_dir, tmp_path, capsys):
    code = main(
        ["loadtest", "--target", stack.gateway.address, "--data", str(synthetic_dir)]
        + ["--mix", "recommend-stored=0.7,similar=0.2,rate=0.1", "--concurrency", "4"]
        + ["--duration", "0.5", "--warmup", "0.1", "--json", str(tmp_path / "mix.json")]
        + ["--png", str(tmp_path / "mix.png")]
    )
    assert code == 0
    document = json.loads((tmp_path / "mix.json").read_text())
    assert document["settings"]["mix"] == {"recommend-stored": 0.7, "similar": 0.2, "rate": 0.1}
    assert (
        document["by_rpc"]["recommend-stored"]["ok"]
        == document["by_rpc"]["recommend-stored"]["count"]
    )
    assert sum(document["status_codes"].values()) == document["count"] > 0
    assert (tmp_path / "mix.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "By rpc" in capsys.readouterr().out
