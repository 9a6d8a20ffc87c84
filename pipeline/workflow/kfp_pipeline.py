"""The KFP v2 pipeline: prepare -> tune -> gate -> retrain -> predict.

`build_pipeline(image)` returns the @dsl.pipeline; `compile_pipeline` writes the
IR YAML for upload; `run_local` runs it with kfp.local (tuning with Optuna);
`submit` sends it to a KFP server (tuning with Katib). The command line is
`pipeline.cli.pipeline` (`katib-digits pipeline`).
"""

import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator


from pipeline.errors import UserError
from pipeline.submission.retrain import RETRAIN_ENSEMBLE, RETRAIN_EPOCHS
from pipeline.workflow.steps import ERROR_PREFIX, REPO, in_project

PIPELINE_NAME = "katib-digits"
DEFAULT_IMAGE = "katib-digits:0.1.0"  # what the Dockerfile's build comment tags and experiments/*.yaml run
DEFAULT_EXPERIMENT = "experiments/random.yaml"


@dataclass(frozen=True)
class Budget:
    """How much work a run does. 0 keeps the Experiment's own value (or the trial's / retrain's default)."""

    max_trial_count: int = 0
    parallel_trial_count: int = 0
    trial_max_rows: int = 0
    trial_epochs: int = 0
    retrain_epochs: int = RETRAIN_EPOCHS
    retrain_val_fraction: float = 0.0
    retrain_ensemble: int = RETRAIN_ENSEMBLE
    threshold: float = 0.0


# `pipeline run --local` on a 2-core laptop: 3 one-epoch trials on 300 rows, then a 3-epoch retrain
# on every labelled row. A user with the full data passes bigger flags.
LOCAL_BUDGET = Budget(max_trial_count=3, parallel_trial_count=1, trial_max_rows=300, trial_epochs=1,
                      retrain_epochs=3, retrain_ensemble=1)


def build_pipeline(image: str = DEFAULT_IMAGE):
    """The pipeline function, every step running in `image`."""
    from kfp import dsl

    from pipeline.workflow.components import make_components

    c = make_components(image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Tune the digit-recognizer CNN with one Katib Experiment, retrain the best "
                              "trial on all labelled rows and write submission.csv.")
    def digits_pipeline(
        data_dir: str = "data/sample",
        experiment: str = DEFAULT_EXPERIMENT,
        backend: str = "katib",
        max_trial_count: int = 0,
        parallel_trial_count: int = 0,
        trial_max_rows: int = 0,
        trial_epochs: int = 0,
        retrain_epochs: int = Budget.retrain_epochs,
        retrain_val_fraction: float = 0.0,
        retrain_ensemble: int = Budget.retrain_ensemble,
        threshold: float = 0.0,
        namespace: str = "",
        timeout_s: int = 6 * 3600,
        delete_after: bool = False,
    ):
        prepare = c.prepare(data_dir=data_dir).set_display_name("prepare data")
        tune = c.tune(
            experiment=experiment, backend=backend, train_data=prepare.outputs["train_data"],
            max_trial_count=max_trial_count, parallel_trial_count=parallel_trial_count,
            trial_max_rows=trial_max_rows, trial_epochs=trial_epochs, namespace=namespace,
            timeout_s=timeout_s, delete_after=delete_after,
        ).set_display_name("tune (Katib or Optuna)")
        tune.set_caching_options(False)  # a new Experiment per run, never a cached one
        gate = c.submit_gate(objective=tune.outputs["objective"], objective_type=tune.outputs["objective_type"],
                             threshold=threshold).set_display_name("objective reaches threshold?")
        # The condition reads the gate's single output: kfp.local (2.17) resolves `<task>.output`
        # in a dsl.If but not a named output of a multi-output task.
        with dsl.If(gate.output == True, name="objective-reached"):  # noqa: E712 - kfp builds a CEL expression
            retrain = c.retrain(tuned=tune.outputs["tuned"], train_data=prepare.outputs["train_data"],
                                epochs=retrain_epochs, val_fraction=retrain_val_fraction,
                                ensemble=retrain_ensemble)
            retrain.set_display_name("retrain best").set_cpu_request("2").set_memory_request("4G")
            c.predict(model=retrain.outputs["model"], test_data=prepare.outputs["test_data"]) \
                .set_display_name("predict submission.csv")

    return digits_pipeline


def pipeline_arguments(data_dir: str, experiment: str, backend: str, budget: Budget, namespace: str = "",
                       timeout_s: int = 6 * 3600, delete_after: bool = False) -> dict[str, Any]:
    """The pipeline's run arguments (same names as the pipeline function's parameters)."""
    if backend not in ("katib", "optuna"):
        raise UserError(f"backend: {backend!r} is not one of katib, optuna")
    return {"data_dir": data_dir, "experiment": experiment, "backend": backend, **asdict(budget),
            "namespace": namespace, "timeout_s": timeout_s, "delete_after": delete_after}


