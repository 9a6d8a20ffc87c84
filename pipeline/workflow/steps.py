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
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import UserError
from pipeline.katib.budget import resource_override_refusal, with_budget
from pipeline.katib.experiment import Experiment

BACKENDS = ("katib", "optuna")
ERROR_PREFIX = "katib-digits: error: "
DATA_MOUNT = "/data"  # where the data volume is mounted in prepare and, in the shipped Experiments, in every trial
DATA_PVC = "digit-recognizer-data"  # deploy/data-pvc.yaml
# Where the export step adds each run's SavedModel as the next version, on the data volume: KServe's
# storageUri pvc://digit-recognizer-data/models/digits (deploy/kserve/).
EXPORT_DIR = f"{DATA_MOUNT}/models/digits"
REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The file an Experiment sent with a run came from, so the step's messages can name it.
SOURCE_ANNOTATION = "katib-digits/source"


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
    return {
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "files": {k: p.name for k, p in copied.items()},
        "sources": {"train": str(train), "test": str(test)},
        "sha256": {"train": _sha256(train), "test": _sha256(test)},
    }


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        exp = lint.load(path_or_text)
    except UserError as exc:  # a step's log ends in one line: the first problem, and where to see the rest
        first, *more = str(exc).splitlines()
        where = path_or_text if "\n" not in path_or_text else "FILE"
        raise UserError(first + (f" (and {len(more)} more: katib-digits lint {where})" if more else "")) from None
    sent_from = ((exp.raw.get("metadata") or {}).get("annotations") or {}).get(SOURCE_ANNOTATION)
    return Experiment(exp.raw, sent_from) if sent_from and exp.source == "<experiment text>" else exp


def trial_budget_args(trial_max_rows: int = 0, trial_epochs: int = 0) -> list[str]:
    """Trial flags appended after the template's own (argparse: the last one wins)."""
    return ([f"--max-rows={trial_max_rows}"] if trial_max_rows else []) + (
        [f"--epochs={trial_epochs}"] if trial_epochs else []
    )


BUDGET_FLAG_ORIGINS = {"--max-rows": "trial_max_rows (--trial-max-rows)", "--epochs": "trial_epochs (--trial-epochs)"}


def refuse_resource_overrides(experiment: Experiment, trial_max_rows: int = 0, trial_epochs: int = 0) -> None:
    """UserError (one line: the file and field) when a budget flag would override the resource the
    Experiment's algorithm gives each trial (hyperband's and asha's epochs); other algorithms take it."""
    for arg in trial_budget_args(trial_max_rows, trial_epochs):
        problem = resource_override_refusal(experiment, arg, BUDGET_FLAG_ORIGINS[arg.split("=", 1)[0]])
        if problem:
            raise UserError(problem)


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


def smoke_copy(
    experiment: Experiment,
    namespace: str,
    max_trials: int,
    rows: int,
    epochs: int,
    requests: dict[str, str] | None = None,
) -> Experiment:
    """A small-budget copy to try an Experiment on a cluster (the Katib box's tier, scripts/e2e-kind.sh):
    maxTrialCount by the budget rule, the budget flags appended as the pipeline appends them (no `--epochs`
    where the algorithm's resource parameter sets it), the primary container's `requests` lowered so several
    trials fit one small node, in `namespace`; everything else is the Experiment's own."""
    from pipeline.katib.budget import resource_flags

    small = with_budget(experiment, max_trial_count=max_trials).experiment
    resource_set = "--epochs" in resource_flags(small)
    small = append_trial_args(small, trial_budget_args(rows, 0 if resource_set else epochs))
    small.raw["metadata"]["namespace"] = namespace
    if requests:
        small.primary_container().setdefault("resources", {})["requests"] = dict(requests)
    return small


def trial_data(experiment: Experiment) -> tuple[str, str | None, str]:
    """Where the trials read their training data: (the `--data` path in the rendered command, the
    PersistentVolumeClaim that path is on or None for the image's own files, the path inside it)."""
    from pipeline.submission.retrain import best_trial_flags
    from trial.cli import build_parser

    # Any assignment renders the same --data; the lower bounds are as good as any.
    samples = {
        p.name: p.choices[0] if p.choices else int(p.low) if p.type == "int" else p.low for p in experiment.parameters
    }
    data = str(build_parser().parse_known_args(best_trial_flags(experiment, samples))[0].data)
    container = experiment.primary_container()
    pod = ((experiment.trial_spec.get("spec") or {}).get("template") or {}).get("spec") or {}
    claims = {v.get("name"): (v.get("persistentVolumeClaim") or {}).get("claimName") for v in pod.get("volumes") or []}
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: -len(m.get("mountPath", "")))
    for mount in mounts:
        root = mount.get("mountPath", "").rstrip("/")
        if data == root or data.startswith(root + "/"):
            inside = str(Path(mount.get("subPath") or "") / Path(data).relative_to(root or "/"))
            return data, claims.get(mount.get("name")), inside
    return data, None, data


