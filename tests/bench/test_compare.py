"""bench.sections.compare: models the accuracy section trained, scored side by side on their hold-out. The
models' predictions are stand-ins (the seam is retrain.hold_out_predictions), so every count is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from bench.cli import build_parser
from bench.sections import compare
from bench.sections.compare import measure, parse_run

ROWS = 10
LABELS = np.arange(ROWS) % 10


def member(folder, k: int, split_seed: int) -> None:
    """An accuracy --out member as the section leaves it: its record (the command) and its model file."""
    (folder / "accuracy-model" / f"member-{k}").mkdir(parents=True, exist_ok=True)
    (folder / "accuracy-model" / f"member-{k}" / "model.keras").write_text("stand-in")
    command = f"python -m trial --data d/train.csv.gz --seed {k} --split-seed {split_seed} --epochs 27"
    (folder / f"accuracy-member-{k}.json").write_text(json.dumps({"command": command}))


def probabilities(wrong_rows: set[int]) -> np.ndarray:
    """One model's probabilities: sure of the label, except on `wrong_rows`, where it is sure of the next digit."""
    p = np.zeros((ROWS, 10), dtype="float32")
    for i, label in enumerate(LABELS):
        p[i, (label + 1) % 10 if i in wrong_rows else label] = 0.9
        p[i, label if i in wrong_rows else (label + 1) % 10] = 0.1
    return p


@pytest.fixture
def predicted(monkeypatch):
    """Stand-in predictions keyed by model file; records each call's models and split seed."""
    table: dict[str, np.ndarray] = {}
    calls: list[tuple[list[str], int]] = []

    def hold_out_predictions(files, data, val_fraction, split_seed=0):
        calls.append(([str(f) for f in files], split_seed))
        return None, LABELS, np.arange(ROWS), np.stack([table[str(f)] for f in files])

    monkeypatch.setattr("pipeline.submission.retrain.hold_out_predictions", hold_out_predictions)
    return table, calls


def test_runs_alone_averaged_and_in_pairs_on_each_split_then_summed(tmp_path, predicted):
    table, calls = predicted
    wrong = {  # (run, split seed, member) -> the rows that model gets wrong
        ("tuned", 1, 0): {0, 1, 2},
        ("tuned", 1, 1): {0, 5},
        ("default", 1, 0): {2, 3},
        ("tuned", 2, 0): {4},
        ("tuned", 2, 1): {9},
        ("default", 2, 0): {4, 6, 7},
    }
    for (run, seed, k), rows in wrong.items():
        folder = tmp_path / f"{run}-split{seed}"
        member(folder, k, seed)
        table[str(folder / "accuracy-model" / f"member-{k}" / "model.keras")] = probabilities(rows)
    tuned, default = str(tmp_path / "tuned-split{split}") + ":0", str(tmp_path / "default-split{split}")

    result = measure(tmp_path, [parse_run(tuned), parse_run(default)], [1, 2])

    assert [seed for _, seed in calls] == [1, 2]
    assert calls[0][0] == [str(tmp_path / "tuned-split1/accuracy-model/member-0/model.keras")] + [
        str(tmp_path / "default-split1/accuracy-model/member-0/model.keras")
    ]  # ':0' keeps member 0 of the tuned run only
    first, second = result["per_split"]
    assert first["errors"] == {tuned: 3, default: 2, "all averaged": 1}  # averaged, only row 2 stays wrong
    assert first["pairs"][0] == {"a": tuned, "b": default, "only_a": 2, "only_b": 1, "both": 1, "p": 1.0}
    assert second["errors"] == {tuned: 1, default: 3, "all averaged": 1}
    assert result["rows"] == 2 * ROWS
    assert result["errors"] == {tuned: 4, default: 5, "all averaged": 2}
    summed = next(p for p in result["pairs"] if p["b"] == default and p["a"] == tuned)
    assert (summed["only_a"], summed["only_b"], summed["both"]) == (2, 3, 2)
    assert summed["p"] == round(binomtest(2, 5, 0.5).pvalue, 4)
    low, high = result["accuracy_ci95"]["all averaged"]
    assert low < 18 / 20 < high


def test_every_member_of_a_folder_counts_and_the_split_seed_comes_from_its_record(tmp_path, predicted):
    table, calls = predicted
    folder = tmp_path / "top2"
    for k, rows in enumerate([{0, 1}, {1, 2}]):
        member(folder, k, 3)
        table[str(folder / "accuracy-model" / f"member-{k}" / "model.keras")] = probabilities(rows)
    result = measure(tmp_path, [parse_run(str(folder))], [])
    assert calls[0][1] == 3 and len(calls[0][0]) == 2
    assert result["split_seeds"] == [3] and result["errors"] == {str(folder): 1}  # row 1: both wrong
    assert result["pairs"] == []


def test_models_from_another_hold_out_or_missing_are_refused_in_one_line(tmp_path, predicted):
    folder = tmp_path / "run"
    member(folder, 0, 2)
    with pytest.raises(SystemExit, match=r"accuracy-member-0\.json: command: trained on split seed 2, compared on 1$"):
        measure(tmp_path, [parse_run(str(folder))], [1])
    with pytest.raises(SystemExit, match=r"run: no member 1 \(accuracy-member-1\.json\)$"):
        measure(tmp_path, [parse_run(f"{folder}:1")], [2])
    (folder / "accuracy-model" / "member-0" / "model.keras").unlink()
    with pytest.raises(SystemExit, match=r"member-0/model\.keras: missing"):
        measure(tmp_path, [parse_run(str(folder))], [2])
    with pytest.raises(SystemExit, match=r"empty: no accuracy-member-K\.json"):
        measure(tmp_path, [parse_run(str(tmp_path / "empty"))], [2])
    with pytest.raises(SystemExit, match=r"\{split\} in a folder needs --compare-split-seeds"):
        measure(tmp_path, [parse_run(str(tmp_path / "x{split}"))], [])


def test_compare_runs_only_when_named_and_needs_runs():
    args = build_parser().parse_args([])
    assert "compare" not in args.only and "accuracy" in args.only
    with pytest.raises(SystemExit, match=r"--only compare: needs --compare-runs"):
        compare.check(build_parser().parse_args(["--only", "compare"]))
    compare.check(build_parser().parse_args(["--only", "compare", "--compare-runs", "a", "b:0,1"]))
    assert parse_run("b:0,1").members == (0, 1) and parse_run("b").members is None
