"""The sweep: its grid, and a tiny run of `recsys sweep` that writes the results table."""

import json

import pytest

from recsys.cli import main
from recsys.errors import InvalidArgument
from recsys.model.config import TrainConfig
from recsys.sweep import configurations, label, parse_config, parse_vary, split_values


def test_value_lists_keep_brackets_together():
    assert split_values("64,128") == ["64", "128"]
    assert split_values("[],[256,128]") == ["[]", "[256,128]"]
    for bad in ("[256", "64,,128", "]"):
        with pytest.raises(InvalidArgument):
            split_values(bad)


def test_grids():
    base = TrainConfig(encoding_size=64)
    grid = parse_vary(["encoding_size=32,64", "hidden_layers=[],[16]"])
    assert grid == {"encoding_size": [32, 64], "hidden_layers": [[], [16]]}
    # cartesian: base first, then 4 combinations of which one is the base (dropped)
    full = configurations(base, grid, [])
    assert full[0] == base and len(full) == 4
    # one at a time: base, 32 (64 is the base), [16] ([] is the base)
    alone = configurations(
        base, grid, [parse_config("activation=selu input_dropout=0.2")], one_at_a_time=True
    )
    assert [label(c, base) for c in alone] == [
        "(base)",
        "encoding_size=32",
        "hidden_layers=[16]",
        'activation="selu" input_dropout=0.2',
    ]
    with pytest.raises(InvalidArgument):
        parse_vary(["encoding_size"])
    with pytest.raises(InvalidArgument):
        configurations(base, {"hide_fraction": [1.5]}, [])


@pytest.mark.slow
def test_sweep_command_writes_the_table(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(synthetic_dir), "--no-download", "--out", str(out)]
    args += ["--set", "encoding_size=8", "--set", "max_epochs=4", "--vary", "hidden_layers=[],[12]"]
    args += ["--config", "activation=selu input_dropout=0.1"]
    assert main(args) == 0
    printed, err = capsys.readouterr()
    progress = [line for line in err.splitlines() if line.startswith("sweep:")]
    counts = [line.split("|")[2].split()[0] for line in progress]  # a line per configuration
    assert list(dict.fromkeys(counts)) == ["0/3", "1/3", "2/3", "3/3"]  # (closing: 3/3 again)
    result = json.loads((out / "sweep.json").read_text())
    assert [r["label"] for r in result["rows"]] == [
        "(base)",
        "hidden_layers=[12]",
        'activation="selu" input_dropout=0.1',
    ]
    best = min(result["rows"], key=lambda r: r["validation_rmse"])
    assert (
        result["best"] == best["label"] and f"best by validation RMSE: {best['label']}" in printed
    )
    assert all(r["leaked_pairs"] == 0 and r["test_rmse"] > 0 for r in result["rows"])
    assert [b["name"] for b in result["baselines"]] == ["global mean", "bias baseline", "EASE"]
    table = (out / "sweep.md").read_text()
    assert "| **" + best["label"] + "** |" in table
    assert "Leakage check: 0 test ratings" in table


def test_the_sweep_ranks_by_what_serves():
    # a run's validation RMSE is the lowest per-epoch val_rmse (the epoch whose weights are
    # kept), unless the kind measured its served form apart (the item kind: its fold-in)
    from types import SimpleNamespace

    from recsys.model.training import trained_model

    history = SimpleNamespace(history={"loss": [1.0, 0.9, 0.95], "val_rmse": [0.9, 0.86, 0.87]})
    run = (None, None, history, "val_rmse", None, None, None, (1.0, 5.0), 0.0)
    assert trained_model(*run).validation_rmse == 0.86
    assert trained_model(*run).best_epoch == 2
    assert trained_model(*run, validation_rmse=0.85).validation_rmse == 0.85
    no_validation = SimpleNamespace(history={"loss": [1.0, 0.9]})
    assert trained_model(None, None, no_validation, "loss", *run[4:]).validation_rmse is None


def test_a_config_may_start_from_another_preset():
    from recsys.model.config import PRESETS

    base = PRESETS["user"]
    (_, item) = configurations(base, {}, [parse_config("preset=item encoding_size=16")])
    assert item == PRESETS["item"].replace(encoding_size=16)
    with pytest.raises(InvalidArgument) as caught:
        configurations(base, {}, [parse_config("preset=nonesuch")])
    assert caught.value.field == "config"