def for_cluster(
    experiment: Experiment, trial_image: str = "", data_pvc: str = "", image_pull_secrets: list[str] | None = None
) -> Experiment:
    """The Experiment the tune step creates: the trials run `trial_image` and read the claim
    `data_pvc` (each "" keeps the YAML's), with `image_pull_secrets` added to the trial pod."""
    changed = Experiment(copy.deepcopy(experiment.raw), experiment.source)
    container = changed.primary_container()
    if trial_image:
        container["image"] = trial_image
    pod = changed.trial_spec["spec"]["template"]["spec"]
    if data_pvc:
        _, claim, _ = trial_data(experiment)
        if claim is not None:
            for volume in pod.get("volumes") or []:
                if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                    volume["persistentVolumeClaim"]["claimName"] = data_pvc
    for name in image_pull_secrets or []:
        secrets = pod.setdefault("imagePullSecrets", [])
        if {"name": name} not in secrets:
            secrets.append({"name": name})
    return changed


def require_same_data(
    experiment: Experiment,
    data_pvc: str,
    data_dir: str,
    train_file: str,
    *,
    experiment_namespace: str,
    data_namespace: str,
) -> None:
    """Refuse to tune when the trials would read other data than the retrain: the retrain reads
    `data_dir/train_file` from the claim `data_pvc` in `data_namespace`, mounted at DATA_MOUNT (the
    prepare step, in the run's namespace). A pod mounts a claim by name in its own namespace, so the
    trials read theirs in `experiment_namespace`: a claim is its namespace and its name."""
    path, claim, inside = trial_data(experiment)
    where = f"{data_dir.rstrip('/')}/{train_file}"
    if not (where == DATA_MOUNT or where.startswith(DATA_MOUNT + "/")):
        raise UserError(
            f"data_dir {data_dir!r}: on a cluster the data is read from the volume {data_pvc!r} "
            f"mounted at {DATA_MOUNT}; pass a folder under {DATA_MOUNT}"
        )
    expected = str(Path(where).relative_to(DATA_MOUNT))
    if claim == data_pvc and Path(inside) == Path(expected) and experiment_namespace == data_namespace:
        return
    source = f"claim {experiment_namespace}/{claim}, {inside}" if claim else "the image's own files"
    fix = (
        f"run the Experiment in the run's namespace (namespace {data_namespace!r}, or empty) and keep the claim there"
        if claim == data_pvc and Path(inside) == Path(expected)
        else "make the trial template's --data and volume match data_dir and data_pvc"
    )
    raise UserError(
        f"{experiment.source}: the trials read {path} ({source}) but the retrain would read {where} "
        f"(claim {data_namespace}/{data_pvc}, {expected}): tuning on other data than the submission is "
        f"trained on; {fix}"
    )


