"""Fetch MovieLens zips from GroupLens, verify their md5 and extract them into a local cache.

A dataset is only ever visible in the cache once it is complete: it is staged in a temporary
directory next to its final place and renamed into place in one step.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from recsys.errors import DownloadError, InvalidArgument
from recsys.progress import bar

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/"
CACHE_ENV_VAR = "RECSYS_CACHE_DIR"
MARKER = ".complete"
_CHUNK_SIZE = 1 << 20
_MD5_RE = re.compile(r"[0-9a-f]{32}")


def _is_plain_name(value: str) -> bool:
    """True for a single path component such as "ml-1m.zip": no separators, not "." or ".."."""
    return bool(value) and value not in (".", "..") and not any(c in value for c in "/\\\0")


@dataclass(frozen=True)
class RemoteDataset:
    """A zip on the server: `filename` is fetched, must have digest `md5` (lowercase hex) and
    must contain the top-level directory `folder`, which becomes `cache_dir / folder`."""

    name: str
    filename: str
    md5: str
    folder: str

    def __post_init__(self) -> None:
        for field, value in (("filename", self.filename), ("folder", self.folder)):
            if not _is_plain_name(value):
                raise ValueError(f"RemoteDataset {self.name!r}: {field} must be a plain name")
        if not _MD5_RE.fullmatch(self.md5):
            raise ValueError(f"RemoteDataset {self.name!r}: md5 must be 32 lowercase hex digits")


DATASETS: dict[str, RemoteDataset] = {
    "ml-1m": RemoteDataset("ml-1m", "ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
    "ml-100k": RemoteDataset(
        "ml-100k", "ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", "ml-100k"
    ),
}


def default_cache_dir() -> Path:
    """`$RECSYS_CACHE_DIR` if set and non-empty, else `~/.cache/recsys`."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recsys"


def download_dataset(
    name: str,
    cache_dir: Path | None = None,
    *,
    base_url: str = GROUPLENS_URL,
    timeout: float = 30.0,
    datasets: Mapping[str, RemoteDataset] = DATASETS,
    progress: bool = False,
) -> Path:
    """Return `cache_dir / folder` for dataset `name`, downloading it first if needed.

    A folder holding the `.complete` marker with the expected md5 is returned without any
    network access. Otherwise the zip at `base_url + filename` is streamed to disk, its md5
    checked, extracted, and renamed into place with the marker already inside; a folder
    without a valid marker (left by an older run) is replaced. `timeout` bounds each socket
    operation, not the whole transfer. Nothing partial is left in `cache_dir` on failure.
    `progress` shows the bytes received on stderr (recsys.progress).

    Raises:
        InvalidArgument: `name` is not in `datasets` (field "dataset").
        DownloadError: network or HTTP failure, md5 mismatch, a corrupt zip, a zip member
            escaping the extraction directory, or a zip without the expected folder.
        OSError: the cache directory cannot be created or written.
    """
    dataset = datasets.get(name)
    if dataset is None:
        known = ", ".join(sorted(datasets)) or "(none)"
        raise InvalidArgument(f"unknown dataset {name!r}; known: {known}", field="dataset")

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / dataset.folder
    if _is_complete(target, dataset.md5):
        log.debug("dataset %s already cached at %s", name, target)
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    url = base_url.rstrip("/") + "/" + dataset.filename
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset.folder}-", suffix=".tmp", dir=cache_dir))
    try:
        archive = staging / dataset.filename
        log.info("downloading %s from %s", name, url)
        digest = _fetch(url, archive, timeout, progress)
        if digest != dataset.md5:
            raise DownloadError(
                f"checksum mismatch for dataset {name!r} from {url}: "
                f"expected md5 {dataset.md5}, got {digest}"
            )
        extracted = staging / "extract"
        _extract(archive, extracted, dataset)
        archive.unlink()
        staged = extracted / dataset.folder
        (staged / MARKER).write_text(dataset.md5 + "\n", encoding="ascii")
        _move_into_place(staged, target, dataset.md5)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("dataset %s ready at %s", name, target)
    return target


def _is_complete(target: Path, md5: str) -> bool:
    """True when `target` is a directory whose marker records `md5`."""
    try:
        return (target / MARKER).read_text(encoding="ascii").strip() == md5
    except (OSError, UnicodeDecodeError):
        return False


def _fetch(url: str, dest: Path, timeout: float, progress: bool = False) -> str:
    """Stream `url` into `dest` in chunks and return the md5 hex digest of what was written.

    Network-side failures become DownloadError naming `url`; errors writing `dest` propagate.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"could not download {url}: {_describe(exc)}") from exc
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    shown = bar(total, dest.name, unit="B", unit_scale=True, unit_divisor=1024, enabled=progress)
    with response, dest.open("wb") as out, shown:
        while True:
            try:
                chunk = response.read(_CHUNK_SIZE)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(f"download of {url} interrupted: {_describe(exc)}") from exc
            if not chunk:
                break
            out.write(chunk)
            md5.update(chunk)
            shown.update(len(chunk))
    return md5.hexdigest()


def _describe(exc: BaseException) -> str:
    """A readable reason for a network exception (URLError wraps the real one in `reason`)."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, str):
        exc = exc.reason
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    return text or type(exc).__name__


def _extract(archive: Path, dest: Path, dataset: RemoteDataset) -> None:
    """Extract `archive` into `dest` after checking that no member escapes `dest` and that the
    zip holds the top-level directory `dataset.folder`."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for member in names:
                if _is_unsafe_member(member):
                    raise DownloadError(
                        f"dataset {dataset.name!r}: zip member {member!r} would be extracted "
                        "outside the target directory"
                    )
            if not any(PurePosixPath(m).parts[:1] == (dataset.folder,) for m in names):
                raise DownloadError(
                    f"dataset {dataset.name!r}: zip has no top-level folder {dataset.folder!r}"
                )
            zf.extractall(dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise DownloadError(f"dataset {dataset.name!r}: corrupt zip: {exc}") from exc
    if not (dest / dataset.folder).is_dir():
        raise DownloadError(f"dataset {dataset.name!r}: {dataset.folder!r} is not a directory")


def _is_unsafe_member(member: str) -> bool:
    """True for an absolute member name, one with a drive, or one with a ".." component."""
    if member.startswith(("/", "\\")) or PureWindowsPath(member).drive:
        return True
    return ".." in member.replace("\\", "/").split("/")


def _move_into_place(staged: Path, target: Path, md5: str) -> None:
    """Rename `staged` to `target`, replacing a stale `target` that lacks a valid marker.

    If another process completed `target` concurrently, its copy is kept.
    """
    if target.is_symlink() or target.is_file():
        log.warning("replacing stale %s", target)
        target.unlink()
    elif target.is_dir():
        log.warning("replacing incomplete dataset folder %s", target)
        shutil.rmtree(target)
    try:
        staged.rename(target)
    except OSError:
        if _is_complete(target, md5):
            log.info("%s was completed concurrently; keeping that copy", target)
            return
        raise
