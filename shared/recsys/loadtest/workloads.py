"""Named request generators for the load test. Each kind of request draws its next message
from a `Population` with a seeded RNG; a `Workload` is one kind or a weighted mix of kinds,
and calling it gives the next `Call` (which RPC, which server, which request)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from recsys.api.gateway.v1 import gateway_pb2
from recsys.api.model.v1 import model_pb2
from recsys.data.movielens import RatingData
from recsys.errors import InvalidArgument
from recsys.loadtest.population import (
    DEFAULT_SAMPLE_USERS,
    DEFAULT_USERS,
    MOVIES,
    PREFERENCES,
    USER_RATINGS,
    USERS,
    Population,
    build_population,
)
from recsys.loadtest.settings import Targets

TOP_K = 10  # items asked for by recommend-stored, recommend-inline, similar and predict
INLINE_RATINGS_CAP = 50  # recommend-inline sends at most this many of the user's ratings
MAX_RATED_PER_CALL = 5  # rate sends 1 to this many (movie, rating) pairs


@dataclass(frozen=True)
class Method:
    """A unary RPC: its full path, the server role that takes it ("gateway", "model" or
    "health": any server) and how its messages are (de)serialized."""

    path: str
    role: str
    request_serializer: Callable[[Message], bytes]
    response_deserializer: Callable[[bytes], Message]


def _method(path: str, role: str, request: type[Message], response: type[Message]) -> Method:
    return Method(path, role, request.SerializeToString, response.FromString)


_GATEWAY = "/recsys.gateway.v1.GatewayService/"
RECOMMEND = _method(
    _GATEWAY + "Recommend", "gateway", gateway_pb2.RecommendRequest, gateway_pb2.RecommendResponse
)
SIMILAR_ITEMS = _method(
    _GATEWAY + "SimilarItems",
    "gateway",
    gateway_pb2.SimilarItemsRequest,
    gateway_pb2.SimilarItemsResponse,
)
RATE_ITEMS = _method(
    _GATEWAY + "RateItems", "gateway", gateway_pb2.RateItemsRequest, gateway_pb2.RateItemsResponse
)
PREDICT = _method(
    "/recsys.model.v1.ModelService/Predict",
    "model",
    model_pb2.PredictRequest,
    model_pb2.PredictResponse,
)
HEALTH_CHECK = _method(
    "/grpc.health.v1.Health/Check",
    "health",
    health_pb2.HealthCheckRequest,
    health_pb2.HealthCheckResponse,
)


@dataclass(frozen=True)
class Call:
    """One request to send: the workload part it came from, its RPC and its message."""

    rpc: str
    method: Method
    request: Message


RequestMaker = Callable[[random.Random], Message]


@dataclass(frozen=True)
class RequestKind:
    """A named kind of request: its RPC, what it needs from the population, and how a
    request maker is built from a population."""

    name: str
    method: Method
    needs: frozenset[str]
    maker: Callable[[Population], RequestMaker]


def _recommend_stored(population: Population) -> RequestMaker:
    users = population.user_ids
    return lambda rng: gateway_pb2.RecommendRequest(user_id=rng.choice(users), k=TOP_K)


def _recommend_inline(population: Population) -> RequestMaker:
    user_ratings = population.user_ratings

    def make(rng: random.Random) -> Message:
        ratings = [
            gateway_pb2.Rating(movie_id=movie, rating=stars)
            for movie, stars in user_ratings.sample(rng, INLINE_RATINGS_CAP)
        ]
        return gateway_pb2.RecommendRequest(
            inline_ratings=gateway_pb2.InlineRatings(ratings=ratings), k=TOP_K
        )

    return make


def _similar(population: Population) -> RequestMaker:
    movies = population.movie_ids
    return lambda rng: gateway_pb2.SimilarItemsRequest(movie_id=rng.choice(movies), k=TOP_K)


def _predict(population: Population) -> RequestMaker:
    """Real preference vectors of sampled users, their rated movies excluded from the top k;
    `model_version` empty (whatever the model service has loaded)."""
    requests = [
        model_pb2.PredictRequest(
            preferences=model_pb2.SparseVector(
                movie_ids=[m for m, _ in user.preferences], values=[v for _, v in user.preferences]
            ),
            top_k=model_pb2.TopK(k=TOP_K, exclude_movie_ids=[m for m, _ in user.ratings]),
        )
        for user in population.stored_users
    ]
    return lambda rng: rng.choice(requests)


def _rate(population: Population) -> RequestMaker:
    users, movies = population.user_ids, population.movie_ids
    stars = population.rating_values()

    def make(rng: random.Random) -> Message:
        rated = rng.sample(movies, min(len(movies), rng.randint(1, MAX_RATED_PER_CALL)))
        return gateway_pb2.RateItemsRequest(
            user_id=rng.choice(users),
            ratings=[gateway_pb2.Rating(movie_id=m, rating=rng.choice(stars)) for m in rated],
        )

    return make


def _health(population: Population) -> RequestMaker:
    request = health_pb2.HealthCheckRequest()  # the server's overall health
    return lambda rng: request


REQUEST_KINDS: dict[str, RequestKind] = {
    kind.name: kind
    for kind in (
        RequestKind("recommend-stored", RECOMMEND, frozenset({USERS}), _recommend_stored),
        RequestKind("recommend-inline", RECOMMEND, frozenset({USER_RATINGS}), _recommend_inline),
        RequestKind("similar", SIMILAR_ITEMS, frozenset({MOVIES}), _similar),
        RequestKind("predict", PREDICT, frozenset({PREFERENCES}), _predict),
        RequestKind("rate", RATE_ITEMS, frozenset({USERS, MOVIES}), _rate),
        RequestKind("health", HEALTH_CHECK, frozenset(), _health),
    )
}
RPC_NAMES = tuple(REQUEST_KINDS)


def request_kind(name: str) -> RequestKind:
    try:
        return REQUEST_KINDS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown rpc {name!r}: expected one of {', '.join(RPC_NAMES)}", field="rpc"
        ) from None


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """'recommend-stored=0.7,similar=0.2,rate=0.1' → [(name, weight), ...]. Weights are
    relative (need not sum to 1); a name without '=WEIGHT' weighs 1."""
    parts: list[tuple[str, float]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, text = (s.strip() for s in part.partition("="))
        request_kind(name)
        try:
            weight = float(text) if sep else 1.0
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise InvalidArgument(
                f"bad weight {text!r} for {name} in --mix: expected a number > 0", field="mix"
            )
        if name in (n for n, _ in parts):
            raise InvalidArgument(f"{name} appears twice in --mix", field="mix")
        parts.append((name, weight))
    if not parts:
        raise InvalidArgument(
            "empty --mix: expected NAME=WEIGHT,..., e.g. recommend-stored=0.7,similar=0.3",
            field="mix",
        )
    return parts


class Workload:
    """The requests of one run: one kind, or a weighted mix, drawn with one RNG seeded by
    `seed`. `workload()` returns the next `Call`."""

    def __init__(self, parts: Sequence[tuple[str, float]], population: Population, seed: int):
        kinds = [(request_kind(name), weight) for name, weight in parts]
        self.parts = [(kind.name, weight) for kind, weight in kinds]
        self.methods = [kind.method for kind, _ in kinds]
        self._makers = [(kind.name, kind.method, kind.maker(population)) for kind, _ in kinds]
        self._cum_weights = list(itertools.accumulate(weight for _, weight in kinds))
        self._rng = random.Random(seed)

    @property
    def name(self) -> str:
        """The rpc name, or the mix as NAME=SHARE,... with shares summing to 1."""
        if len(self.parts) == 1:
            return self.parts[0][0]
        total = self._cum_weights[-1]
        return ",".join(f"{name}={weight / total:g}" for name, weight in self.parts)

    def __call__(self) -> Call:
        if len(self._makers) == 1:
            name, method, make = self._makers[0]
        else:
            (name, method, make) = self._rng.choices(self._makers, cum_weights=self._cum_weights)[0]
        return Call(name, method, make(self._rng))


async def build_workload(
    spec: str,
    targets: Targets,
    *,
    data: RatingData | None = None,
    users: int = DEFAULT_USERS,
    sample_users: int = DEFAULT_SAMPLE_USERS,
    seed: int = 0,
) -> Workload:
    """A workload from an rpc name ('similar') or a mix ('recommend-stored=0.7,similar=0.3').

    Ids come from `data` (a MovieLens dataset) when given, else users 1..`users` and the
    feature service's catalog (`targets.feature`); `predict` fetches `sample_users` users'
    preference vectors from the feature service. Raises InvalidArgument for a bad spec or a
    missing target, Unavailable when the feature service cannot answer at start-up."""
    parts = parse_mix(spec)
    kinds = [request_kind(name) for name, _ in parts]
    for kind in kinds:
        targets.address(kind.method.role)
    needs = set().union(*(kind.needs for kind in kinds))
    population = await build_population(
        needs, targets, data=data, users=users, sample_users=sample_users, seed=seed
    )
    return Workload(parts, population, seed)
