"""The `recsys` command line: train, evaluate, sweep, recommend, explain, similar, serve,
versions, load-features, sweep-namespaces, download, synthesize. Tables go to stdout,
progress and logs to stderr."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from recsys.errors import InvalidArgument, RecsysError, Unavailable
from recsys.logs import configure_logging, quiet_tensorflow
from recsys.output import format_table, scores_table, write_json

log = logging.getLogger("recsys")

DEFAULT_MODEL_DIR = Path("artifacts")


def parse_ratings(text: str) -> dict[int, float]:
    """'260:5,480:4.5' → {260: 5.0, 480: 4.5}; a repeated item keeps its last rating."""
    ratings: dict[int, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        item, sep, rating = part.partition(":")
        try:
            if not sep:
                raise ValueError
            ratings[int(item)] = float(rating)
        except ValueError:
            raise InvalidArgument(
                f"bad rating {part!r}: expected MOVIE_ID:RATING, e.g. 260:5", field="ratings"
            ) from None
    if not ratings:
        raise InvalidArgument("no ratings given", field="ratings")
    return ratings


def parse_settings(pairs: list[str]) -> dict[str, object]:
    """['encoding_size=64', 'l2=1e-3', 'top_n=none'] → typed values (JSON-ish)."""
    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgument(f"bad setting {pair!r}: expected NAME=VALUE", field="set")
        lowered = value.lower()
        if lowered in ("none", "null"):
            settings[key] = None
        else:
            try:
                settings[key] = json.loads(lowered if lowered in ("true", "false") else value)
            except ValueError:
                settings[key] = value
    return settings


def _load(args):
    from recsys.artifacts import load_artifact, resolve_version

    return load_artifact(resolve_version(args.model_dir, args.version))


def cmd_train(args) -> int:
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data, train_and_evaluate

    config = PRESETS[args.preset].replace(**parse_settings(args.set or []))
    source = find_data(args.data, download=None if args.no_download else "ml-1m")
    log.info("data: %s (%s, %d ratings)", source.path, source.how, len(source.data.ratings))
    run = train_and_evaluate(
        source,
        config,
        args.model_dir,
        progress=args.progress,
        report_dir=None if args.no_report else (args.report_dir or Path("reports") / "{version}"),
        command=command_line(),
    )
    print(f"model version {run.artifact_path.name} saved in {run.artifact_path.parent}")
    print(f"preset {args.preset}: {run.summary}")
    print(scores_table(run.scores))
    if run.report_path:
        print(f"report and figures: {run.report_path}")
    if args.json:
        write_json(
            args.json,
            {
                "version": run.artifact_path.name,
                "preset": args.preset,
                "config": config.to_dict(),
                "seconds": run.seconds,
                "final_loss": run.final_loss,
                "scores": [s.to_dict() for s in run.scores],
            },
        )
    return 0


def cmd_evaluate(args) -> int:
    from recsys.pipeline import environment, evaluate_artifact, find_data

    artifact = _load(args)
    data_path = args.data or artifact.metadata.get("dataset", {}).get("path")
    source = find_data(data_path, download=None)
    report_dir = None if args.no_report else (args.report_dir or Path("reports") / artifact.version)
    scores = evaluate_artifact(artifact, source, report_dir=report_dir, command=command_line())
    print(f"model version {artifact.version}, data {source.path}")
    print(scores_table(scores))
    if report_dir is not None:
        print(f"report and figures: {report_dir / 'report.md'}")
    if args.json:
        write_json(
            args.json,
            {
                "version": artifact.version,
                "data": str(source.path),
                "environment": environment(),
                "scores": [s.to_dict() for s in scores],
            },
        )
    return 0


def cmd_recommend(args) -> int:
    artifact = _load(args)
    ratings = parse_ratings(args.ratings)
    user = artifact.recommender.user_vector(ratings)
    if user.unknown_item_ids:
        log.warning("not in the model, ignored: %s", user.unknown_item_ids)
    rank_by = args.rank_by or artifact.recommender.default_rank_by
    picks = artifact.recommender.recommend(ratings, args.k, rank_by=rank_by)
    print(f"model version {artifact.version}; top {args.k} by {rank_by} for {args.ratings}")
    print(
        format_table(
            ["rank", "movie_id", "predicted", "title"],
            [[n, s.item_id, s.value, artifact.title(s.item_id)] for n, s in enumerate(picks, 1)],
        )
    )
    return 0


def cmd_similar(args) -> int:
    artifact = _load(args)
    picks = artifact.recommender.similar(
        args.item_id, args.k, metric=args.metric, farthest=args.farthest
    )
    which = "farthest from" if args.farthest else "nearest to"
    print(
        f"model version {artifact.version}; {args.metric} distance, {which} "
        f"{args.item_id} {artifact.title(args.item_id)}"
    )
    print(
        format_table(
            ["rank", "movie_id", "distance", "title"],
            [[n, s.item_id, s.value, artifact.title(s.item_id)] for n, s in enumerate(picks, 1)],
        )
    )
    return 0


def cmd_explain(args) -> int:
    """The predicted rating of one movie as μ + b_i + b_u + a sum over the rated movies."""
    artifact = _load(args)
    ratings = parse_ratings(args.ratings)
    explanation = artifact.recommender.explain(ratings, args.item_id, args.limit)
    e = explanation
    print(
        f"model version {artifact.version}; {args.item_id} {artifact.title(args.item_id)}: "
        f"predicted rating {e.predicted_rating:.4f} = μ {e.global_mean:.4f} "
        f"+ b_i {e.item_mean:.4f} + b_u {e.user_mean:.4f} "
        f"+ preference {e.predicted_preference:.4f}"
    )
    rows = [
        [n, c.item_id, ratings[c.item_id], c.preference, c.contribution, artifact.title(c.item_id)]
        for n, c in enumerate(e.contributions, 1)
    ]
    if e.other_count:
        rows.append(["", "", None, None, e.other_contribution, f"({e.other_count} others)"])
    print(format_table(["rank", "movie_id", "rating", "preference", "contribution", "title"], rows))
    if args.json:
        write_json(args.json, {"version": artifact.version, **dataclasses.asdict(e)})
    return 0


def cmd_versions(args) -> int:
    from recsys.artifacts import list_versions

    versions = list_versions(args.model_dir)
    if not versions:
        print(f"no model versions in {args.model_dir}")
        return 1
    rows = []
    for version in versions:
        meta = json.loads((Path(args.model_dir) / version / "metadata.json").read_text())
        rmse = meta.get("metrics", {}).get("autoencoder", {}).get("rmse")
        rows.append([version, meta.get("dataset", {}).get("name", "?"), rmse])
    print(format_table(["version", "data", "test RMSE"], rows))
    return 0


def cmd_sweep(args) -> int:
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data
    from recsys.sweep import configurations, parse_config, parse_vary, run_sweep, write_sweep

    base = PRESETS[args.preset].replace(**parse_settings(args.set or []))
    configs = configurations(
        base,
        parse_vary(args.vary or []),
        [parse_config(c) for c in args.config or []],
        one_at_a_time=args.one_at_a_time,
    )
    source = find_data(args.data, download=None if args.no_download else "ml-1m")
    log.info("sweep of %d configurations on %s (%s)", len(configs), source.path, source.how)
    result = run_sweep(source, configs, base, progress=True)
    out = args.out or Path("runs") / f"sweep-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    markdown, data = write_sweep(result, out)
    print(result.markdown())
    print(f"best by validation RMSE: {result.best.label}")
    print(f"wrote {markdown} and {data}")
    return 0


def command_line() -> str:
    """The command as typed, for reports: `recsys train --data ...`."""
    return " ".join(["recsys", *sys.argv[1:]])


def cmd_download(args) -> int:
    from recsys.data.download import download_dataset

    print(download_dataset(args.dataset, args.cache_dir, progress=True))
    return 0


def cmd_synthesize(args) -> int:
    from recsys.data.synthetic import (
        SHAPES,
        SyntheticSpec,
        write_shaped_movielens,
        write_synthetic_movielens,
    )

    if (args.directory is None) == (args.out is None):
        raise InvalidArgument("give the output directory once: DIR or --out DIR", field="out")
    directory = args.directory or args.out
    if args.shape == "groups":
        if args.ratings is not None:
            raise InvalidArgument("--ratings needs a release's shape, e.g. --shape ml-25m")
        given = {"n_users": args.users, "n_items": args.items, "n_groups": args.groups}
        spec = SyntheticSpec(seed=args.seed, **{k: v for k, v in given.items() if v is not None})
        print(write_synthetic_movielens(directory, spec))
        return 0
    if args.groups is not None:
        raise InvalidArgument("--groups applies to --shape groups only")
    shape = SHAPES[args.shape].resized(args.users, args.items, args.ratings)
    print(write_shaped_movielens(directory, shape, seed=args.seed, progress=True))
    return 0


def _redis_for(args):
    """(client, key prefix) from --redis-url / --cluster / --prefix and the environment
    (REDIS_URL, REDIS_CLUSTER, REDIS_SENTINELS, REDIS_KEY_PREFIX)."""
    from recsys.redis_client import sync_client
    from recsys.serving.config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise InvalidArgument(str(exc)) from exc
    redis_url = args.redis_url or settings.redis_url
    if not redis_url:
        raise InvalidArgument("no Redis: pass --redis-url or set REDIS_URL", field="redis_url")
    client = sync_client(
        redis_url,
        cluster=args.cluster or settings.redis_cluster,
        sentinels=settings.redis_sentinels,
        sentinel_master=settings.redis_sentinel_master,
        sentinel_password=settings.redis_sentinel_password,
    )
    return client, args.prefix or settings.redis_key_prefix


def cmd_sweep_namespaces(args) -> int:
    import redis

    from recsys.featurestore.loader import sweep_namespaces

    client, prefix = _redis_for(args)
    try:
        summary = sweep_namespaces(client, prefix)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"redis unavailable: {exc}") from exc
    finally:
        client.close()
    print(
        f"removed {summary.keys_removed} keys of unregistered versions"
        + (f" {', '.join(summary.versions)}" if summary.versions else "")
        + (f"; left {', '.join(summary.left_loading)} (loading)" if summary.left_loading else "")
    )
    return 0


def cmd_load_features(args) -> int:
    import redis

    from recsys.artifacts import resolve_version
    from recsys.data.movielens import load_movielens
    from recsys.featurestore.loader import load_features

    artifact_dir = resolve_version(args.model_dir, args.version)
    client, prefix = _redis_for(args)
    try:
        client.ping()  # fail before reading a million ratings
        data = load_movielens(args.data)
        summary = load_features(
            client,
            artifact_dir,
            data.ratings,
            data.items,
            prefix,
            replace_ratings=args.replace_ratings,
            progress=True,
        )
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"redis unavailable: {exc}") from exc  # the URL may hold a password
    finally:
        client.close()
    print(
        f"model version {summary.version} active: {summary.users} users, "
        f"{summary.ratings} ratings, {summary.items} model items, "
        f"{summary.catalog_items} catalog items in {summary.seconds:.1f}s"
        + (
            f"; Redis used_memory {summary.redis_used_memory / 2**20:.1f} MiB"
            f" ({summary.memory_per_million_ratings() / 1e6:.1f} MB per million ratings)"
            if summary.memory_per_million_ratings() is not None
            else ""
        )
        + (
            f"; resumed an interrupted load: {summary.resumed_users} users were already written"
            if summary.resumed_users
            else ""
        )
        + (
            f"; removed old versions {', '.join(summary.retired_versions)}"
            if summary.retired_versions
            else ""
        )
        + (
            f"; removed {summary.orphan_keys_removed} keys of unregistered versions"
            if summary.orphan_keys_removed
            else ""
        )
    )
    return 0


def cmd_serve(args) -> int:
    """Redis (unless --redis-url) + the three services until Ctrl-C or SIGTERM."""
    import signal
    import threading

    import redis

    from recsys.artifacts import resolve_version
    from recsys.data.movielens import load_movielens
    from recsys.featurestore.layout import KeyLayout
    from recsys.featurestore.loader import load_features
    from recsys.launcher import LocalStack
    from recsys.redis_client import redact_url

    version = resolve_version(args.model_dir, args.version)
    ports = {"gateway": args.gateway_port, "feature": args.feature_port, "model": args.model_port}
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with LocalStack(model_dir=version.parent, model_version=version.name,
                    redis_url=args.redis_url, redis_key_prefix=args.prefix,
                    redis_dir=args.redis_dir, ports=ports,
                    log_level=args.service_log_level) as stack:  # fmt: skip
        with redis.Redis.from_url(stack.start_redis()) as client:
            status = client.hget(KeyLayout(args.prefix).meta(version.name), "status")
            if status != b"ready":
                if args.data is None:
                    raise InvalidArgument(
                        f"Redis holds no features for version {version.name}: pass --data DIR",
                        field="data",
                    )
                data = load_movielens(args.data)
                summary = load_features(client, version, data.ratings, data.items, args.prefix)
                print(f"features of {version.name} loaded in {summary.seconds:.1f}s")
        stack.start_services()
        print(f"serving model version {version.name}")
        for service in ("gateway", "feature", "model"):
            print(f"  {service:8} {stack.address(service)}")
        print(f"  redis    {redact_url(stack.redis_url)}")
        print("Ctrl-C or SIGTERM stops everything", flush=True)
        while not stop.wait(0.5):
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    raise Unavailable(f"the {name} service exited with {process.returncode}")
        print("stopping", flush=True)
    print("stopped")
    return 0


def cmd_loadtest(args) -> int:
    """Load-test a server with a workload; RPC errors are reported, not fatal (exit 0)."""
    import asyncio

    from recsys.data.movielens import load_movielens
    from recsys.loadtest import LoadSettings, Targets, build_workload, run_load
    from recsys.loadtest.plot import check_png_support, write_latency_png
    from recsys.loadtest.workloads import request_kind

    if (args.rpc is None) == (args.mix is None):
        raise InvalidArgument("give --rpc NAME or --mix NAME=WEIGHT,..., not both", field="rpc")
    if args.rpc is not None:
        request_kind(args.rpc)
    settings = LoadSettings(
        concurrency=args.concurrency,
        rate=args.rate,
        duration_s=args.duration,
        warmup_s=args.warmup,
        deadline_ms=args.deadline_ms,
        seed=args.seed,
    )
    targets = Targets(gateway=args.target, model=args.model_target, feature=args.feature_target)
    if args.png:
        check_png_support()
    data = load_movielens(args.data) if args.data else None

    async def load_test():
        workload = await build_workload(
            args.rpc or args.mix, targets, data=data, users=args.users, seed=args.seed
        )
        return await run_load(settings, targets, workload, progress=True)

    report = asyncio.run(load_test())
    print(report.to_text(), end="")
    if args.json:
        write_json(args.json, report.to_json())
    if args.png:
        log.info("wrote %s", write_latency_png(report, args.png))
    return 0


def add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--report-dir",
        type=Path,
        help="where report.md, training_curves.png and item_map.png go "
        "(default: reports/<version>)",
    )
    p.add_argument("--no-report", action="store_true", help="write no report or figures")


def build_parser() -> argparse.ArgumentParser:
    from recsys.embeddings import METRICS
    from recsys.model.config import PRESETS
    from recsys.ranking import RANK_MODES

    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Train, evaluate and query the linear-autoencoder recommender "
        '("Building a Recommender System, Part 2") on MovieLens data.',
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_model(p):
        p.add_argument(
            "--model-dir",
            type=Path,
            default=DEFAULT_MODEL_DIR,
            help="directory of model versions (default: %(default)s)",
        )
        p.add_argument("--version", help="model version to use (default: the newest)")

    def with_redis(p):
        p.add_argument("--redis-url", help="default: $REDIS_URL")
        p.add_argument("--prefix", help="Redis key prefix (default: $REDIS_KEY_PREFIX or recsys)")
        p.add_argument(
            "--cluster",
            action="store_true",
            help="the URL names a Redis Cluster node (default: $REDIS_CLUSTER)",
        )

    p = sub.add_parser("train", help="train a model, evaluate it and save it as a new version")
    p.add_argument(
        "--data",
        type=Path,
        help="MovieLens directory (ML-1M, ML-100K or ml-latest); "
        "default: download ML-1M, else synthetic data",
    )
    p.add_argument("--no-download", action="store_true", help="never try the network")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="'article' reproduces the post; 'default' the served default; 'deep' the "
        "deeper autoencoder; 'item' the item-based autoencoder (I-AutoRec, lowest RMSE)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a training setting, e.g. --set encoding_size=64",
    )
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--progress", action="store_true", help="show a Keras progress bar")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_report_options(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="score a saved model on the held-out split")
    with_model(p)
    p.add_argument("--data", type=Path, help="the data it was trained on (default: recorded)")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_report_options(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser(
        "sweep",
        help="train several configurations on one split; a table of their scores",
        description="Configurations: the base (--preset with --set), then every combination "
        "of the --vary values (or each value alone with --one-at-a-time), then each "
        "--config ('preset=item ...' starts from another preset). Every run trains, fits "
        "its relevance ranking and is scored on the evaluation split beside EASE; the best is "
        "the lowest validation RMSE. Writes sweep.md and sweep.json to --out.",
    )
    p.add_argument("--data", type=Path, help="MovieLens directory (default: download ML-1M)")
    p.add_argument("--no-download", action="store_true", help="never try the network")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="change the base")
    p.add_argument(
        "--vary",
        action="append",
        metavar="NAME=V1,V2",
        help="values of one setting, e.g. encoding_size=64,128 or hidden_layers=[],[256]",
    )
    p.add_argument("--one-at-a-time", action="store_true", help="vary one setting at a time")
    p.add_argument(
        "--config",
        action="append",
        metavar="'NAME=V NAME=V'",
        help="one more configuration, e.g. 'hidden_layers=[256] activation=selu'",
    )
    p.add_argument("--out", type=Path, help="output directory (default: runs/sweep-<time>)")
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser("recommend", help="top-k movies for ratings given inline")
    with_model(p)
    p.add_argument("ratings", help="MOVIE_ID:RATING pairs, e.g. 260:5,1196:4")
    p.add_argument("-k", type=int, default=10, help="how many (default: %(default)s)")
    p.add_argument(
        "--rank-by",
        choices=RANK_MODES,
        help="ranking mode (default: the version's, relevance when it has item-item weights)",
    )
    p.set_defaults(run=cmd_recommend)

    p = sub.add_parser("similar", help="movies nearest to (or farthest from) a movie")
    with_model(p)
    p.add_argument("item_id", type=int, help="MovieLens movie id, e.g. 260 (Star Wars)")
    p.add_argument("-k", type=int, default=10, help="how many (default: %(default)s)")
    p.add_argument("--metric", choices=METRICS, default="euclidean")
    p.add_argument("--farthest", action="store_true", help="least similar first")
    p.set_defaults(run=cmd_similar)

    p = sub.add_parser(
        "explain",
        help="why a movie gets its predicted rating: the contribution of each rated movie",
        description="For the linear model the predicted preference is an exact sum over the "
        "rated movies, x_j · (W_enc W_dec)[j, i]; for the item kind too (its fold-in is "
        "linear in the ratings); listed by |contribution|. A deep model cannot be explained "
        "this way (exit 2).",
    )
    with_model(p)
    p.add_argument("ratings", help="MOVIE_ID:RATING pairs, e.g. 260:5,1196:4")
    p.add_argument("item_id", type=int, help="the movie to explain, e.g. 1210")
    p.add_argument("--limit", type=int, default=10, help="contributions listed (default: 10)")
    p.add_argument("--json", type=Path, help="also write the explanation as JSON here")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("serve", help="run Redis and the three services until Ctrl-C / SIGTERM")
    with_model(p)
    p.add_argument(
        "--data",
        type=Path,
        help="MovieLens directory to load features from "
        "when Redis does not hold the version's features yet",
    )
    p.add_argument("--redis-url", help="use this Redis (default: start one here)")
    p.add_argument(
        "--redis-dir",
        type=Path,
        default=Path(".cache/redis"),
        help="append-only files of the Redis started here (default: %(default)s)",
    )
    p.add_argument("--prefix", default="recsys", help="Redis key prefix (default: %(default)s)")
    p.add_argument("--gateway-port", type=int, default=50050)
    p.add_argument("--feature-port", type=int, default=50051)
    p.add_argument("--model-port", type=int, default=50052)
    p.add_argument("--service-log-level", default="INFO", help="services' LOG_LEVEL")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser(
        "loadtest",
        help="load-test the gateway, model service or any server; ghz-style report",
        description="Closed loop (--concurrency workers) or open loop (--rate requests/s, "
        "Poisson arrivals) for --duration seconds after --warmup; latency percentiles and "
        "histogram, status codes and errors. RPC errors are reported; exit 0 once the run "
        "completed, 2 on bad usage.",
    )
    p.add_argument("--target", metavar="HOST:PORT", help="the gateway (health: any server)")
    p.add_argument("--model-target", metavar="HOST:PORT", help="the model service (predict)")
    p.add_argument(
        "--feature-target",
        metavar="HOST:PORT",
        help="the feature service: predict's preference vectors; without --data, the catalog",
    )
    p.add_argument(
        "--rpc",
        metavar="NAME",
        help="recommend-stored, recommend-inline, similar, predict, rate or health",
    )
    p.add_argument(
        "--mix", metavar="SPEC", help="weighted mix, e.g. recommend-stored=0.7,similar=0.2,rate=0.1"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        metavar="C",
        help="closed loop: workers (default: 16 unless --rate)",
    )
    p.add_argument(
        "--rate", type=float, metavar="Q", help="open loop: requests per second (Poisson)"
    )
    p.add_argument(
        "--duration", type=float, default=10.0, metavar="S", help="measured seconds (default: 10)"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds sent first, not recorded (default: 2)",
    )
    p.add_argument(
        "--deadline-ms",
        type=float,
        default=1000.0,
        metavar="MS",
        help="deadline of every call (default: 1000)",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="MovieLens directory: user ids, rated movies, ratings",
    )
    p.add_argument(
        "--users",
        type=int,
        default=6040,
        metavar="N",
        help="without --data: user ids 1..N (default: 6040)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    p.add_argument(
        "--png", type=Path, metavar="FILE", help="also write a latency histogram PNG (matplotlib)"
    )
    p.set_defaults(run=cmd_loadtest)

    p = sub.add_parser("versions", help="list saved model versions")
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    p.set_defaults(run=cmd_versions)

    p = sub.add_parser(
        "load-features", help="load a model version's features into Redis and make it active"
    )
    p.add_argument("--data", type=Path, required=True, help="MovieLens directory of the ratings")
    with_model(p)
    with_redis(p)
    p.add_argument(
        "--replace-ratings",
        action="store_true",
        help="the data's ratings replace those in Redis (default: Redis's ratings, "
        "including online writes, are kept and only new users are seeded)",
    )
    p.set_defaults(run=cmd_load_features)

    p = sub.add_parser(
        "sweep-namespaces",
        help="remove the Redis keys of model versions no longer registered "
        "(what a write racing a version's retirement leaves; load-features runs it too)",
    )
    with_redis(p)
    p.set_defaults(run=cmd_sweep_namespaces)

    p = sub.add_parser("download", help="fetch a MovieLens zip from GroupLens (md5-checked)")
    p.add_argument("dataset", choices=["ml-1m", "ml-100k"])
    p.add_argument("--cache-dir", type=Path, help="default: $RECSYS_CACHE_DIR or ~/.cache/recsys")
    p.set_defaults(run=cmd_download)

    p = sub.add_parser(
        "synthesize",
        help="write a synthetic MovieLens: small with planted groups (ML-1M format), or of a"
        " release's shape (ml-latest CSV format)",
    )
    p.add_argument("directory", type=Path, nargs="?", help="where to write (or --out)")
    p.add_argument("--out", type=Path, help="where to write (or DIR)")
    p.add_argument(
        "--shape",
        choices=["groups", "ml-25m"],
        default="groups",
        help="groups: 600 users, 200 movies in 4 planted taste groups (default); ml-25m:"
        " 162,541 users, 59,047 movies, 25,000,095 ratings like MovieLens 25M",
    )
    p.add_argument("--users", type=int, help="default: the shape's")
    p.add_argument(
        "--movies",
        "--items",
        dest="items",
        type=int,
        help="default: the shape's (ml-25m with fewer --users: the square root's share)",
    )
    p.add_argument("--ratings", type=int, help="ml-25m only; default: the shape's ratings per user")
    p.add_argument("--groups", type=int, help="groups only; default 4")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=cmd_synthesize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    configure_logging(json_lines=False, level=args.log_level)
    try:
        return args.run(args)
    except RecsysError as exc:
        print(f"recsys {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
