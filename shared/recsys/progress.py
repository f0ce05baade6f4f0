"""Progress of long commands (load-features, sweep, loadtest, download) on stderr, with tqdm.

On a terminal it is tqdm's bar, redrawn in place. Anywhere else (a CI log, a file, a pipe,
`kubectl logs`) carriage-return redraws would pile up on one line, so the same bar is
written as whole lines instead, at most one every `LINE_EVERY_S` seconds, plus the first and
the last: e.g. `load-features:  50%|#####     | 200/400 [00:01<00:01, 180.2users/s]`.
tqdm's own environment variables apply (`TQDM_DISABLE=1` silences every bar,
`TQDM_MININTERVAL=60` spaces the lines)."""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_S = 10.0  # at most one progress line this often when stderr is not a terminal


class _Lines:
    """A stream for tqdm that turns each redraw ("\\r" + the bar + padding) into one line."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line and line != self.last:  # tqdm's closing redraw repeats the last state
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def bar(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
    **options,
) -> tqdm:
    """A tqdm bar on `stream` (default: the current sys.stderr); a silent one when not
    `enabled`. Use it as a context manager and call `.update(n)`."""
    stream = stream if stream is not None else sys.stderr
    terminal = hasattr(stream, "isatty") and stream.isatty()
    if not terminal:
        options = {"mininterval": LINE_EVERY_S, "ascii": True, "dynamic_ncols": False, **options}
        options.setdefault("ncols", 100)
        stream = _Lines(stream)
    if not enabled:
        options["disable"] = True  # otherwise TQDM_DISABLE decides
    return tqdm(total=total, desc=desc, unit=unit, file=stream, **options)
