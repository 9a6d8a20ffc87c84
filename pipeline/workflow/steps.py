"""What each pipeline step does, as plain functions (tested on their own).

pipeline/components.py wraps each in a typed kfp component; the component
body only maps artifact paths to these arguments. Bad input raises UserError
(or trial.data.DataError) with a one-line message; `step_errors` turns it into
that one line on stdout plus exit 2, so a failed step's log ends with the
reason and `pipeline run --local` can repeat it.
"""
from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from pipeline.errors import UserError
from pipeline.katib.budget import with_budget
from pipeline.katib.experiment import Experiment

BACKENDS = ("katib", "optuna")
ERROR_PREFIX = "katib-digits: error: "
REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@contextlib.contextmanager
def step_errors() -> Iterator[None]:
    """Inside a component: a UserError/DataError ends the step with its one-line message, exit 2."""
    from trial.data import DataError

    try:
        yield
    except (UserError, DataError) as exc:
        print(ERROR_PREFIX + "; ".join(str(exc).splitlines()), flush=True)  # one line, whatever the source
        sys.exit(2)


# --- prepare -------------------------------------------------------------------


def in_project(path: str | Path) -> Path:
    """A relative path missing from the working directory is looked up in the project root
    (the image's `data/sample`, `experiments/`), so defaults work whatever the working directory."""
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        return REPO / path
    return path


resolve_data_dir = in_project


def prepare_data(data_dir: str | Path, train_out: str | Path, test_out: str | Path) -> dict[str, Any]:
    """Validate train.csv and test.csv as the trial does, then copy them (and
    sample_submission.csv, kept with the test file) into the output folders."""
    from pipeline.submission.datafiles import find_csv, find_sample_submission
    from trial.data import load_test, load_train

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: data folder not found (expected train.csv(.gz) and test.csv(.gz) in it)")
    train, test = find_csv(data_dir, "train"), find_csv(data_dir, "test")
    x_train, _ = load_train(train)
    x_test = load_test(test)
    sample = find_sample_submission(data_dir)
    copied = {"train": _copy_into(train, Path(train_out)), "test": _copy_into(test, Path(test_out))}
    if sample is not None:
        copied["sample_submission"] = _copy_into(sample, Path(test_out))
    return {"train_rows": len(x_train), "test_rows": len(x_test), "files": {k: p.name for k, p in copied.items()}}


def _copy_into(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(src, folder / src.name))


# --- tune ------------------------------------------------------------------------


def read_experiment(path_or_text: str) -> Experiment:
    """The Experiment from a path or YAML/JSON text, checked by the linter: one Katib would reject
    fails here with the linter's message. Relative paths are also tried against the project root,
    so `experiments/tpe.yaml` works from any working directory of the image."""
    from pipeline import lint

    if "\n" not in path_or_text and not path_or_text.lstrip().startswith(("apiVersion", "kind", "{")):
        path_or_text = str(in_project(path_or_text))
    try:
        return lint.load(path_or_text)
    except UserError as exc:  # a step's log ends in one line: the first problem, and where to see the rest
        first, *more = str(exc).splitlines()
        where = path_or_text if "\n" not in path_or_text else "FILE"
        raise UserError(first + (f" (and {len(more)} more: katib-digits lint {where})" if more else "")) from None


def trial_budget_args(trial_max_rows: int = 0, trial_epochs: int = 0) -> list[str]:
    """Trial flags appended after the template's own (argparse: the last one wins)."""
    return ([f"--max-rows={trial_max_rows}"] if trial_max_rows else []) + \
           ([f"--epochs={trial_epochs}"] if trial_epochs else [])


def append_trial_args(experiment: Experiment, args: list[str]) -> Experiment:
    """A copy whose primary container gets `args` appended (to `args` if it has them, else `command`).

    For Katib, where the trial command is all we can change."""
    if not args:
        return experiment
    changed = Experiment(copy.deepcopy(experiment.raw), experiment.source)
    container = changed.primary_container()
    key = "args" if container.get("args") else "command"
    container[key] = [*(container.get(key) or []), *args]
    return changed


def tune(experiment: Experiment, backend: str, out_dir: str | Path, train_file: str | Path | None = None,
         max_trial_count: int = 0, parallel_trial_count: int = 0, trial_max_rows: int = 0, trial_epochs: int = 0,
         namespace: str = "", timeout_s: int = 3600, delete_after: bool = False,
         progress: bool = True) -> dict[str, Any]:
    """Run the Experiment on `backend` and return the final Experiment object (Katib's JSON shape).
    Budget counts of 0 keep the Experiment's own (the one budget rule: pipeline.katib.budget).

    optuna: our local dry-run; its trials read `train_file` (the prepared data).
    katib: creates the Experiment in `namespace`; trials read the data the template names.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    budgeted = with_budget(experiment, max_trial_count or None, parallel_trial_count or None)
    for note in budgeted.notes:
        print(f"tune: {note}", flush=True)
    experiment = budgeted.experiment
    budget = trial_budget_args(trial_max_rows, trial_epochs)
    if backend == "katib":
        from pipeline.cluster.katib_api import run_on_katib

        if not budgeted.katib_admissible:
            raise UserError(f"{experiment.source}: maxTrialCount {experiment.max_trial_count} is below "
                            f"parallelTrialCount {experiment.parallel_trial_count}, which Katib rejects; "
                            f"raise max_trial_count to at least {experiment.parallel_trial_count}")
        return run_on_katib(append_trial_args(experiment, budget).raw, namespace or current_namespace(), timeout_s,
                            delete_after)
    from pipeline.local.controller import run_experiment

    trial_args = ([f"--data={train_file}"] if train_file else []) + budget
    final = run_experiment(experiment, Path(out_dir), mounts={}, trial_args=tuple(trial_args), progress=progress)
    require_succeeded(final, f"see the trial logs in {Path(out_dir) / 'trials'}")
    return final


def require_succeeded(final: dict[str, Any], hint: str = "") -> None:
    """Fail loudly, like the Katib backend, when the Experiment ended Failed."""
    conditions = (final.get("status") or {}).get("conditions") or []
    failed = [c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"]
    if failed:
        name = (final.get("metadata") or {}).get("name", "experiment")
        raise UserError(f"Experiment {name} Failed ({failed[-1].get('reason', '')}): "
                        f"{failed[-1].get('message', '')}" + (f"; {hint}" if hint else ""))


def current_namespace() -> str:
    """The pod's own namespace (where a KFP step runs, i.e. the user's profile), else `default`."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def summarize_tuning(final: dict[str, Any], threshold: float = 0.0) -> dict[str, Any]:
    """{best_trial, assignments, objective_metric, objective_type, objective, reached} of a tuned Experiment."""
    from pipeline.katib.result import objective_spec, objective_value, parse_result, reaches

    result = parse_result(final, source="tune result")
    name, kind, _ = objective_spec(final, "tune result")
    value = objective_value(result)
    return {
        "best_trial": result.optimal.name,
        "assignments": result.optimal.assignments,
        "objective_metric": name,
        "objective_type": kind,
        "objective": value,
        "threshold": threshold or None,
        # threshold 0 = no gate (a maximized accuracy always reaches 0; a minimized loss never could).
        "reached": reaches(value, threshold or None, kind),
    }


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
