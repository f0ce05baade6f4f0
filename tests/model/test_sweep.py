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

    base = PRESETS["default"]
    (_, item) = configurations(base, {}, [parse_config("preset=item encoding_size=16")])
    assert item == PRESETS["item"].replace(encoding_size=16)
    with pytest.raises(InvalidArgument) as caught:
        configurations(base, {}, [parse_config("preset=nonesuch")])
    assert caught.value.field == "config"


def test_the_blend_is_least_squares_on_validation_and_scored_on_test():
    import numpy as np

    from recsys.sweep import Blend

    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 5, 400), rng.uniform(1, 5, 400)
    truth = np.clip(0.3 * a + 0.6 * b + 0.4, 1, 5)
    validation = np.column_stack([a, b])
    validation[0, 1] = np.nan  # not covered by one configuration: left out
    test = np.column_stack([a[::-1], b[::-1]])
    blend = Blend.fit(["a", "b"], validation, truth, test, truth[::-1], (1.0, 5.0))
    np.testing.assert_allclose(blend.weights, [0.3, 0.6], atol=1e-9)
    assert blend.intercept == pytest.approx(0.4)
    assert blend.validation_rmse == pytest.approx(0.0, abs=1e-9)
    assert blend.test_rmse == pytest.approx(0.0, abs=1e-9) and blend.test_pairs == 400
    single = min(np.sqrt(np.mean((test[:, j] - truth[::-1]) ** 2)) for j in range(2))
    assert blend.best_single_test_rmse == pytest.approx(single)
    assert "| b | 0.6000 |" in blend.markdown()


@pytest.mark.slow
def test_sweep_blends_a_user_and_an_item_configuration(synthetic_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(synthetic_dir), "--no-download", "--out", str(out)]
    args += ["--set", "encoding_size=8", "--set", "max_epochs=6", "--blend"]
    args += ["--config", "preset=item encoding_size=8 max_epochs=6 batch_size=32 refit=true"]
    assert main(args) == 0
    result = json.loads((out / "sweep.json").read_text())
    blend, rows = result["blend"], result["rows"]
    assert blend["labels"] == [r["label"] for r in rows] and len(blend["weights"]) == 2
    # least squares with an intercept on the validation pairs does no worse there than
    # either configuration alone (every one of them covers the same catalog here)
    assert blend["validation_rmse"] <= min(r["validation_rmse"] for r in rows) + 1e-6
    assert blend["test_pairs"] > 0 and blend["test_rmse"] > 0
    assert "Blend: validation RMSE" in (out / "sweep.md").read_text()


def test_a_blend_needs_two_configurations_that_stop_on_validation(synthetic_dir):
    # refused before anything trains
    from recsys.model.config import PRESETS
    from recsys.pipeline import find_data
    from recsys.sweep import run_sweep

    source = find_data(synthetic_dir, download=None)
    for configs in ([PRESETS["default"]], [PRESETS["default"], PRESETS["article"]]):
        with pytest.raises(InvalidArgument) as caught:
            run_sweep(source, configs, PRESETS["default"], blend=True)
        assert caught.value.field == "blend"
