import json
import subprocess
import sys

import pytest

from recsys.cli import main, parse_ratings, parse_settings
from recsys.errors import InvalidArgument
from recsys.output import format_table


def test_parse_ratings():
    assert parse_ratings("260:5, 480:4.5,260:4") == {260: 4.0, 480: 4.5}
    for bad in ("", "260", "260:x", "a:5"):
        with pytest.raises(InvalidArgument):
            parse_ratings(bad)


def test_parse_settings():
    assert parse_settings(
        ["encoding_size=64", "l2=1e-3", "top_n=none", "optimizer=adam", "rescale_input=true"]
    ) == {
        "encoding_size": 64,
        "l2": 1e-3,
        "top_n": None,
        "optimizer": "adam",
        "rescale_input": True,
    }
    with pytest.raises(InvalidArgument):
        parse_settings(["encoding_size"])


def test_table_alignment():
    table = format_table(["name", "x"], [["a", 1.0], ["bb", None]])
    assert table.splitlines() == ["name       x", "----  ------", "a     1.0000", "bb         -"]


def test_help_reads_well():
    out = subprocess.run(
        [sys.executable, "-m", "recsys.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "evaluate", "sweep", "recommend", "explain", "similar", "versions"):
        assert command in out


@pytest.mark.slow
def test_train_then_query(synthetic_dir, tmp_path, capsys):
    models = tmp_path / "models"
    assert (
        main(
            [
                "train",
                "--data",
                str(synthetic_dir),
                "--model-dir",
                str(models),
                "--set",
                "encoding_size=8",
                "--set",
                "max_epochs=5",
                "--json",
                str(tmp_path / "train.json"),
                "--report-dir",
                str(tmp_path / "train-report"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "bias baseline" in out and "autoencoder" in out
    result = json.loads((tmp_path / "train.json").read_text())
    assert [s["name"] for s in result["scores"]] == [
        "global mean",
        "bias baseline",
        "EASE",
        "autoencoder",
        "autoencoder by rating",
        "autoencoder by preference",
    ]
    report = (tmp_path / "train-report" / "report.md").read_text()
    for figure in ("training_curves.png", "item_map.png"):
        assert f"]({figure})" in report
        assert (tmp_path / "train-report" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Leakage check: 0 of" in report

    assert main(["recommend", "1:5,5:5,2:1", "-k", "3", "--model-dir", str(models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 2 + 3 and "Synthetic Movie" in lines[-1]
    assert "by relevance" in lines[0]
    assert main(["recommend", "1:5", "--rank-by", "rating", "--model-dir", str(models)]) == 0
    assert "by rating" in capsys.readouterr().out

    explained = tmp_path / "explain.json"
    args = ["explain", "1:5,5:5,2:1", "9", "--limit", "2", "--json", str(explained)]
    assert main([*args, "--model-dir", str(models)]) == 0
    assert "(1 others)" in capsys.readouterr().out
    e = json.loads(explained.read_text())
    parts = [c["contribution"] for c in e["contributions"]] + [e["other_contribution"]]
    assert sum(parts) == pytest.approx(e["predicted_preference"], abs=1e-5)
    assert e["global_mean"] + e["item_mean"] + e["user_mean"] + sum(parts) == pytest.approx(
        e["predicted_rating"]
    )

    assert main(["similar", "1", "-k", "2", "--metric", "cosine", "--model-dir", str(models)]) == 0
    assert "cosine distance, nearest to 1" in capsys.readouterr().out

    assert (
        main(
            [
                "evaluate",
                "--model-dir",
                str(models),
                "--json",
                str(tmp_path / "eval.json"),
                "--report-dir",
                str(tmp_path / "eval-report"),
            ]
        )
        == 0
    )
    assert (tmp_path / "eval-report" / "item_map.png").is_file()
    evaluated = json.loads((tmp_path / "eval.json").read_text())["scores"]
    assert evaluated == result["scores"]  # the same split and model give the same figures

    assert main(["versions", "--model-dir", str(models)]) == 0
    assert result["version"] in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["similar", "1", "--model-dir", str(tmp_path)]) == 2
    assert "no model versions" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--model-dir", str(tmp_path)]) == 2
    assert "no MovieLens ratings file" in capsys.readouterr().err
