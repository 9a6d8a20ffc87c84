"""bench.cli (`python -m bench`): --help teaches every section of the registry, --only runs the named ones in
the registry's order, the accuracy flags and the data are checked before any section runs, and the report
comes out as a table, then JSON. The sections here are stand-ins: their own tests train for real."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import pytest

from bench import cli, machine
from bench.sections import SECTIONS
from tests.conftest import REPO

FIGURES: dict[str, dict[str, Any]] = {
    "throughput": {"trial_images_per_s": 790.0, "bare_keras_images_per_s": 800.0, "ratio_trial_vs_bare": 0.988},
    "flops": {"matmul_gflops": 50.0},
}
FIGURES["serve"] = {
    "clients": 2,
    "batch": 1,
    "requests_per_s": 10.0,
    "wall_s": 1.0,
    "latency_ms": {"p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0},
    "statuses": {200: 10},
    "failures": {},
    "rss_mib": {"before": 1, "max_during": 2, "after": 2},
    "threads": {"before": 3, "max_during": 3, "after": 3},
}


@pytest.fixture
def ran(monkeypatch):
    """Every section replaced by one that records (its name, its flags, the report so far) and returns canned
    figures (throughput, flops and serve have some); no GPU look-up (that imports TensorFlow)."""
    calls = []

    def stand_in(name):
        def run(args, report):
            calls.append((name, args, dict(report)))
            return FIGURES[name]

        return run

    for name, section in list(SECTIONS.items()):
        monkeypatch.setitem(SECTIONS, name, dataclasses.replace(section, run=stand_in(name)))
    monkeypatch.setattr(machine, "accelerators", list)
    return calls


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.csv.gz").write_bytes(b"")
    return folder


def test_help_says_what_each_section_measures_and_lists_its_flags(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    words = " ".join(out.split())
    assert out.startswith("usage: python -m bench ")
    for name, section in SECTIONS.items():
        assert f" {name} {' '.join(section.about.split())} " in words  # wrapped, but whole
        if section.add_arguments:  # its own flags under its own heading
            heading = out.index(f"\n{name} section:\n")
            flags = out[heading:].split("\n\n")[0]
            assert f"--{name}-" in flags
    assert "--only {" + ",".join(SECTIONS) + "}" in out


def test_only_runs_the_named_sections_in_the_registrys_order(ran, data, tmp_path, capsys):
    assert (
        cli.main(
            [
                "--only",
                "flops",
                "serve",
                "throughput",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--json-out",
                str(tmp_path / "report.json"),
                "--serve-clients",
                "2",
            ]
        )
        == 0
    )
    assert [name for name, _, _ in ran] == ["throughput", "flops", "serve"]
    # flops is given the report so far, the throughput figures in it; each section gets every flag parsed
    assert ran[1][2]["throughput"] == FIGURES["throughput"]
    assert ran[2][1].serve_clients == 2 and ran[2][1].throughput_rows == 8000
    assert (tmp_path / "o").is_dir()
    out = capsys.readouterr().out
    table, json_text = out[: out.index("\n{\n") + 1], out[out.index("\n{\n") + 1 :]  # the JSON starts a line
    report = json.loads(json_text)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert list(report) == ["date", "machine", "python", "accelerators", "throughput", "flops", "serve"]
    assert table.splitlines()[0].endswith("cores, GPUs: none")
    assert "serve: 2 clients, 1 image(s) a request, V1" in table and "fp32 matmul GFLOP/s" in table


def test_serve_alone_needs_no_data_the_others_do(ran, tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    with pytest.raises(SystemExit, match=r"^benchmark: .*nothing-here/train\.csv\.gz: not found \(pass --data"):
        cli.main(["--only", "serve", "accuracy", "--data", str(missing), "--out", str(tmp_path / "o")])
    assert ran == [] and not (tmp_path / "o").exists()
    assert cli.main(["--only", "serve", "--data", str(missing), "--out", str(tmp_path / "o")]) == 0
    assert [name for name, _, _ in ran] == ["serve"]


def test_bad_accuracy_flags_stop_the_run_whichever_sections_it_names(ran, data, tmp_path):
    with pytest.raises(SystemExit, match="--seed is set by the accuracy section itself"):
        cli.main(["--only", "serve", "--data", str(data), "--out", str(tmp_path), "--accuracy-flags", "--seed 3"])
    assert ran == []


def test_an_unknown_section_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["--only", "speed"])
    assert refused.value.code == 2 and "invalid choice: 'speed'" in capsys.readouterr().err


@pytest.mark.process
def test_python_dash_m_bench_is_the_entry_from_the_repository_root():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Sections (all but compare by default):" in done.stdout and "--serve-clients" in done.stdout
