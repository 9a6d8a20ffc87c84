"""The shipped Experiments: they lint clean, share one trial template and one
search space (except where the algorithm needs otherwise), and the command
Katib renders from each parses with the trial's own argument parser."""

from __future__ import annotations

import copy
import itertools
import math

import pytest

from pipeline.katib.algorithms import grid_points, hyperband_min_parallel
from pipeline.katib.experiment import Experiment, load_experiment
from pipeline.katib.render import trial_argv
from pipeline.lint import lint_experiment
from tests.conftest import REPO
from trial.cli import build_parser

EXPERIMENTS = REPO / "experiments"
ALGORITHMS = {
    "random": "random",
    "tpe": "tpe",
    "multivariate-tpe": "multivariate-tpe",
    "cmaes": "cmaes",
    "bayesianoptimization": "bayesianoptimization",
    "grid": "grid",
    "sobol": "sobol",
    "hyperband": "hyperband",
    "random-medianstop": "random",
    "asha": "asha",
    "asha-full": "asha",
}
RESOURCE_IN_SPACE = ("hyperband", "asha", "asha-full")  # epochs is a parameter: the resource the algorithm allocates
ASHA_FILES = ("asha", "asha-full")  # a rung's result is the objective after the rung's epochs; checkpoints on a claim
# The full-scale search (issue 33) is asha.yaml at the retrain's length on one thread per trial: its own space and
# budget, checked against asha.yaml by the tests at the end of this file rather than against random.yaml's.
FULL_SCALE = ("asha-full",)
SHARED = [stem for stem in sorted(ALGORITHMS) if stem not in FULL_SCALE]
FILES = sorted(ALGORITHMS)


def load(stem):
    return load_experiment(EXPERIMENTS / f"{stem}.yaml")


def test_one_file_per_algorithm_and_the_full_scale_search_and_nothing_else():
    assert sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")) == FILES
    readme = (EXPERIMENTS / "README.md").read_text()
    for stem in FILES:
        assert f"`{stem}.yaml`" in readme


@pytest.mark.parametrize("stem", FILES)
def test_lints_without_errors_or_warnings(stem):
    problems = lint_experiment(load(stem), stem)
    assert [p for p in problems if p.severity != "note"] == []


@pytest.mark.parametrize("stem", FILES)
def test_algorithm_name_and_objective(stem):
    exp = load(stem)
    spec = exp["spec"]
    assert exp["metadata"]["name"] == f"digits-{stem}"
    assert spec["algorithm"]["algorithmName"] == ALGORITHMS[stem]
    own: tuple[str, ...] = ("metricStrategies",) if stem in ASHA_FILES else ()
    own += ("goal",) if stem in FULL_SCALE else ()  # a search this long ends at maxTrialCount
    objective = {k: v for k, v in spec["objective"].items() if k not in own}
    assert objective == {k: v for k, v in load("random")["spec"]["objective"].items() if k not in own}
    assert ("goal" in spec["objective"]) == (stem not in FULL_SCALE)
    if stem in ASHA_FILES:  # a rung's result is the objective after the rung's epochs (docs/asha.md)
        assert spec["objective"]["metricStrategies"] == [{"name": "val_accuracy", "value": "latest"}]
    assert spec["objective"]["type"] == "maximize" and spec["objective"]["objectiveMetricName"] == "val_accuracy"
    assert spec["objective"]["additionalMetricNames"] == ["loss", "accuracy", "val_loss"]
    assert ("earlyStopping" in spec) == (stem == "random-medianstop")
    assert spec["resumePolicy"] == "Never" and spec["maxFailedTrialCount"] == 3


def _template_without_epochs(exp):
    """The trial template without the epochs parameter, and without asha's checkpoint volume and the
    security context that makes it writable."""
    template = copy.deepcopy(exp["spec"]["trialTemplate"])
    template["trialParameters"] = [tp for tp in template["trialParameters"] if tp["name"] != "epochs"]
    pod = template["trialSpec"]["spec"]["template"]["spec"]
    pod.pop("securityContext", None)
    command = pod["containers"][0]["command"]
    command[:] = [w for w in command if not w.startswith(("--epochs=", "--checkpoint-dir="))]
    pod["containers"][0]["volumeMounts"] = [
        m for m in pod["containers"][0]["volumeMounts"] if m["name"] != "checkpoints"
    ]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "checkpoints"]
    return template


