"""The README's main job: train the default configuration and the article's, evaluate both
on the DESIGN §6 split, and replay the article's examples (its two sample users and the
Star Wars distances) from the article-preset model.

    python -m recsys.demo [--data DIR] [--model-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from recsys.cli import format_table, scores_table
from recsys.logs import configure_logging, quiet_tensorflow

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
    args = parser.parse_args(argv)
    quiet_tensorflow()
    configure_logging(json_lines=False)

    from recsys.artifacts import load_artifact
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
        print(
            f"version {run.artifact_path.name}: {run.epochs} epochs (best {run.best_epoch}), "
            f"loss {run.final_loss:.4f}, {run.seconds:.1f}s"
        )
        print(scores_table(run.scores), "\n", flush=True)
        report[preset] = {
            "version": run.artifact_path.name,
            "seconds": run.seconds,
            "final_loss": run.final_loss,
            "epochs": run.epochs,
            "scores": [s.to_dict() for s in run.scores],
        }

    artifact = load_artifact(runs["article"].artifact_path)
    model = artifact.recommender
    if source.how == "synthetic":
        print("(synthetic data: the article's movie ids do not exist; its examples are skipped)")
    else:
        print("== the article's sample users, article preset ==")
        for name, ratings in ARTICLE_USERS.items():
            picks = model.recommend(ratings, 10)
            print(f"\n{name}:")
            print(
                format_table(
                    ["rank", "movie_id", "predicted", "title"],
                    [
                        [n, s.item_id, s.value, artifact.title(s.item_id)]
                        for n, s in enumerate(picks, 1)
                    ],
                )
            )
            report[f"user {name}"] = [s.item_id for s in picks]
        print("\n== Star Wars (260) in decoder-embedding space, Euclidean ==")
        distances = {s.item_id: s.value for s in model.similar(STAR_WARS, len(model.index))}
        rows = [
            [EMPIRE, distances[EMPIRE], artifact.title(EMPIRE)],
            [AMERICAN_BEAUTY, distances[AMERICAN_BEAUTY], artifact.title(AMERICAN_BEAUTY)],
        ]
        nearest = model.similar(STAR_WARS, 5)
        farthest = model.similar(STAR_WARS, 1, farthest=True)[0]
        rows += [
            [s.item_id, s.value, f"(nearest #{n}) {artifact.title(s.item_id)}"]
            for n, s in enumerate(nearest, 1)
        ]
        rows.append(
            [
                farthest.item_id,
                farthest.value,
                f"(least similar) {artifact.title(farthest.item_id)}",
            ]
        )
        print(format_table(["movie_id", "distance", "title"], rows))
        report["star_wars_distances"] = {
            "empire": distances[EMPIRE],
            "american_beauty": distances[AMERICAN_BEAUTY],
            "least_similar": farthest.item_id,
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