def tune(
    experiment: Experiment,
    backend: str,
    out_dir: str | Path,
    train_file: str | Path | None = None,
    max_trial_count: int = 0,
    parallel_trial_count: int = 0,
    trial_max_rows: int = 0,
    trial_epochs: int = 0,
    namespace: str = "",
    timeout_s: int = 3600,
    delete_after: bool = False,
    progress: bool = True,
    cluster: dict[str, Any] | None = None,
    state_dir: str | Path = "",
    data_sha256: str = "",
) -> dict[str, Any]:
    """Run the Experiment on `backend` and return the final Experiment object (Katib's JSON shape).
    Budget counts of 0 keep the Experiment's own (the one budget rule: pipeline.katib.budget).

    optuna: our local dry-run in `out_dir`; its trials read `train_file` (the prepared data). With
    `state_dir` the dry-run runs in a folder kept there instead, keyed by the Experiment's spec, the
    budget flags and the training data's sha256 (`data_sha256`, else read from `train_file`), and
    `out_dir` becomes a link to it: the same tune run again resumes (finished trials kept), a tune
    with other inputs gets a folder of its own (`kept_tune_dir`).
    katib: creates the Experiment in `namespace` (empty: this pod's) with `cluster`'s trial_image,
    data_pvc and image_pull_secrets applied, after checking its trials read the data the retrain will
    (data_dir, train_file, and data_pvc in data_namespace, default this pod's: where prepare mounted
    it); `cluster["run_id"]` labels it, so a retried step finds it again.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    budgeted = with_budget(experiment, max_trial_count or None, parallel_trial_count or None)
    for note in budgeted.notes:
        print(f"tune: {note}", flush=True)
    experiment = budgeted.experiment
    refuse_resource_overrides(experiment, trial_max_rows, trial_epochs)
    budget = trial_budget_args(trial_max_rows, trial_epochs)
    if backend == "katib":
        from pipeline.cluster.katib_api import run_on_katib

        if not budgeted.katib_admissible:
            raise UserError(
                f"{experiment.source}: maxTrialCount {experiment.max_trial_count} is below "
                f"parallelTrialCount {experiment.parallel_trial_count}, which Katib rejects; "
                f"raise max_trial_count to at least {experiment.parallel_trial_count}"
            )
        cluster = cluster or {}
        namespace = namespace or current_namespace()
        experiment = for_cluster(
            experiment, cluster.get("trial_image", ""), cluster.get("data_pvc", ""), cluster.get("image_pull_secrets")
        )
        if cluster.get("data_pvc"):
            data_namespace = cluster.get("data_namespace") or current_namespace()
            require_same_data(
                experiment,
                cluster["data_pvc"],
                cluster.get("data_dir", DATA_MOUNT),
                Path(str(train_file)).name if train_file else "train.csv.gz",
                experiment_namespace=namespace,
                data_namespace=data_namespace,
            )
            print(f"tune: the trials read claim {namespace}/{cluster['data_pvc']}, the one prepare read", flush=True)
        owner = step_pod_owner(namespace)
        if owner:
            print(
                f"tune: the Experiment is owned by this step's pod {owner['name']}: it is deleted with the "
                "run's Workflow, even if the exit handler never runs",
                flush=True,
            )
        return run_on_katib(
            append_trial_args(experiment, budget).raw,
            namespace,
            timeout_s,
            delete_after,
            run_id=cluster.get("run_id") or None,
            owner=owner,
        )
    from pipeline.local.controller import run_experiment

    trial_args = ([f"--data={train_file}"] if train_file else []) + budget
    # The data volume stands for the prepared file's folder, so the dry-run does not warn that /data is unmapped
    # (the appended --data, the last flag, is what the trial reads either way).
    mounts = {DATA_MOUNT: str(Path(train_file).parent)} if train_file else {}
    run_dir, hint = Path(out_dir), ""
    if state_dir:
        if not data_sha256 and train_file:
            data_sha256 = _sha256(Path(train_file))
        key = tune_key(experiment, budget, data_sha256)
        run_dir = kept_tune_dir(state_dir, key)
        print(f"tune: {kept_tune_note(run_dir, key)}", file=sys.stderr, flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / TUNE_KEY).exists():
            write_json(run_dir / TUNE_KEY, key)
        link_dir(Path(out_dir), run_dir)
        hint = f"; it is kept in {run_dir}, so a rerun ends the same: pipeline run --local --fresh starts it over"
    final = run_experiment(experiment, run_dir, mounts=mounts, trial_args=tuple(trial_args), progress=progress)
    require_succeeded(final, f"see the trial logs in {run_dir / 'trials'}{hint}")
    return final


# A kept local tune's folder holds what it was run with; its name ends in that record's hash.
TUNE_KEY = "tune-key.json"
TUNE_KEY_FIELDS = {
    "spec": "Experiment spec (or trial counts)",
    "trial_args": "trial budget flags",
    "train_sha256": "training data",
}


def tune_key(experiment: Experiment, budget_args: list[str], data_sha256: str) -> dict[str, Any]:
    """What a kept local tune must share with this one to be resumed: the Experiment's spec after the
    budget rule, the trial flags appended for budget, and the training data's content (not its path:
    each pipeline run prepares its own copy)."""
    return {
        "experiment": experiment.name,
        "spec": experiment.spec,
        "trial_args": list(budget_args),
        "train_sha256": data_sha256,
    }


def kept_tune_dir(state_dir: str | Path, key: dict[str, Any]) -> Path:
    """STATE_DIR/<experiment>-<12 hex digits of the key's hash>."""
    import hashlib

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(state_dir) / f"{key['experiment']}-{digest}"