@pytest.mark.parametrize("stem", SHARED)
def test_shared_trial_template(stem):
    """Every file has random.yaml's trial template; hyperband and asha swap --epochs=8 for their resource,
    asha adds its checkpoint volume."""
    exp, base = load(stem), load("random")
    assert exp["spec"]["metricsCollectorSpec"] == base["spec"]["metricsCollectorSpec"]
    assert _template_without_epochs(exp) == _template_without_epochs(base)
    command = exp["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    epochs = "--epochs=${trialParameters.epochs}" if stem in RESOURCE_IN_SPACE else "--epochs=8"
    assert epochs in command


@pytest.mark.parametrize("stem", SHARED)
def test_shared_search_space(stem):
    """Same parameters everywhere; grid narrows the spaces (same names and order), hyperband and asha add epochs."""
    params, base = load(stem)["spec"]["parameters"], load("random")["spec"]["parameters"]
    if stem in RESOURCE_IN_SPACE:
        assert params[:-1] == base and params[-1]["name"] == "epochs"
    elif stem == "grid":
        assert [p["name"] for p in params] == [p["name"] for p in base]
    else:
        assert params == base


def test_trial_template_reads_the_pvc_with_resources():
    template = load("random")["spec"]["trialTemplate"]
    pod = template["trialSpec"]["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert template["primaryContainerName"] == main["name"]
    assert main["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "digit-recognizer-data"
    assert "--data=/data/train.csv.gz" in main["command"]
    assert set(main["resources"]) == {"requests", "limits"}
    assert main["command"][:3] == ["python", "-m", "trial"]


def test_grid_is_small_and_exhaustive():
    spec = load("grid")["spec"]
    points = grid_points(Experiment(load("grid")).parameters)
    assert math.prod(len(v) for v in points.values()) == spec["maxTrialCount"] == 24


def test_hyperband_parallelism_and_resource():
    spec = load("hyperband")["spec"]
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    assert settings["resource_name"] == "epochs"
    assert spec["parallelTrialCount"] >= hyperband_min_parallel(float(settings["r_l"]), int(settings["eta"]))


@pytest.mark.parametrize("stem", ASHA_FILES)
def test_asha_rungs_fit_the_epochs_parameter_and_checkpoints_are_writable(stem):
    """min_resource..max_resource is the epochs parameter's range, and --checkpoint-dir lies on the
    checkpoint claim (read-write), not on the read-only data volume: promoted trials resume from it."""
    spec = load(stem)["spec"]
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    (epochs,) = [p for p in spec["parameters"] if p["name"] == settings["resource_name"]]
    assert (epochs["feasibleSpace"]["min"], epochs["feasibleSpace"]["max"]) == (
        settings["min_resource"],
        settings["max_resource"],
    )
    pod = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    (flag,) = [w for w in main["command"] if w.startswith("--checkpoint-dir=")]
    (mount,) = [m for m in main["volumeMounts"] if flag.split("=", 1)[1].startswith(m["mountPath"] + "/")]
    assert not mount.get("readOnly")
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in (REPO / "deploy" / "asha-checkpoints-pvc.yaml").read_text()


def _deploy_pod_specs():
    import yaml

    specs = []
    for path in sorted((REPO / "deploy").glob("data-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("Job", "Pod"):
                specs.append(doc["spec"]["template"]["spec"] if doc["kind"] == "Job" else doc["spec"])
    return specs


@pytest.mark.parametrize("stem", FILES)
def test_trials_that_write_to_a_volume_run_with_the_data_jobs_security_context(stem):
    """A volume the trial writes to (asha's checkpoints) is root-owned 0755 on most block-storage CSI
    drivers and Katib leaves it alone: without fsGroup the image's UID 1000 cannot write there, every
    trial exits 2 and the Experiment fails at maxFailedTrialCount."""
    (context,) = {tuple(sorted(spec["securityContext"].items())) for spec in _deploy_pod_specs()}
    assert dict(context)["fsGroup"] == dict(context)["runAsUser"] == 1000
    pod = load(stem)["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    writable = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", []) if not m.get("readOnly")}
    writes_a_claim = any("persistentVolumeClaim" in v for v in pod.get("volumes", []) if v["name"] in writable)
    assert writes_a_claim == (stem in ASHA_FILES)
    if writes_a_claim:
        assert pod["securityContext"] == dict(context)


# --- the rendered command parses with the trial's parser ------------------------------------------


def _samples(exp):
    """A few assignments per file: each bound, a log-scale middle, and a tiny value that
    Python would print with an exponent (1e-05) where a double allows it."""
    if exp["spec"]["algorithm"]["algorithmName"] == "grid":
        points = grid_points(Experiment(exp).parameters)
        return [
            dict(zip(points, combo, strict=True))
            for combo in itertools.islice(itertools.product(*points.values()), 0, None, 5)
        ]
    out = []
    for pick in ("min", "max", "mid"):
        values = {}
        for p in exp["spec"]["parameters"]:
            space = p["feasibleSpace"]
            if p["parameterType"] in ("categorical", "discrete"):
                values[p["name"]] = space["list"][0 if pick == "min" else -1]
                continue
            low, high = float(space["min"]), float(space["max"])
            value = {"min": low, "max": high, "mid": math.sqrt(low * high)}[pick]
            values[p["name"]] = int(round(value)) if p["parameterType"] == "int" else value
        out.append(values)
    out.append({**out[0], "learning-rate": 1e-05})  # str() gives '1e-05'; goptuna gives '0.00001'
    return out


@pytest.mark.parametrize("stem", FILES)
def test_rendered_command_parses_with_the_trial_parser(stem):
    exp = load(stem)
    parser = build_parser()
    for values in _samples(exp):
        argv = trial_argv(Experiment(exp), values, trial_name=f"digits-{stem}-abcdefgh")  # the service's style
        assert argv[1:3] == ["-m", "trial"], argv
        args = parser.parse_args(argv[3:])
        assert str(args.data) == "/data/train.csv.gz"
        assert args.learning_rate == pytest.approx(float(values["learning-rate"]))
        assert args.optimizer == values["optimizer"]
        assert args.batch_size == int(values["batch-size"])
        assert args.conv_filters == int(values["conv-filters"])
        assert args.dense_units == int(values["dense-units"])
        assert args.dropout == pytest.approx(float(values["dropout"]))
        assert args.augment == pytest.approx(float(values["augment"]))
        assert args.lr_decay == pytest.approx(float(values["lr-decay"]))
        assert args.epochs == (values["epochs"] if stem in RESOURCE_IN_SPACE else 8)


def test_goptuna_renders_without_exponent():
    exp = load("sobol")
    values = _samples(exp)[-1]
    argv = trial_argv(Experiment(exp), values)
    assert "--learning-rate=0.00001" in argv
    assert "--learning-rate=1e-05" in trial_argv(Experiment(load("tpe")), values)


# --- the full-scale search (issue 33) ----------------------------------------------------------------


def _without_full_scale_words(exp):
    """asha-full's trial template less what makes it full scale: the fixed hold-out, one thread, its
    own checkpoint folder and the one-CPU resources."""
    template = copy.deepcopy(exp["spec"]["trialTemplate"])
    main = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    main["command"] = [w for w in main["command"] if not w.startswith(("--split-seed=", "--threads=", "--checkpoint-"))]
    main.pop("resources")
    for tp in template["trialParameters"]:
        tp.pop("description")
    return template


def test_full_scale_is_ashas_template_on_one_thread_with_a_fixed_hold_out():
    full, asha = load("asha-full"), load("asha")
    assert _without_full_scale_words(full) == _without_full_scale_words(asha)
    main = full["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(trial_argv(Experiment(full), _samples(full)[0])[3:])
    assert args.split_seed == 0, "every trial must be judged on the same hold-out"
    # --threads equals the pod's CPU limit, so the dry-run packs trials as Katib's scheduler does
    assert args.threads == float(main["resources"]["limits"]["cpu"]) == float(main["resources"]["requests"]["cpu"])
    assert str(args.checkpoint_dir) == "/checkpoints/digits-asha-full"


def test_full_scale_rungs_end_at_the_retrains_length():
    from pipeline.katib.algorithms import asha_plan
    from trial.config import TrialConfig

    exp = load("asha-full")
    settings = {s["name"]: s["value"] for s in exp["spec"]["algorithm"]["algorithmSettings"]}
    plan = asha_plan(settings, Experiment(exp).parameters, exp["metadata"]["name"])
    assert plan.rungs == (3, 9, 27)
    assert plan.rungs[-1] == TrialConfig().epochs  # the top rung trains as long as the retrain


def test_full_scale_space_is_ashas_narrowed():
    """The same knobs as asha.yaml, each range inside asha's (a narrowing from the hold-out experiments)."""
    full = {p["name"]: p for p in load("asha-full")["spec"]["parameters"]}
    asha = {p["name"]: p for p in load("asha")["spec"]["parameters"]}
    assert list(full) == list(asha)
    for name, p in full.items():
        space, wide = p["feasibleSpace"], asha[name]["feasibleSpace"]
        assert p["parameterType"] == asha[name]["parameterType"], name
        if "list" in space:
            assert set(space["list"]) <= set(wide["list"]), name
        elif name != "epochs":
            assert float(wide["min"]) <= float(space["min"]) < float(space["max"]) <= float(wide["max"]), name
