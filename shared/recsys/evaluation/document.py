"""The evaluation report of a model version: a Markdown page with the scores beside the
baselines, the ranking modes against EASE, the leakage check, and links to the figures
(training curves, item-embedding map) written next to it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.evaluation.plots import ITEM_MAP, TRAINING_CURVES, write_item_map, write_training_curves
from recsys.evaluation.report import Scores

REPORT = "report.md"


@dataclass
class ReportInput:
    version: str
    data: str  # where the ratings came from
    config: dict
    scores: list[Scores]
    leaked_pairs: int  # test pairs that are also training pairs (the inputs): must be 0
    test_ratings: int
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    refit: dict = field(default_factory=dict)  # metadata.json's "refit", after a refit
    ranking: dict = field(default_factory=dict)  # RankingFit.to_dict(), when recorded
    model_section: list[str] = field(default_factory=list)  # ModelKind.report_lines
    command: str = ""  # the command that produced the report


def training_line(report: ReportInput) -> str:
    """How the served weights were trained, in a sentence."""
    epochs = len(report.history.get("loss", []))
    refit = report.refit
    if not epochs:  # a blend: each part's epochs are in its section
        line = "Training: each part of the blend as its preset trains it (the blend above)."
        return line + (" Each part was then refit on all of train." if refit else "")
    line = f"Training: {epochs} epochs, weights of epoch {report.best_epoch} kept."
    if refit:
        line += (
            f" Then trained again on all {refit['training_ratings']:,} train ratings (fit + "
            f"validation) for {refit['epochs']} epochs: those are the weights served."
        )
    return line


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(
    out_dir: Path | str,
    report: ReportInput,
    *,
    embeddings: np.ndarray,
    titles: list[str],
    counts: np.ndarray,
) -> Path:
    """Write report.md, training_curves.png and item_map.png into `out_dir`; returns the
    report's path. `embeddings` (n_items, d), `titles` and rating `counts` per column."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_training_curves(report.history, out_dir / TRAINING_CURVES, best_epoch=report.best_epoch)
    write_item_map(embeddings, titles, counts, out_dir / ITEM_MAP)
    rows = [
        [s.name, s.rmse, s.mae, s.recall_at_10, s.ndcg_at_10, s.test_pairs, s.coverage]
        for s in report.scores
    ]
    lines = [
        f"# Evaluation of model version {report.version}",
        "",
        f"Data: `{report.data}`; the evaluation split of docs/model.md (seeded permutation, "
        "90% train / 10% test, 10% of train for validation).",
        f"Produced by `{report.command}`." if report.command else "",
        "",
        "## Scores on the test ratings",
        "",
        markdown_table(
            ["model", "RMSE", "MAE", "Recall@10", "NDCG@10", "test pairs", "coverage"], rows
        ),
        "",
        "RMSE and MAE: de-normalized predictions clipped to the rating scale. Recall@10 and "
        "NDCG@10: the top 10 among the covered items a user did not rate in train, held-out "
        "ratings ≥ 4 relevant. The model's first row ranks as `Recommend` does by default; "
        'the rows "by …" are its other ranking modes.',
        "",
        f"Leakage check: {report.leaked_pairs} of {report.test_ratings:,} test ratings are "
        "also training ratings; users' inputs are their training ratings only.",
        "",
    ]
    if report.ranking:
        lines += [
            "## Relevance ranking (EASE + weight × predicted preference)",
            "",
            f"EASE λ = {report.ranking['l2']:g}; weight chosen on the validation part: "
            f"**{report.ranking['preference_weight']:g}**.",
            "",
            markdown_table(
                ["weight", "validation Recall@10", "validation NDCG@10"],
                [
                    [f"{r['preference_weight']:g}", r["recall_at_10"], r["ndcg_at_10"]]
                    for r in report.ranking.get("validation", [])
                ],
            ),
            "",
        ]
    lines += report.model_section
    lines += [
        "## Figures",
        "",
        training_line(report),
        "",
        f"![training curves]({TRAINING_CURVES})",
        "",
        "Item embeddings (columns of the output layer's kernel; the item codes for the item "
        "kind), first two principal components, the most-rated titles named:",
        "",
        f"![item map]({ITEM_MAP})",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(report.config, indent=1, sort_keys=True),
        "```",
        "",
    ]
    path = out_dir / REPORT
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
