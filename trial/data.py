"""Read and validate Kaggle-layout digit CSVs (`.csv` or `.csv.gz`).

Training files are `label,pixel0..pixel783`, test files `pixel0..pixel783`;
labels 0-9, pixels integers 0-255, no missing cells. Every problem is a
`DataError` whose one-line message names the file, the line and the column.
Parsed arrays are cached by file content, so a 42,000-row CSV is parsed once
and not by every trial.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

N_PIXELS = 784
IMAGE_SHAPE = (28, 28, 1)
PIXEL_COLUMNS = [f"pixel{i}" for i in range(N_PIXELS)]
TRAIN_COLUMNS = ["label", *PIXEL_COLUMNS]
CACHE_VERSION = "1"


class DataError(ValueError):
    """A data file that is missing or not in Kaggle's layout (one-line message)."""


def load_train(path: str | Path, max_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, [N, 28, 28, 1]) and labels (int64, [N]) from a training CSV."""
    table = _load_table(Path(path), TRAIN_COLUMNS)
    if max_rows:
        table = table[:max_rows]
    return table[:, 1:].reshape(-1, *IMAGE_SHAPE), table[:, 0].astype(np.int64)


def load_test(path: str | Path) -> np.ndarray:
    """Images (uint8, [N, 28, 28, 1]) from an unlabelled test CSV, in file order."""
    return _load_table(Path(path), PIXEL_COLUMNS).reshape(-1, *IMAGE_SHAPE)


def cache_dir() -> Path:
    root = (
        os.environ.get("KATIB_DIGITS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "katib-digits"
    )
    return Path(root)


def _load_table(path: Path, columns: list[str]) -> np.ndarray:
    raw = _read_bytes(path)
    key = hashlib.sha256(raw + f"|{CACHE_VERSION}|{len(columns)}".encode()).hexdigest()[:32]
    cached = cache_dir() / f"{key}.npy"
    try:
        return np.load(cached, allow_pickle=False)
    except (OSError, ValueError):
        pass
    table = _parse(path, _decode(path, raw), columns)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table, allow_pickle=False)
        os.replace(tmp, cached)  # atomic: parallel trials never read a half-written cache
    except OSError:
        pass  # a read-only cache only costs speed
    return table


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a CSV file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None


def _decode(path: Path, raw: bytes) -> str:
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _parse(path: Path, text: str, columns: list[str]) -> np.ndarray:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: file is empty, expected a header '{_describe(columns)}' and data rows")
    header = [h.strip().strip('"') for h in lines[0].split(",")]
    if header != columns:
        raise DataError(f"{path}: line 1 (header): {_header_problem(header, columns)}")
    if len(lines) == 1:
        raise DataError(f"{path}: no data rows after the header")
    width = len(columns)
    body = "\n".join(lines[1:])
    try:
        # Fast path: one vectorised parse; only on failure do we look for the culprit.
        table = np.loadtxt(body.splitlines(), delimiter=",", dtype=np.float64, ndmin=2)
        if table.shape[1] != width:
            raise ValueError("width")
    except ValueError:
        _locate_bad_cell(path, lines, columns)
        raise DataError(f"{path}: not a numeric CSV of {width} columns") from None
    if np.isnan(table).any():
        row, col = np.argwhere(np.isnan(table))[0]
        raise DataError(f"{path}: line {row + 2}, column {columns[col]}: missing value, expected an integer")
    return _check_ranges(path, table, columns)


def _locate_bad_cell(path: Path, lines: list[str], columns: list[str]) -> None:
    width = len(columns)
    for lineno, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != width:
            raise DataError(f"{path}: line {lineno}: {len(cells)} columns, expected {width} ({_describe(columns)})")
        for name, cell in zip(columns, cells, strict=True):
            cell = cell.strip()
            if cell == "":
                raise DataError(f"{path}: line {lineno}, column {name}: missing value, expected an integer")
            try:
                float(cell)
            except ValueError:
                raise DataError(f"{path}: line {lineno}, column {name}: {cell[:20]!r} is not a number") from None


def _check_ranges(path: Path, table: np.ndarray, columns: list[str]) -> np.ndarray:
    whole = table == np.round(table)
    if not whole.all():
        row, col = np.argwhere(~whole)[0]
        raise DataError(f"{path}: line {row + 2}, column {columns[col]}: {table[row, col]:g} is not an integer")
    first_pixel = 1 if columns[0] == "label" else 0
    if first_pixel:
        labels = table[:, 0]
        bad = np.flatnonzero((labels < 0) | (labels > 9))
        if bad.size:
            raise DataError(
                f"{path}: line {bad[0] + 2}, column label: {labels[bad[0]]:g} is out of range, expected 0-9"
            )
    pixels = table[:, first_pixel:]
    bad_cells = np.argwhere((pixels < 0) | (pixels > 255))
    if bad_cells.size:
        row, col = bad_cells[0]
        raise DataError(
            f"{path}: line {row + 2}, column {columns[col + first_pixel]}: {pixels[row, col]:g} is out of range, "
            "expected 0-255"
        )
    return table.astype(np.uint8)


def _describe(columns: list[str]) -> str:
    return "label,pixel0..pixel783" if columns[0] == "label" else "pixel0..pixel783"


def _header_problem(header: list[str], columns: list[str]) -> str:
    expected = f"expected '{_describe(columns)}' ({len(columns)} columns)"
    if header == columns[1:]:
        return f"{expected}, found a test-file header without 'label'"
    if header[1:] == columns:
        return f"{expected}, found a training-file header with 'label' (this should be an unlabelled test file)"
    if len(header) != len(columns):
        return f"{len(header)} columns, {expected}"
    i = next(i for i, (a, b) in enumerate(zip(header, columns, strict=True)) if a != b)
    return f"column {i + 1} is {header[i]!r}, {expected} with {columns[i]!r} there"
