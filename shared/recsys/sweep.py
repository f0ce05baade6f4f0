"""`recsys sweep`: train several configurations on the same evaluation split and tabulate
their validation and test scores beside EASE and the baselines (Markdown and JSON).

Configurations: the base (a preset plus --set), then the --vary grid (every combination,
or each value alone with --one-at-a-time), then each --config. The best configuration is the
one with the lowest validation RMSE (the test ratings never choose anything)."""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recsys.errors import InvalidArgument
from recsys.model.config import TrainConfig

log = logging.getLogger(__name__)

SWEEP_MARKDOWN = "sweep.md"
SWEEP_JSON = "sweep.json"


def split_values(text: str) -> list[str]:
    """'64,128' → ['64', '128']; commas inside brackets stay: '[],[256,128]' → ['[]',
    '[256,128]']."""
    values, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current += char
    values.append(current)
    if depth != 0 or any(not v.strip() for v in values):
        raise InvalidArgument(f"bad value list {text!r}", field="vary")
    return [v.strip() for v in values]


def parse_value(text: str) -> Any:
    """JSON-ish: numbers, lists, true/false, none; anything else is a string."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(lowered if lowered in ("true", "false") else text)
    except ValueError:
        return text


def parse_vary(specs: list[str]) -> dict[str, list[Any]]:
    """['encoding_size=64,128', 'hidden_layers=[],[256]'] → {name: [values]}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"bad --vary {spec!r}: expected NAME=V1,V2", field="vary")
        grid[name.strip()] = [parse_value(v) for v in split_values(values)]
    return grid


def parse_config(text: str) -> dict[str, Any]:
    """'hidden_layers=[256] activation=selu' → {name: value} (space-separated settings)."""
    settings = {}
    for pair in text.split():
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidArgument(f"bad --config setting {pair!r}: NAME=VALUE", field="config")
        settings[name] = parse_value(value)
    if not settings:
        raise InvalidArgument("empty --config", field="config")
    return settings


def configurations(
    base: TrainConfig,
    grid: dict[str, list[Any]],
    extra: list[dict[str, Any]],
    *,
    one_at_a_time: bool = False,
) -> list[TrainConfig]:
    """The base first, then the grid's configurations, then `extra`; duplicates dropped."""
    changes: list[dict[str, Any]] = [{}]
    if one_at_a_time:
        changes += [{name: v} for name, values in grid.items() for v in values]
    elif grid:
        names = list(grid)
        changes += [
            dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())
        ]
    changes += extra
    configs: list[TrainConfig] = []
    for change in changes:
        config = start_of(change, base).replace(
            **{k: v for k, v in change.items() if k != "preset"}
        )
        if config not in configs:
            configs.append(config)
    return configs


def start_of(change: dict[str, Any], base: TrainConfig) -> TrainConfig:
    """What a configuration changes: `base`, or the preset its "preset" setting names (a
    --config of another kind, e.g. 'preset=item')."""
    from recsys.model.config import PRESETS

    name = change.get("preset")
    if name is None:
        return base
    if name not in PRESETS:
        raise InvalidArgument(f"preset must be one of {sorted(PRESETS)}", field="config")
    return PRESETS[name]


def label(config: TrainConfig, base: TrainConfig) -> str:
    """The settings that differ from the base, e.g. 'encoding_size=128 hidden_layers=[256]'."""
    ours, theirs = config.to_dict(), base.to_dict()
    changed = [f"{k}={json.dumps(v)}" for k, v in ours.items() if theirs.get(k) != v]
    return " ".join(changed) or "(base)"


@dataclass
class SweepRow:
    label: str
    config: dict
    epochs: int
    best_epoch: int
    validation_rmse: float | None  # of what serves (TrainedModel.validation_rmse)
    test_rmse: float
    test_mae: float
    recall_at_10: float | None  # ranked as Recommend ranks by default (relevance)
    ndcg_at_10: float | None
    rating_ndcg_at_10: float | None  # the same model ranked by predicted rating
    preference_weight: float  # of the relevance blend, chosen on validation
    seconds: float
    leaked_pairs: int


