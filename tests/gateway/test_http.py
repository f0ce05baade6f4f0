"""The gateway's HTTP/JSON side through a real HTTP client (aiohttp's) against the real
stack: every public RPC as JSON by the proto3 mapping, the same answers as over gRPC, errors
as google.rpc.Status with the matching HTTP status and field violations, the bearer token,
the deadline header, request ids, metrics, HTTPS and mutual TLS."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
from dataclasses import dataclass

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from recsys import openapi
from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.http_rules import service_bindings
from recsys.redis_server import free_port
from recsys.serving.config import Settings
from services.gateway.server import create_server as gateway_server
from services.gateway.upstream import Upstreams
from tests.serving.test_prometheus_metrics import scrape
from tests.support.certs import make_certificates, make_generation
from tests.support.servers import ServiceThread
from tests.support.stack import running_stack

pytestmark = pytest.mark.slow

SERVICE = pb.DESCRIPTOR.services_by_name["GatewayService"]
CLIENT_TOKEN = "http-client-token"
SERVICE_TOKEN = "http-service-token"


@dataclass
class Reply:
    status: int
    headers: CIMultiDict  # names case-insensitive
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    body=None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Reply:
    """One request with a fresh aiohttp client session (its own event loop)."""

    async def send() -> Reply:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                url,
                json=body,
                data=raw,
                headers=headers,
                ssl=ssl_context if ssl_context is not None else True,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response,
        ):
            return Reply(response.status, CIMultiDict(response.headers), await response.read())

    return asyncio.run(send())


def as_json(message) -> dict:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


@pytest.fixture(scope="module")
def stack(trained_run, redis_server):
    settings = {"http_port": free_port(), "metrics_port": free_port()}
    with running_stack(trained_run, redis_server.url, gateway_settings=settings) as running:
        yield running


@pytest.fixture(scope="module")
def base(stack) -> str:
    return f"http://127.0.0.1:{stack.gateway.service.http.port}"


def inline(ratings: dict[int, float]) -> dict:
    return {"ratings": [{"movieId": m, "rating": r} for m, r in ratings.items()]}


FAN = {1: 5.0, 5: 5.0, 9: 4.0, 2: 1.0}


def test_every_rpc_has_a_route_read_from_its_annotation():
    bound = {b.rpc for b in service_bindings(SERVICE)}
    assert bound == {m.name for m in SERVICE.methods}


def test_recommend_answers_what_grpc_answers(stack, base):
    reply = http("POST", f"{base}/v1/recommend", body={"inlineRatings": inline(FAN), "k": 5})
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    expected = stack.stub.Recommend(
        pb.RecommendRequest(
            inline_ratings=pb.InlineRatings(
                ratings=[pb.Rating(movie_id=m, rating=r) for m, r in FAN.items()]
            ),
            k=5,
        )
    )
    body = reply.json()
    assert body == as_json(expected)
    # the proto3 JSON mapping: lowerCamelCase names, int64 as strings, doubles as numbers
    first = body["items"][0]
    assert set(first) == {"movieId", "title", "genres", "predictedRating"}
    assert isinstance(first["movieId"], str) and int(first["movieId"]) > 0
    assert isinstance(first["predictedRating"], float)
    assert body["ignoredMovieIds"] == []  # empty fields are present, not left out


def test_a_stored_user_by_path_and_query_with_either_field_name(stack, base):
    expected = as_json(
        stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=4, rank_by=pb.RANK_BY_RATING))
    )
    for query in ("k=4&rankBy=RANK_BY_RATING", "k=4&rank_by=RANK_BY_RATING"):
        reply = http("GET", f"{base}/v1/users/3/recommendations?{query}")
        assert reply.status == 200, reply.body
        assert reply.json() == expected
    # snake_case names in a JSON body are accepted too
    snake = http("POST", f"{base}/v1/recommend", body={"user_id": "3", "k": 4, "rank_by": 1})
    assert snake.json() == expected


def test_predict_ratings_similar_items_and_explain(stack, base):
    ratings = pb.InlineRatings(ratings=[pb.Rating(movie_id=m, rating=r) for m, r in FAN.items()])
    predicted = http(
        "POST",
        f"{base}/v1/predictRatings",
        body={"inlineRatings": inline(FAN), "movieIds": ["7", 3]},
    )
    assert predicted.json() == as_json(
        stack.stub.PredictRatings(
            pb.PredictRatingsRequest(inline_ratings=ratings, movie_ids=[7, 3])
        )
    )
    similar = http("GET", f"{base}/v1/movies/1/similar?k=3&metric=METRIC_COSINE&farthest=true")
    assert similar.status == 200, similar.body
    assert similar.json() == as_json(
        stack.stub.SimilarItems(
            pb.SimilarItemsRequest(movie_id=1, k=3, metric=pb.METRIC_COSINE, farthest=True)
        )
    )
    explained = http(
        "POST",
        f"{base}/v1/explainPrediction",
        body={"inlineRatings": inline(FAN), "movieId": 7, "maxContributions": 2},
    )
    assert explained.json() == as_json(
        stack.stub.ExplainPrediction(
            pb.ExplainPredictionRequest(inline_ratings=ratings, movie_id=7, max_contributions=2)
        )
    )
    assert len(explained.json()["contributions"]) == 2


def test_search_movies_pages_through_the_catalog(stack, base):
    catalog = stack.data.items
    matching = catalog[catalog["title"].str.lower().str.contains("movie 1")]
    first = http("GET", f"{base}/v1/movies:search?query=MOVIE%201&pageSize=3")
    assert first.status == 200, first.body
    page = first.json()
    assert page["totalSize"] == len(matching) > 3
    assert page["modelVersion"] == stack.artifact.version
    assert len(page["movies"]) == 3 and page["nextPageToken"]
    assert all("movie 1" in m["title"].lower() for m in page["movies"])
    assert page == as_json(
        stack.stub.SearchMovies(pb.SearchMoviesRequest(query="movie 1", page_size=3))
    )
    seen = [m["movieId"] for m in page["movies"]]
    token = page["nextPageToken"]
    while token:
        page = http(
            "GET", f"{base}/v1/movies:search?query=movie+1&pageSize=3&pageToken={token}"
        ).json()
        seen += [m["movieId"] for m in page["movies"]]
        token = page["nextPageToken"]
    assert sorted(map(int, seen)) == sorted(matching["item_id"].tolist())
    other = http(
        "GET", f"{base}/v1/movies:search?query=movie+2&pageToken={first.json()['nextPageToken']}"
    )
    assert other.status == 400 and field_of(other) == "page_token"


def test_writes_create_rate_delete(stack, base):
    user = 777_001
    created = http(
        "POST",
        f"{base}/v1/users/{user}/ratings",
        body={"ratings": [{"movieId": 1, "rating": 4}, {"movie_id": "2", "rating": 2.5}]},
    )
    assert created.status == 200, created.body
    state = created.json()
    assert state["created"] is True and state["user"]["userId"] == str(user)
    assert {r["movieId"]: r["rating"] for r in state["user"]["ratings"]} == {"1": 4.0, "2": 2.5}
    # the path wins over the body
    again = http(
        "POST",
        f"{base}/v1/users/{user}/ratings",
        body={"userId": 5, "ratings": [{"movieId": 3, "rating": 3}]},
    )
    assert again.json()["created"] is False and again.json()["user"]["userId"] == str(user)
    deleted = http("POST", f"{base}/v1/users/{user}/ratings:delete", body={"movieIds": [2, 999999]})
    assert deleted.status == 200, deleted.body
    assert deleted.json()["missingMovieIds"] == ["999999"]
    gone = http("DELETE", f"{base}/v1/users/{user}")
    assert gone.status == 200 and gone.json() == {"ratingsDeleted": 2}
    missing = http("DELETE", f"{base}/v1/users/{user}")
    assert missing.status == 404 and missing.json()["code"] == grpc.StatusCode.NOT_FOUND.value[0]


def field_of(reply: Reply) -> str | None:
    """The first BadRequest field violation of an error body."""
    for detail in reply.json().get("details", []):
        if detail["@type"].endswith("google.rpc.BadRequest"):
            return detail["fieldViolations"][0]["field"]
    return None


def test_an_invalid_k_is_400_with_the_grpc_message_and_field_violation(stack, base):
    reply = http("POST", f"{base}/v1/recommend", body={"userId": 3, "k": 5000})
    assert reply.status == 400
    body = reply.json()
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.Recommend(pb.RecommendRequest(user_id=3, k=5000))
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert body["message"] == caught.value.details()
    assert field_of(reply) == "k"
    violation = body["details"][0]["fieldViolations"][0]
    assert violation["description"] == caught.value.details()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "names"),
    [
        ("POST", "/v1/recommend", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/recommend", b"[1, 2]", 400, "JSON object"),
        ("POST", "/v1/recommend", b'{"userId": 3, "kk": 1}', 400, '"kk"'),
        ("POST", "/v1/recommend", b'{"userId": 3, "k": "many"}', 400, "k"),
        ("POST", "/v1/recommend", b'{"userId": 3, "rankBy": "RANK_BY_LUCK"}', 400, "RANK_BY_LUCK"),
        ("POST", "/v1/recommend?k=3", b'{"userId": 3}', 400, "query string"),
        ("GET", "/v1/users/3/recommendations?kay=3", None, 400, "'kay'"),
        ("GET", "/v1/users/abc/recommendations", None, 400, "user_id"),
        ("GET", "/v1/movies/1/similar?farthest=maybe", None, 400, "farthest"),
        ("GET", "/v1/movies/1/similar?k=1&k=2", None, 400, "2 times"),
        ("GET", "/v1/movies:search?query=", None, 400, "query"),
        ("GET", "/v1/movies/999999/similar", None, 404, "999999"),
        ("GET", "/v1/nothing-here", None, 404, "/v1/nothing-here"),
        ("DELETE", "/v1/recommend", None, 405, "Method Not Allowed"),
    ],
)
def test_bad_requests_get_a_status_naming_the_problem(base, method, path, body, status, names):
    reply = http(method, f"{base}{path}", raw=body)
    assert reply.status == status, reply.body
    error = reply.json()
    assert set(error) == {"code", "message", "details"}
    assert names in error["message"], error
    assert "Traceback" not in error["message"]
    if status == 405:
        assert reply.headers["Allow"] == "POST"


def test_field_violations_of_the_json_name(base):
    reply = http(
        "POST",
        f"{base}/v1/recommend",
        body={"inlineRatings": {"ratings": [{"movieId": 1, "rating": "five"}]}},
    )
    assert reply.status == 400 and field_of(reply) == "inlineRatings.ratings[0].rating"
    out_of_scale = http("POST", f"{base}/v1/recommend", body={"inlineRatings": inline({1: 9})})
    assert field_of(out_of_scale) == "inline_ratings.ratings.rating"  # the gRPC side's


def test_request_ids_are_echoed_or_made(base):
    given = http("GET", f"{base}/v1/movies/1/similar", headers={"X-Request-Id": "req-http-1"})
    assert given.headers["X-Request-Id"] == "req-http-1"
    made = http("GET", f"{base}/v1/movies/1/similar")
    assert len(made.headers["X-Request-Id"]) == 32
    failed = http("GET", f"{base}/nowhere", headers={"X-Request-Id": "req-http-2"})
    assert failed.status == 404 and failed.headers["X-Request-Id"] == "req-http-2"


def test_stage_timings_come_back_as_a_header(base):
    reply = http("POST", f"{base}/v1/recommend", body={"userId": 3})
    stages = dict(part.split("=") for part in reply.headers["Recsys-Stage-Ms"].split(","))
    assert set(stages) == {"features", "model", "rank"}


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "soon", "99999999999"])
def test_a_malformed_timeout_header_is_400(base, value):
    reply = http("GET", f"{base}/v1/movies/1/similar", headers={"X-Timeout-Ms": value})
    assert reply.status == 400 and field_of(reply) == "X-Timeout-Ms"


def test_metrics_count_http_requests_beside_rpcs(stack, base):
    port = stack.gateway.service.settings.metrics_port
    label = 'recsys_http_requests_total{route="GET /v1/movies/{movie_id}/similar",status="200"}'
    rpc = 'recsys_rpcs_total{code="OK",method="/recsys.gateway.v1.GatewayService/SimilarItems"}'
    before = scrape(port)
    assert http("GET", f"{base}/v1/movies/1/similar").status == 200
    assert http("GET", f"{base}/v1/missing").status == 404
    after = scrape(port)
    assert after[label] == before.get(label, 0) + 1
    assert after[rpc] >= before.get(rpc, 0) + 1  # the forwarded call, counted as an RPC
    unmatched = 'recsys_http_requests_total{route="unmatched",status="404"}'
    assert after[unmatched] == before.get(unmatched, 0) + 1
    histogram = 'recsys_http_request_seconds_count{route="GET /v1/movies/{movie_id}/similar"}'
    assert after[histogram] == before.get(histogram, 0) + 1


def test_openapi_document_and_page_are_served(base):
    document = http("GET", f"{base}/openapi.json")
    assert document.status == 200 and document.body == openapi.served_document()
    page = http("GET", f"{base}/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Server"] == "recsys-gateway"  # no versions
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert b"/static/app.js" in page.body
    script = http("GET", f"{base}/static/app.js")
    assert script.status == 200 and b"/v1/recommend" in script.body


@pytest.fixture(scope="module")
def auth_stack(trained_run, redis_server):
    settings = {
        "http_port": free_port(),
        "auth_tokens": CLIENT_TOKEN,
        "auth_reads": True,
        "upstream_token": SERVICE_TOKEN,
    }
    with running_stack(
        trained_run,
        redis_server.url,
        server_settings={"auth_tokens": SERVICE_TOKEN},
        gateway_settings=settings,
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer not-the-token"}, 403),
        ({"Authorization": f"Bearer {CLIENT_TOKEN}"}, 200),
    ],
)
def test_the_bearer_token_is_the_grpc_one(auth_stack, headers, status):
    base = f"http://127.0.0.1:{auth_stack.gateway.service.http.port}"
    write = http(
        "POST",
        f"{base}/v1/users/777002/ratings",
        body={"ratings": [{"movieId": 1, "rating": 4}]},
        headers=headers,
    )
    read = http("GET", f"{base}/v1/movies/1/similar", headers=headers)  # AUTH_READS
    for reply in (write, read):
        assert reply.status == status, reply.body
    if status == 401:
        assert write.headers["WWW-Authenticate"] == "Bearer"
        assert write.json()["code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]
    # the page and the document need no token
    assert http("GET", f"{base}/").status == 200
    assert http("GET", f"{base}/openapi.json").status == 200


def test_the_timeout_header_is_the_calls_deadline():
    """A model service that records the deadline it gets and never answers: X-Timeout-Ms
    reaches it as the call's remaining time, and the HTTP answer is 504."""
    from recsys.api.model.v1 import model_pb2_grpc
    from recsys.serving.server import Service

    seen: list[float] = []

    class SlowModel(model_pb2_grpc.ModelServiceServicer):
        async def GetModelInfo(self, request, context):
            seen.append(context.time_remaining())
            await asyncio.sleep(2.0)
            raise AssertionError("the caller should have given up")

    async def serving() -> bool:
        return True

    async def model():
        service = Service(Settings(), ["recsys.model.v1.ModelService"])
        model_pb2_grpc.add_ModelServiceServicer_to_server(SlowModel(), service.server)
        service.bind(0)
        service.watch_readiness(serving)
        return service

    with ServiceThread(model) as slow:
        settings = Settings(
            gateway_port=0,
            http_port=free_port(),
            feature_addr=slow.address,
            model_addr=slow.address,
            upstream_timeout_s=5.0,
        )

        async def gateway():
            return await gateway_server(settings, Upstreams.connect(settings))

        with ServiceThread(gateway) as running:
            reply = http(
                "GET",
                f"http://127.0.0.1:{running.service.http.port}/v1/movies/1/similar",
                headers={"X-Timeout-Ms": "400"},
            )
    assert reply.status == 504, reply.body
    assert reply.json()["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    # the header's 0.4 s (each hop restarts the clock on receipt, so a little more may be
    # seen), not UPSTREAM_TIMEOUT_S's 5 s
    assert len(seen) == 1 and 0 < seen[0] < 0.5, seen


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("http-certs"))


