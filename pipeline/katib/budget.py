"""One rule for changing an Experiment's trial budget, used by `tune
--max-trial-count`, the pipeline's budget parameters and `lint --run`.

- maxTrialCount: as given; maxFailedTrialCount is lowered to it (Katib's
  validator: maxFailedTrialCount <= maxTrialCount), and so is an unasked
  parallelTrialCount.
- parallelTrialCount: as given, but never below what the algorithm's service
  accepts (hyperband: eta ** s_max), so a small budget works for every algorithm.
- Where that floor exceeds maxTrialCount the local run still starts at most
  maxTrialCount trials, but Katib would reject the object: `katib_admissible`
  says so, and the cluster path refuses it before sending it.
- grid: a maxTrialCount above the number of grid points is refused, as Katib does.
- A trial flag appended for budget (trial_epochs' `--epochs=N`) never overrides the flag the
  algorithm's resource parameter sets (hyperband's and asha's resource_name): the trial's argparse
  keeps the last value, so every rung would train the same epochs. `resource_override_refusal`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import UserError
from pipeline.katib import algorithms
from pipeline.katib.experiment import Experiment


@dataclass(frozen=True)
class Budgeted:
    experiment: Experiment
    notes: tuple[str, ...] = ()  # what the rule changed beyond what was asked

    @property
    def katib_admissible(self) -> bool:
        exp = self.experiment
        return exp.max_trial_count is None or exp.parallel_trial_count <= exp.max_trial_count


def with_budget(
    exp: Experiment,
    max_trial_count: int | None = None,
    parallel_trial_count: int | None = None,
    max_failed_trial_count: int | None = None,
) -> Budgeted:
    """`exp` with the given counts (None keeps the YAML's); see the module docstring for the rule."""
    for flag, value, least in (
        ("maxTrialCount", max_trial_count, 1),
        ("parallelTrialCount", parallel_trial_count, 1),
        ("maxFailedTrialCount", max_failed_trial_count, 0),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} override must be >= {least}, found {value}")
    notes: list[str] = []
    max_trials = max_trial_count if max_trial_count is not None else exp.max_trial_count
    parallel = parallel_trial_count if parallel_trial_count is not None else exp.parallel_trial_count
    max_failed = max_failed_trial_count if max_failed_trial_count is not None else exp.max_failed_trial_count
    if max_trials is not None:
        if parallel_trial_count is None:
            parallel = min(parallel, max_trials)
        if max_failed is not None:
            max_failed = min(max_failed, max_trials)
    floor = algorithms.min_parallel(exp.algorithm_name, exp.algorithm_settings)
    if parallel < floor:
        if parallel_trial_count is not None:
            notes.append(
                f"parallelTrialCount {parallel} raised to {floor}: {exp.algorithm_name} needs at least "
                f"{floor} (Katib's service rejects fewer)"
            )
        parallel = floor
    if max_trials is not None and parallel > max_trials:
        notes.append(
            f"maxTrialCount {max_trials} is below {exp.algorithm_name}'s parallelTrialCount {parallel}: "
            f"the local run starts at most {max_trials} trials; Katib would reject this budget"
        )
    if exp.algorithm_name == "grid" and max_trials is not None:
        problem = algorithms.grid_budget_problem(exp.parameters, max_trials)
        if problem:
            raise UserError(f"{exp.source}: spec.maxTrialCount: {problem}")
    budgeted = exp.with_spec(maxTrialCount=max_trials, parallelTrialCount=parallel, maxFailedTrialCount=max_failed)
    return Budgeted(budgeted, tuple(notes))


RESTARTABLE_POLICIES = ("LongRunning", "FromVolume")


def resume_refusal(
    resume_policy: str, old_status: str | None, old_trials: int | None = None, new_max_trial_count: int | None = None
) -> str | None:
    """Why Katib's validating webhook refuses an edit of an Experiment's spec (a raised budget),
    None when it admits it (`validator.go`, oldInst != nil). `old_status`: the reason the
    Experiment completed with (e.g. ExperimentMaxTrialsReached), None while it runs."""
    if old_status is not None and not (
        old_status == "ExperimentMaxTrialsReached" and resume_policy in RESTARTABLE_POLICIES
    ):
        return (
            f"Katib refuses to restart a completed Experiment ({old_status}) unless it ended by reaching "
            f"maxTrialCount and spec.resumePolicy is LongRunning or FromVolume (it is {resume_policy})"
        )
    if old_trials is not None and new_max_trial_count is not None and new_max_trial_count <= old_trials:
        return (
            f"spec.maxTrialCount {new_max_trial_count} must be greater than the {old_trials} trials the "
            "Experiment already has"
        )
    return None


RESOURCE_SETTING = "resource_name"
_MARK = "katibdigitsresource7"  # a value no template contains, to see where the resource lands


def resource_parameter(exp: Experiment) -> str | None:
    """The parameter the algorithm sets per trial as its resource (hyperband, asha), or None."""
    service = algorithms.ALGORITHMS.get(exp.algorithm_name)
    if service is None or RESOURCE_SETTING not in service.settings:
        return None
    return (
        str(algorithms.typed_settings(exp.algorithm_name, exp.algorithm_settings).get(RESOURCE_SETTING) or "") or None
    )


def resource_flags(exp: Experiment) -> tuple[str, ...]:
    """The trial command's flags that carry the resource parameter's value (`--epochs` in
    experiments/hyperband.yaml), read from the command Katib renders with a marker value for it."""
    from pipeline.katib.render import trial_argv

    name = resource_parameter(exp)
    if name is None or name not in {p.name for p in exp.parameters}:
        return ()
    samples = {
        p.name: _MARK if p.name == name else p.choices[0] if p.choices else int(p.low) if p.type == "int" else p.low
        for p in exp.parameters
    }
    argv = trial_argv(exp, samples)
    flags = []
    for i, word in enumerate(argv):
        if _MARK not in word:
            continue
        if word.startswith("-") and "=" in word:
            flags.append(word.split("=", 1)[0])
        elif i and argv[i - 1].startswith("-"):
            flags.append(argv[i - 1])
    return tuple(flags)


def resource_override_refusal(exp: Experiment, arg: str, origin: str) -> str | None:
    """Why appending the trial flag `arg` (asked for by `origin`) is refused, or None: it would
    override the resource the algorithm gives each trial."""
    flag = arg.split("=", 1)[0]
    if flag not in resource_flags(exp):
        return None
    alg, name = exp.algorithm_name, resource_parameter(exp)
    return (
        f"{exp.source}: {algorithms.SETTINGS_PATH}.{RESOURCE_SETTING}: {origin} would append {arg} to every "
        f"trial, overriding {flag}, which {alg} sets per rung from parameter {name!r}: every rung would "
        f"train the same; {'drop it' if origin.startswith('--trial-arg') else 'leave it at 0'} for {alg}"
    )
