"""The README's main job: train the default configuration and the article's, evaluate both
on the evaluation split (docs/model.md), then run the served system (Redis, feature, model
and gateway services), load the features, ask the article's questions through the gateway (its two
sample users, a stored user, Star Wars's nearest and farthest items) and shut down.

    python -m recsys.demo [--data DIR] [--model-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import grpc
import redis

from recsys.api.gateway.v1 import gateway_pb2 as pb
from recsys.api.gateway.v1 import gateway_pb2_grpc
from recsys.logs import configure_logging, quiet_tensorflow
from recsys.output import format_table, scores_table, write_json

log = logging.getLogger("recsys.demo")

REPO = Path(__file__).resolve().parents[2]
TEAM_DATA = REPO.parent / "shared" / "data" / "ml-1m"

# The post's sample users (ML-1M ids): American Beauty, Star Wars, Jurassic Park,
# The Silence of the Lambs, Shakespeare in Love, The Princess Bride.
ARTICLE_MOVIES = [2858, 260, 480, 593, 2396, 1197]
ARTICLE_USERS = {
    "fan (1,5,5,2,2,5)": dict(zip(ARTICLE_MOVIES, [1, 5, 5, 2, 2, 5], strict=True)),
    "reversed (5,1,1,1,5,5)": dict(zip(ARTICLE_MOVIES, [5, 1, 1, 1, 5, 5], strict=True)),
}
STAR_WARS, EMPIRE, AMERICAN_BEAUTY = 260, 1196, 2858
STORED_USER = 1
PREFIX = "recsys"
TIMEOUT_S = 10


def recommendations_table(items) -> str:
    return format_table(
        ["rank", "movie_id", "predicted", "title"],
        [[n, i.movie_id, i.predicted_rating, i.title] for n, i in enumerate(items, 1)],
    )


def ask_gateway(stub, synthetic: bool) -> dict:
    """The article's questions, asked of the running system through the gateway."""
    answers: dict[str, object] = {}
    users = ARTICLE_USERS if not synthetic else {"synthetic fan": {1: 5.0, 5: 5.0, 2: 1.0}}
    for name, ratings in users.items():
        inline = pb.InlineRatings(
            ratings=[pb.Rating(movie_id=m, rating=r) for m, r in ratings.items()]
        )
        # ranked by predicted rating, as the article ranks (Recommend's default is relevance)
        request = pb.RecommendRequest(inline_ratings=inline, k=10, rank_by=pb.RANK_BY_RATING)
        reply = stub.Recommend(request, timeout=TIMEOUT_S)
        print(
            f"Recommend by rating (the article's ranking), inline ratings of the {name} user "
            f"(model {reply.model_version}):"
        )
        print(recommendations_table(reply.items), "\n")
        answers[name] = [i.movie_id for i in reply.items]
    reply = stub.Recommend(pb.RecommendRequest(user_id=STORED_USER, k=5), timeout=TIMEOUT_S)
    print(f"Recommend, stored user {STORED_USER}:")
    print(recommendations_table(reply.items), "\n")
    anchor = STAR_WARS if not synthetic else 1
    nearest = stub.SimilarItems(pb.SimilarItemsRequest(movie_id=anchor, k=5), timeout=TIMEOUT_S)
    farthest = stub.SimilarItems(
        pb.SimilarItemsRequest(movie_id=anchor, k=1, farthest=True), timeout=TIMEOUT_S
    )
    rows = [[n, i.movie_id, i.distance, i.title] for n, i in enumerate(nearest.items, 1)]
    rows += [["least", i.movie_id, i.distance, i.title] for i in farthest.items]
    print(f"SimilarItems for {anchor}, Euclidean distance in decoder-embedding space:")
    print(format_table(["rank", "movie_id", "distance", "title"], rows), "\n")
    answers["similar"] = [i.movie_id for i in nearest.items]
    answers["least_similar"] = farthest.items[0].movie_id
    if not synthetic:
        everything = stub.SimilarItems(
            pb.SimilarItemsRequest(movie_id=STAR_WARS, k=1000), timeout=TIMEOUT_S
        )
        distance = {i.movie_id: i.distance for i in everything.items}
        print(
            f"Star Wars → The Empire Strikes Back: {distance.get(EMPIRE, float('nan')):.3f}; "
            f"→ American Beauty: {distance.get(AMERICAN_BEAUTY, float('nan')):.3f} "
            "(article: 0.21 and 0.61)\n"
        )
        answers["star_wars_to_empire"] = distance.get(EMPIRE)
        answers["star_wars_to_american_beauty"] = distance.get(AMERICAN_BEAUTY)
    return answers


def default_data() -> Path | None:
    """$RECSYS_DATA, else the team's ML-1M beside the repository, else None (download)."""
    if os.environ.get("RECSYS_DATA"):
        return Path(os.environ["RECSYS_DATA"])
    return TEAM_DATA if TEAM_DATA.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recsys-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--model-dir", type=Path, default=REPO / "artifacts")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--serve",
        choices=["article", "default"],
        default="article",
        help="which trained version the services serve (default: %(default)s, "
        "whose item set the article's examples were written for)",
    )
    args = parser.parse_args(argv)
    quiet_tensorflow()
    configure_logging(json_lines=False)

    from recsys.featurestore.loader import load_features
    from recsys.launcher import LocalStack
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    source = find_data(args.data)
    print(
        f"data: {source.path} ({source.data.name}, {source.how}, "
        f"{len(source.data.ratings):,} ratings)\n"
    )
    report: dict[str, object] = {"data": str(source.path), "source": source.how}
    runs = {}
    for preset in ("default", "article"):
        print(f"== training preset '{preset}' ==", flush=True)
        run = train_and_evaluate(source, PRESETS[preset], args.model_dir)
        runs[preset] = run
        print(f"version {run.artifact_path.name}: {run.summary}")
        print(scores_table(run.scores), "\n", flush=True)
        report[preset] = {
            "version": run.artifact_path.name,
            "seconds": run.seconds,
            "final_loss": run.final_loss,
            "epochs": run.epochs,
            "scores": [s.to_dict() for s in run.scores],
        }

    served = runs[args.serve].artifact_path
    print(
        f"== serving version {served.name} (preset '{args.serve}'): Redis + feature, model, "
        "gateway services ==",
        flush=True,
    )
    with LocalStack(model_dir=served.parent, model_version=served.name) as stack:
        with redis.Redis.from_url(stack.start_redis()) as client:
            loaded = load_features(client, served, source.data.ratings, source.data.items, PREFIX)
        print(
            f"features loaded: {loaded.users:,} users, {loaded.ratings:,} ratings in "
            f"{loaded.seconds:.1f}s"
        )
        stack.start_services()
        print(f"gateway on {stack.address('gateway')}\n", flush=True)
        with grpc.insecure_channel(stack.address("gateway")) as channel:
            report["served"] = ask_gateway(
                gateway_pb2_grpc.GatewayServiceStub(channel), source.how == "synthetic"
            )
    print("services stopped")
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