def compile_pipeline(out: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    """Write the IR YAML (PipelineSpec) that a KFP server accepts for upload."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), str(out))
    return out


# --- local run -------------------------------------------------------------------------------


class _Tee(io.TextIOBase):
    """Passes writes through, remembering the last `katib-digits: error:` line a step printed."""

    def __init__(self, target):
        self.target = target
        self.error: str | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if ERROR_PREFIX in line:
                self.error = line.split(ERROR_PREFIX, 1)[1].strip()
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def _step_environment() -> Iterator[None]:
    """kfp.local runs each step as `python -c ...` in a subprocess: make sure it imports this project."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter in every step
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_local(data_dir: str | Path, experiment_path: str | Path, out: str | Path,
              budget: Budget = LOCAL_BUDGET) -> dict[str, Any]:
    """Run the whole pipeline with kfp.local (Optuna tuning); copy submission.csv and summary.json to `out`.

    A step that fails on bad input raises UserError with the step's own one-line message.
    """
    from kfp import local

    from pipeline.workflow.steps import read_experiment

    data_dir, experiment_path = in_project(data_dir).resolve(), in_project(experiment_path)
    read_experiment(str(experiment_path))  # missing, not YAML or rejected by Katib: one line before any step
    out = Path(out).resolve()
    pipeline_root = out / "kfp-local"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    for stale in ("submission.csv", "summary.json", "experiment.json"):  # never mistake an old result for this run's
        (out / stale).unlink(missing_ok=True)
    before = set(pipeline_root.iterdir())
    # The step reads the file itself (same machine), so its messages name it.
    arguments = pipeline_arguments(str(data_dir), str(experiment_path), "optuna", budget)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=True)
    tee = _Tee(sys.stdout)
    started = time.perf_counter()
    with _step_environment(), warnings.catch_warnings(), contextlib.redirect_stdout(tee):
        # kfp.local warns that our image name lacks "python" and that display names/resources are
        # ignored locally: both expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            build_pipeline()(**arguments)
        except RuntimeError as exc:
            step = _failed_step(str(exc))
            if tee.error:
                raise UserError(f"pipeline step {step}: {tee.error}") from None
            raise RuntimeError(f"pipeline step {step} failed (its log is above)") from None
    runs = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RuntimeError(f"kfp.local wrote no run folder under {pipeline_root}")
    summary = collect_local_run(runs[-1], out, budget.threshold)
    summary.update(seconds=round(time.perf_counter() - started, 1), data_dir=str(data_dir),
                   experiment_file=str(experiment_path), budget=asdict(budget), summary=str(out / "summary.json"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _failed_step(message: str) -> str:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    m = re.search(r"Inner task failed: (.+?)\.?$", plain)
    return m.group(1).split(" inside ")[0].strip("'") if m else "?"


def collect_local_run(run_dir: Path, out: Path, threshold: float = 0.0) -> dict[str, Any]:
    """Gather the run's results from kfp.local's folders: copy submission.csv, read the tune and retrain outputs."""
    def find(pattern: str) -> Path | None:
        return next(iter(sorted(run_dir.glob(pattern))), None)

    final = json.loads(find("tune/tuned/experiment.json").read_text())
    from pipeline.workflow.steps import summarize_tuning

    tuning = summarize_tuning(final, threshold)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "tuning_dir": str(run_dir / "tune" / "tuned" / "dryrun"),
                               **tuning, "submitted": False}
    retrain_json = find("**/retrain/model/retrain.json")
    if retrain_json is not None:
        summary["retrain"] = json.loads(retrain_json.read_text())
    submission = find("**/predict/submission")
    if submission is not None:
        shutil.copyfile(submission, out / "submission.csv")
        summary["submitted"] = True
        summary["submission"] = str(out / "submission.csv")
    (out / "experiment.json").write_text(json.dumps(final, indent=2) + "\n")
    summary["experiment_json"] = str(out / "experiment.json")
    return summary


# --- KFP server ------------------------------------------------------------------------------


def submit(host: str, arguments: dict[str, Any], image: str, namespace: str | None = None,
           service_account: str | None = None, experiment_name: str = PIPELINE_NAME) -> str:
    """Compile and create a run on a KFP server; returns the run's URL."""
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "pipeline.yaml", image)
        client = kfp.Client(host=host, namespace=namespace)  # contacts the server right here
        run = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, experiment_name=experiment_name,
            namespace=namespace, service_account=service_account,
            run_name=f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        )
    return f"{host.rstrip('/')}/#/runs/details/{run.run_id}"


