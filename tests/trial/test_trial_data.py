"""CSV validation: every bad-input case gives a one-line DataError naming file, line and column."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SAMPLE
from trial.data import PIXEL_COLUMNS, TRAIN_COLUMNS, DataError, load_test, load_train


def write_csv(path, header, rows):
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_row(label=3, pixel=0):
    return [label] + [pixel] * 784


def test_sample_loads_with_expected_shapes():
    x, y = load_train(SAMPLE / "train.csv.gz")
    assert x.shape == (2000, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (2000,) and set(np.unique(y)) == set(range(10))
    assert load_test(SAMPLE / "test.csv.gz").shape == (500, 28, 28, 1)


def test_max_rows_takes_the_first_rows():
    x_all, y_all = load_train(SAMPLE / "train.csv.gz")
    x, y = load_train(SAMPLE / "train.csv.gz", max_rows=50)
    assert len(x) == 50 and np.array_equal(y, y_all[:50]) and np.array_equal(x, x_all[:50])


def test_plain_and_gzip_csv_parse_the_same(tmp_path):
    path = write_csv(tmp_path / "t.csv", TRAIN_COLUMNS, [good_row(1, 7), good_row(9, 255)])
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for p in (path, gz):
        x, y = load_train(p)
        assert list(y) == [1, 9] and x[1].max() == 255 and x[0].min() == 7


def test_parsed_arrays_are_cached_by_content(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("KATIB_DIGITS_CACHE", str(cache))
    path = write_csv(tmp_path / "t.csv", TRAIN_COLUMNS, [good_row(1)])
    load_train(path)
    assert len(list(cache.glob("*.npy"))) == 1
    write_csv(path, TRAIN_COLUMNS, [good_row(2)])  # new content, new key: never a stale result
    assert list(load_train(path)[1]) == [2]
    assert len(list(cache.glob("*.npy"))) == 2


BAD_TRAIN = {
    "missing column": (TRAIN_COLUMNS[:-1], [good_row()[:-1]], "line 1 (header): 784 columns"),
    "wrong header name": (["lbl", *PIXEL_COLUMNS], [good_row()], "column 1 is 'lbl'"),
    "test header given as train": (PIXEL_COLUMNS, [good_row()[1:]], "test-file header without 'label'"),
    "label 11": (
        TRAIN_COLUMNS,
        [good_row(), good_row(label=11)],
        "line 3, column label: 11 is out of range, expected 0-9",
    ),
    "pixel 300": (TRAIN_COLUMNS, [good_row(pixel=300)], "line 2, column pixel0: 300 is out of range, expected 0-255"),
    "negative pixel": (TRAIN_COLUMNS, [good_row(pixel=-1)], "out of range, expected 0-255"),
    "non-numeric cell": (
        TRAIN_COLUMNS,
        [good_row()[:5] + ["abc"] + good_row()[6:]],
        "line 2, column pixel4: 'abc' is not a number",
    ),
    "missing value": (TRAIN_COLUMNS, [good_row()[:5] + [""] + good_row()[6:]], "line 2, column pixel4: missing value"),
    "row too long": (TRAIN_COLUMNS, [good_row() + [0]], "line 2: 786 columns, expected 785"),
    "row too short": (TRAIN_COLUMNS, [good_row(), good_row()[:-3]], "line 3: 782 columns, expected 785"),
    "fractional pixel": (
        TRAIN_COLUMNS,
        [good_row()[:2] + [1.5] + good_row()[3:]],
        "column pixel1: 1.5 is not an integer",
    ),
    "header only": (TRAIN_COLUMNS, [], "no data rows"),
}


@pytest.mark.parametrize("case", BAD_TRAIN, ids=list(BAD_TRAIN))
def test_bad_training_csv_is_one_line_error_naming_the_place(tmp_path, case):
    header, rows, expected = BAD_TRAIN[case]
    path = write_csv(tmp_path / "train.csv", header, rows)
    with pytest.raises(DataError) as err:
        load_train(path)
    message = str(err.value)
    assert expected in message
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "file is empty"),
        (b"\n\n", "file is empty"),
        (b"label,pixel0\x00\xff\xfe", "not UTF-8"),
    ],
)
def test_empty_or_binary_file(tmp_path, content, expected):
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        load_train(path)


def test_gzip_that_is_not_gzip(tmp_path):
    path = tmp_path / "train.csv.gz"
    path.write_text("label,pixel0\n1,2\n")
    with pytest.raises(DataError, match="not a valid gzip file"):
        load_train(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_train(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        load_train(tmp_path)


def test_zero_byte_test_file_and_train_header_in_test_file(tmp_path):
    empty = tmp_path / "test.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        load_test(empty)
    labelled = write_csv(tmp_path / "test2.csv", TRAIN_COLUMNS, [good_row()])
    with pytest.raises(DataError, match="training-file header with 'label'"):
        load_test(labelled)


@pytest.mark.process
@pytest.mark.parametrize("case", ["missing column", "label 11", "pixel 300"])
def test_trial_cli_exits_2_with_one_line_and_no_traceback(tmp_path, case):
    header, rows, expected = BAD_TRAIN[case]
    path = write_csv(tmp_path / "train.csv", header, rows)
    proc = subprocess.run(
        [sys.executable, "-m", "trial", "--data", str(path), "--epochs", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("trial: error:")]
    assert len(errors) == 1 and expected in errors[0] and proc.stdout == ""


@pytest.mark.process
def test_trial_cli_empty_file_exits_2(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-m", "trial", "--data", str(path)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 2 and "file is empty" in proc.stderr and "Traceback" not in proc.stderr