@dataclass
class SweepResult:
    data: str
    base: dict
    rows: list[SweepRow]
    baselines: list[dict]  # global mean, bias baseline and EASE, from the first run
    seconds: float

    @property
    def best(self) -> SweepRow:
        return min(
            self.rows,
            key=lambda r: r.validation_rmse if r.validation_rmse is not None else r.test_rmse,
        )

    def to_json(self) -> dict:
        return {
            "data": self.data,
            "base": self.base,
            "best": self.best.label,
            "rows": [asdict(r) for r in self.rows],
            "baselines": self.baselines,
            "seconds": self.seconds,
        }

    def markdown(self) -> str:
        from recsys.evaluation.document import markdown_table

        best = self.best
        rows = [
            [
                ("**" + r.label + "**") if r is best else r.label,
                f"{r.epochs} ({r.best_epoch})",
                r.validation_rmse,
                r.test_rmse,
                r.test_mae,
                r.recall_at_10,
                r.ndcg_at_10,
                r.rating_ndcg_at_10,
                f"{r.preference_weight:g}",
                f"{r.seconds:.1f}",
            ]
            for r in self.rows
        ]
        table = markdown_table(
            [
                "configuration (changes to the base)",
                "epochs (best)",
                "val RMSE",
                "test RMSE",
                "test MAE",
                "Recall@10",
                "NDCG@10",
                "NDCG@10 by rating",
                "blend weight",
                "train s",
            ],
            rows,
        )
        baselines = markdown_table(
            ["baseline", "test RMSE", "Recall@10", "NDCG@10"],
            [[b["name"], b["rmse"], b["recall_at_10"], b["ndcg_at_10"]] for b in self.baselines],
        )
        leaked = sum(r.leaked_pairs for r in self.rows)
        return "\n".join(
            [
                f"Sweep on `{self.data}` (the evaluation split of docs/model.md), "
                f"{len(self.rows)} configurations, "
                f"{self.seconds / 60:.1f} min. Best by validation RMSE in bold.",
                "",
                table,
                "",
                baselines,
                "",
                f"Leakage check: {leaked} test ratings were training ratings (inputs) in any run.",
                "",
            ]
        )


def run_sweep(
    source, configs: list[TrainConfig], base: TrainConfig, *, progress: bool = False
) -> SweepResult:
    """Train and score every configuration on one split; EASE fits are shared. `progress`
    shows the configurations done on stderr (recsys.progress)."""
    from recsys.data.split import split_ratings
    from recsys.pipeline import SPLIT_SEED, train_and_score
    from recsys.progress import bar

    started = time.perf_counter()
    split = split_ratings(source.data.ratings, seed=SPLIT_SEED)
    ease_cache: dict = {}
    rows: list[SweepRow] = []
    baselines: list[dict] = []
    with bar(len(configs), "sweep", unit="configs", enabled=progress, mininterval=0) as shown:
        for n, config in enumerate(configs, 1):
            name = label(config, base)
            log.info("sweep %d/%d: %s", n, len(configs), name)
            scored = train_and_score(source, config, split=split, ease_cache=ease_cache)
            by_name = {s.name: s for s in scored.scores}
            model = by_name["autoencoder"]
            by_rating = by_name.get("autoencoder by rating")
            history = scored.trained.history
            rows.append(
                SweepRow(
                    label=name,
                    config=config.to_dict(),
                    epochs=len(history.get("loss", [])),
                    best_epoch=scored.trained.best_epoch,
                    validation_rmse=scored.trained.validation_rmse,
                    test_rmse=model.rmse,
                    test_mae=model.mae,
                    recall_at_10=model.recall_at_10,
                    ndcg_at_10=model.ndcg_at_10,
                    rating_ndcg_at_10=by_rating.ndcg_at_10 if by_rating else None,
                    preference_weight=scored.ranking.ranking.preference_weight,
                    seconds=scored.trained.seconds,
                    leaked_pairs=scored.leaked_pairs,
                )
            )
            if not baselines:
                baselines = [
                    s.to_dict() for s in scored.scores if not s.name.startswith("autoencoder")
                ]
            log.info(
                "sweep %d/%d: val RMSE %s test RMSE %.4f NDCG@10 %s",
                n,
                len(configs),
                rows[-1].validation_rmse,
                model.rmse,
                model.ndcg_at_10,
            )
            shown.set_postfix_str(name, refresh=False)
            shown.update(1)
    return SweepResult(
        data=str(source.path),
        base=base.to_dict(),
        rows=rows,
        baselines=baselines,
        seconds=time.perf_counter() - started,
    )


def write_sweep(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / SWEEP_MARKDOWN
    markdown.write_text(result.markdown(), encoding="utf-8")
    data = out_dir / SWEEP_JSON
    data.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return markdown, data
