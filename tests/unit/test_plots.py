"""The figures: PCA by hand, PNG files written (Agg backend), the report linking them."""

import numpy as np
import pytest

from recsys.evaluation.document import ReportInput, markdown_table, write_report
from recsys.evaluation.plots import pca_2d, write_item_map, write_training_curves
from recsys.evaluation.report import Scores
from recsys.model.registry import get_kind

PNG = b"\x89PNG\r\n\x1a\n"


def test_pca_by_hand():
    # points on the line y = 2x, centered: one component explains everything
    points = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])
    coordinates, share = pca_2d(points)
    assert share == pytest.approx([1.0, 0.0], abs=1e-12)
    # distances along the first component are the distances along the line: √5 apart
    assert abs(coordinates[2, 0] - coordinates[0, 0]) == pytest.approx(2 * np.sqrt(5))
    np.testing.assert_allclose(coordinates[:, 1], 0, atol=1e-12)


def test_pngs_and_report(tmp_path):
    history = {"loss": [0.9, 0.8, 0.85], "val_rmse": [0.95, 0.9, 0.92]}
    assert write_training_curves(history, tmp_path / "c.png", best_epoch=2).read_bytes()[:8] == PNG
    assert write_training_curves({"loss": [1.0]}, tmp_path / "d.png").read_bytes()[:8] == PNG
    rng = np.random.default_rng(0)
    embeddings, titles = rng.normal(size=(30, 4)), [f"Movie {i}" for i in range(30)]
    counts = np.arange(30)
    assert write_item_map(embeddings, titles, counts, tmp_path / "m.png").read_bytes()[:8] == PNG
    report = write_report(
        tmp_path / "report",
        ReportInput(
            version="v1",
            data="somewhere",
            config={"encoding_size": 4},
            scores=[Scores("EASE", None, None, 0.25, 0.2, 10, 1.0)],
            leaked_pairs=0,
            test_ratings=10,
            history=history,
            best_epoch=2,
            model_section=get_kind("item").report_lines(
                {
                    "fold_in": {
                        "l2": 100.0,
                        "validation": [{"l2": 30.0, "rmse": 0.9}, {"l2": 100.0, "rmse": 0.8}],
                    }
                }
            ),
            command="recsys evaluate",
        ),
        embeddings=embeddings,
        titles=titles,
        counts=counts,
    ).read_text()
    assert "![training curves](training_curves.png)" in report
    assert "![item map](item_map.png)" in report
    assert "| EASE | – | – | 0.2500 | 0.2000 | 10 | 1.0000 |" in report
    assert "Leakage check: 0 of 10 test ratings" in report
    assert "λ chosen by validation RMSE (fit ratings as input): **100**" in report
    assert "| 30 | 0.9000 |" in report and "| 100 | 0.8000 |" in report
    assert (tmp_path / "report" / "item_map.png").read_bytes()[:8] == PNG


def test_markdown_table_escapes_pipes():
    assert markdown_table(["a"], [["x|y"]]).splitlines()[-1] == "| x\\|y |"