def kept_tune_note(folder: Path, key: dict[str, Any]) -> str:
    """One line on what a tune in `folder` is about to do: resume, find it ended, or start (and why the
    kept tunes of the same Experiment with other inputs are not resumed)."""
    if (folder / "study.db").exists():
        status = _read_json(folder / "experiment.json").get("status") or {}
        kept = status.get("trials", 0) - status.get("trialsRunning", 0) - status.get("trialsPending", 0)
        last = (status.get("conditions") or [{}])[-1]
        if last.get("type") in ("Succeeded", "Failed") and last.get("status") == "True":
            return f"the tune in {folder} already ended ({last.get('reason', '')}): {kept} trials, none rerun"
        return f"resuming the tune in {folder}: {kept} trials kept, interrupted ones run again"
    others = sorted(
        (
            p
            for p in folder.parent.glob("*/" + TUNE_KEY)
            if p.parent != folder and _read_json(p).get("experiment") == key["experiment"]
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not others:
        return f"a new tune in {folder}"
    newest = _read_json(others[-1])
    differ = [label for field, label in TUNE_KEY_FIELDS.items() if newest.get(field) != key[field]]
    return (
        f"a new tune in {folder}; {len(others)} kept tune(s) of {key['experiment']} with other inputs are "
        f"not resumed (the newest, {others[-1].parent.name}, differs in its {' and '.join(differ) or 'key'})"
    )


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} when it is missing or unreadable (a note must not stop the tune)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def link_dir(link: Path, target: Path) -> None:
    """`link` made a link to `target`, relative: it holds wherever the pipeline root is seen from."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)


def stop_experiments(backend: str, namespace: str, run_id: str) -> list[str]:
    """The exit handler's work: on Katib, delete this run's Experiments that have not ended. Never
    fails the run on its own: a cleanup that cannot reach the API says so and exits 0."""
    if backend != "katib" or not run_id:
        print("cleanup: nothing to stop (no Katib Experiment in this run)")
        return []
    from pipeline.cluster.katib_api import KatibError, stop_run

    try:
        stopped = stop_run(namespace or current_namespace(), run_id)
    except KatibError as exc:
        print(f"cleanup: could not check this run's Experiments: {exc}", flush=True)
        return []
    if not stopped:
        print("cleanup: no Experiment of this run is still running")
    return stopped


def require_succeeded(final: dict[str, Any], hint: str = "") -> None:
    """Fail loudly, like the Katib backend, when the Experiment ended Failed."""
    conditions = (final.get("status") or {}).get("conditions") or []
    failed = [c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"]
    if failed:
        name = (final.get("metadata") or {}).get("name", "experiment")
        raise UserError(
            f"Experiment {name} Failed ({failed[-1].get('reason', '')}): "
            f"{failed[-1].get('message', '')}" + (f"; {hint}" if hint else "")
        )


def step_pod_owner(
    experiment_namespace: str, environ: dict[str, str] | None = None, pod_namespace: str | None = None
) -> dict[str, str] | None:
    """The ownerReference that ties the Experiment to this step's pod (KFP's executor sets KFP_POD_NAME
    and KFP_POD_UID from the downward API), so it goes with the run's Workflow when that is deleted
    (by hand, with the run, or by KFP's garbage collection of finished runs). None outside a KFP pod
    and across namespaces: an owner in another namespace counts as absent, and the garbage collector
    would delete the Experiment at once."""
    env = os.environ if environ is None else environ
    name, uid = env.get("KFP_POD_NAME"), env.get("KFP_POD_UID")
    if not name or not uid or (pod_namespace or current_namespace()) != experiment_namespace:
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


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


# --- export ----------------------------------------------------------------------


def next_version(model_dir: str | Path) -> int:
    """One more than the highest numbered version in a TF Serving model folder (1 for a new folder)."""
    model_dir = Path(model_dir)
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def export_model(model_dir: str | Path, out_dir: str | Path, publish_dir: str | Path = "") -> dict[str, Any]:
    """The retrained model as a SavedModel in `out_dir/1/` (the step's artifact) and, when `publish_dir` is
    set (the data volume on a cluster), copied there as its next version. The copy lands under a name
    TF Serving ignores and is then renamed, so a server watching the folder never sees half a model."""
    from pipeline.serving.export import SIGNATURE, export_saved_model

    saved = export_saved_model(model_dir, out_dir)
    info: dict[str, Any] = {"saved_model": str(saved), "signature": SIGNATURE, "published": "", "version": 1}
    if publish_dir:
        publish_dir = Path(publish_dir)
        try:
            publish_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{publish_dir}: cannot create the model folder ({exc.strerror}); is the data volume "
                "mounted read-write?"
            ) from None
        version = next_version(publish_dir)
        staging = publish_dir / f".incoming-{version}-{os.getpid()}"
        shutil.copytree(saved, staging)
        target = publish_dir / str(version)
        try:
            staging.rename(target)  # atomic; fails if another run took this version meanwhile
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise UserError(f"{target}: exists (another run exported at the same time); run the step again") from None
        info.update(published=str(target), version=version)
    return info


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
