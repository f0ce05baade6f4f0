"""Plain-text tables and JSON reports, shared by the CLI, the demo, the load tester and the
benchmarks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) or value is None


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def scores_table(scores) -> str:
    return format_table(
        ["model", "RMSE", "MAE", "Recall@10", "NDCG@10", "test pairs", "coverage"],
        [
            [s.name, s.rmse, s.mae, s.recall_at_10, s.ndcg_at_10, s.test_pairs, s.coverage]
            for s in scores
        ],
    )


def write_json(path: Path, value: object) -> None:
    """A report as indented JSON, creating the directory; logged."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(value, indent=2) + "\n")
    log.info("wrote %s", path)
