"""Benchmark: train the presets on ML-1M with the evaluation split (docs/model.md) and report
test RMSE / MAE / Recall@10 / NDCG@10 beside the global-mean and bias baselines scored in the
same run, plus wall time and peak memory of each training process.

    python bench/train_ml1m.py [--data ../shared/data/ml-1m] [--presets default article]
    python bench/train_ml1m.py --smoke      # seconds, synthetic data (what CI runs)

Prints a table and writes JSON (machine, commit, settings, figures) to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from recsys.output import format_table, write_json  # noqa: E402
from recsys.pipeline import environment  # noqa: E402

SMOKE_SETTINGS = ["encoding_size=8", "max_epochs=3"]


def train_once(data: Path, preset: str, settings: list[str], workdir: Path) -> dict:
    """One `recsys train` in a child process: its own wall time and peak RSS."""
    out = workdir / f"{preset}.json"
    command = [
        sys.executable,
        "-m",
        "recsys.cli",
        "train",
        "--data",
        str(data),
        "--preset",
        preset,
        "--model-dir",
        str(workdir / "models"),
        "--json",
        str(out),
        "--no-report",  # timing the training, not the figures
    ]
    for setting in settings:
        command += ["--set", setting]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"training failed: {' '.join(command)}")
    result = json.loads(out.read_text())
    result["wall_seconds"] = wall
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-1m")
    parser.add_argument("--presets", nargs="+", default=["default", "article"])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run for CI")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data, settings = args.data, []
        if args.smoke:
            from recsys.data.synthetic import write_synthetic_movielens

            data, settings = write_synthetic_movielens(workdir / "data"), SMOKE_SETTINGS
        results = {preset: train_once(data, preset, settings, workdir) for preset in args.presets}

    rows = []
    for preset, result in results.items():
        for score in result["scores"]:
            model = score["name"] == "autoencoder"
            rows.append(
                [
                    preset,
                    score["name"],
                    score["rmse"],
                    score["mae"],
                    score["recall_at_10"],
                    score["ndcg_at_10"],
                    score["coverage"],
                    round(result["seconds"], 1) if model else None,
                    round(result["wall_seconds"], 1) if model else None,
                    round(result["peak_rss_mib"]) if model else None,
                ]
            )
    print(
        format_table(
            [
                "preset",
                "model",
                "RMSE",
                "MAE",
                "Recall@10",
                "NDCG@10",
                "coverage",
                "train s",
                "wall s",
                "peak MiB",
            ],
            rows,
        )
    )
    report = {
        "benchmark": "train_ml1m",
        "data": str(data),
        "smoke": args.smoke,
        "environment": environment(),
        "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