def lone_gateway(**overrides) -> ServiceThread:
    """A gateway with HTTP on whose upstreams are not there (its page still answers)."""
    settings = Settings(
        gateway_port=0,
        http_port=free_port(),
        feature_addr=f"127.0.0.1:{free_port()}",
        model_addr=f"127.0.0.1:{free_port()}",
        **overrides,
    )

    async def gateway():
        return await gateway_server(settings, Upstreams.connect(settings))

    return ServiceThread(gateway)


def client_context(ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def test_https_with_the_grpc_certificate_and_mutual_tls(certs):
    files = {"tls_cert_file": certs.cert, "tls_key_file": certs.key, "tls_ca_file": certs.ca}
    with lone_gateway(**files, tls_client_auth=True) as running:
        url = f"https://127.0.0.1:{running.service.http.port}/openapi.json"
        good = http("GET", url, ssl_context=client_context(certs.ca, certs.cert, certs.key))
        assert good.status == 200
        for refused in (
            client_context(certs.ca),  # no client certificate
            client_context(certs.ca, certs.rogue_cert, certs.rogue_key),  # not of our CA
        ):
            with pytest.raises(aiohttp.ClientError):
                http("GET", url, ssl_context=refused)
        with pytest.raises(aiohttp.ClientError):
            http("GET", url.replace("https:", "http:"))
        # the RPCs answer over HTTPS too (503: the upstreams are down)
        rpc = http(
            "GET",
            url.replace("/openapi.json", "/v1/movies/1/similar"),
            ssl_context=client_context(certs.ca, certs.cert, certs.key),
        )
        assert rpc.status == 503 and rpc.json()["code"] == grpc.StatusCode.UNAVAILABLE.value[0]


def test_https_takes_renewed_certificate_files(tmp_path):
    """Files replaced in place (as a mounted Secret is): new connections get the new
    certificate, without a restart."""
    import os
    import shutil

    first, second = make_generation(tmp_path, "first"), make_generation(tmp_path, "second")
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    with lone_gateway(tls_cert_file=str(cert), tls_key_file=str(key)) as running:
        url = f"https://127.0.0.1:{running.service.http.port}/openapi.json"
        assert http("GET", url, ssl_context=client_context(first.ca)).status == 200
        for source, target in ((second.key, key), (second.cert, cert)):
            staged = target.with_suffix(".new")
            shutil.copy(source, staged)
            os.replace(staged, target)
        assert http("GET", url, ssl_context=client_context(second.ca)).status == 200
        with pytest.raises(aiohttp.ClientError):
            http("GET", url, ssl_context=client_context(first.ca))


def test_docs_give_the_status_mapping_the_code_uses():
    """docs/http.md's error table is the mapping of services.gateway.http.status."""
    import re
    from pathlib import Path

    from services.gateway.http.status import HTTP_STATUS

    text = (Path(__file__).resolve().parents[2] / "docs" / "http.md").read_text()
    table = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = {}
    for line in table.splitlines():
        # "| `NOT_FOUND` (5) | 404 |" or "| `UNKNOWN` (2), `INTERNAL` (13) | 500 |", two per row
        for names, status in re.findall(r"((?:`\w+` \(\d+\),? ?)+)\| (\d+)", line):
            for name, number in re.findall(r"`(\w+)` \((\d+)\)", names):
                documented[name] = (int(number), int(status))
    expected = {
        code.name: (code.value[0], status)
        for code, status in HTTP_STATUS.items()
        if code is not grpc.StatusCode.OK
    }
    assert documented == expected


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def json_bodies(fields: list[str]):
    """JSON objects whose keys are mostly the request's own field names (so the values reach
    the gRPC side's checks), sometimes not."""
    keys = st.sampled_from(fields) | st.text(max_size=12)
    return st.dictionaries(keys, JSON_VALUES, max_size=5)


@pytest.mark.parametrize(
    "binding", service_bindings(SERVICE), ids=lambda b: b.route.replace(" ", "_")
)
def test_fuzzed_requests_get_an_answer_never_a_crash(base, binding):
    """Random JSON bodies, query strings and path values on every route: a JSON answer
    with a 2xx or 4xx status (never a 500 or 501) and the Status shape on errors."""
    request = SERVICE.methods_by_name[binding.rpc].input_type
    names = [f.json_name for f in request.fields] + [f.name for f in request.fields]
    path_value = st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#%"),
        min_size=1,
        max_size=12,
    ) | st.integers(min_value=-(2**63), max_value=2**63).map(str)

    @settings(max_examples=25, deadline=None, database=None)
    @given(
        body=json_bodies(names),
        query=st.dictionaries(
            st.sampled_from(names) | st.text(max_size=8), st.text(max_size=10), max_size=3
        ),
        path=st.fixed_dictionaries({name: path_value for name in binding.path_fields}),
    )
    def check(body, query, path):
        url = base + binding.path.format(
            **{k: urllib.parse.quote(v, safe="") for k, v in path.items()}
        )
        if binding.body:
            reply = http(binding.verb, url, raw=json.dumps(body).encode())
        else:
            reply = http(binding.verb, url + "?" + urllib.parse.urlencode(query))
        assert 200 <= reply.status < 500, (reply.status, reply.body, body, query, path)
        answer = reply.json()
        if reply.status != 200:
            assert set(answer) == {"code", "message", "details"} and answer["message"]

    check()


def test_the_entry_point_serves_http_and_stops_on_sigterm():
    """`python -m services.gateway.server` with HTTP_PORT: the document answers (its
    upstreams are not there: the RPCs answer 503), and SIGTERM stops it cleanly."""
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(free_port()),
        "HTTP_PORT": str(port),
        "FEATURE_ADDR": f"127.0.0.1:{free_port()}",
        "MODEL_ADDR": f"127.0.0.1:{free_port()}",
        "GRACE_S": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway.server"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # until it listens (start-up imports take a while)
            try:
                document = http("GET", f"{base}/openapi.json")
                break
            except aiohttp.ClientConnectionError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.1)
        assert document.status == 200 and document.body == openapi.served_document()
        assert http("GET", f"{base}/v1/movies/1/similar").status == 503
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert '"message": "http listening"' in output and '"message": "stopped"' in output, output


def test_a_body_over_max_message_bytes_is_413():
    with lone_gateway(max_message_bytes=1024) as running:
        base = f"http://127.0.0.1:{running.service.http.port}"
        reply = http("POST", f"{base}/v1/recommend", raw=b'{"k": 1' + b" " * 2048 + b"}")
    assert reply.status == 413
    assert reply.json()["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
