"""The latency histogram of a load test as a PNG (matplotlib, imported only when a PNG is
asked for, drawn with the Agg backend without pyplot's global state)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from recsys.errors import FailedPrecondition
from recsys.loadtest.report import LoadReport

PNG_BINS = 50


def check_png_support() -> None:
    """Fail before a run, not after it, when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise FailedPrecondition("--png needs matplotlib: pip install 'matplotlib>=3.9,<4'")


def write_latency_png(report: LoadReport, path: Path | str) -> Path:
    """Histogram of every recorded request's latency (ms), p50 and p99 marked; returns the
    path written."""
    check_png_support()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if report.count:
        axes.hist(report.latencies_ms, bins=PNG_BINS, color="#4878a8")
        for label, value, style in (
            ("p50", report.latency.p50, "--"),
            ("p99", report.latency.p99, ":"),
        ):
            axes.axvline(value, color="#c44e52", linestyle=style, label=f"{label} {value:.2f} ms")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no requests recorded", ha="center", va="center")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("requests")
    axes.set_title(
        f"{report.workload}: {report.count} requests, {report.rps:.0f} RPS, {report.ok} OK",
        fontsize=10,
    )
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
