"""compare: models the accuracy section already trained, side by side on the same hold-out rows. Each run
(an accuracy --out folder, or some of its members) scored alone, all of them averaged as one ensemble, and each
pair compared row by row with McNemar's exact test, per split seed and summed over the split seeds."""

from __future__ import annotations

import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from bench.stats import accuracy_interval

ABOUT = (
    "models the accuracy section trained (--compare-runs, one or more --out folders per split seed), scored on "
    "their common hold-out: each run alone, all averaged together, and each pair row by row (McNemar's exact "
    "test); no training"
)
SPLIT = "{split}"


@dataclass(frozen=True)
class Run:
    """One --compare-runs entry: a folder pattern ({split} replaced by each split seed) and the members used."""

    spec: str
    pattern: str
    members: tuple[int, ...] | None  # None: every member the folder holds

    def folder(self, split_seed: int) -> Path:
        return Path(self.pattern.replace(SPLIT, str(split_seed)))


def parse_run(spec: str) -> Run:
    """`PATH` or `PATH:K,K` (those members only); PATH may hold {split}."""
    pattern, _, members = spec.rpartition(":") if re.search(r":[\d,]+$", spec) else (spec, "", "")
    try:
        chosen = tuple(int(k) for k in members.split(",")) if members else None
    except ValueError:
        raise SystemExit(f"benchmark: --compare-runs: {spec}: members after ':' are numbers, e.g. DIR:0,1") from None
    return Run(spec, pattern, chosen)


def member_models(run: Run, split_seed: int) -> list[Path]:
    """The model files of `run`'s members for this split seed, each checked to have been trained on its hold-out
    (the --split-seed of the command its record holds)."""
    folder = run.folder(split_seed)
    records = sorted(folder.glob("accuracy-member-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    held = {int(p.stem.rsplit("-", 1)[1]): p for p in records}
    chosen = run.members if run.members is not None else tuple(held)
    if not chosen:
        raise SystemExit(f"benchmark: --compare-runs: {folder}: no accuracy-member-K.json (not an accuracy --out)")
    models = []
    for k in chosen:
        if k not in held:
            raise SystemExit(f"benchmark: --compare-runs: {folder}: no member {k} (accuracy-member-{k}.json)")
        argv = shlex.split(json.loads(held[k].read_text())["command"])
        recorded = int(argv[argv.index("--split-seed") + 1]) if "--split-seed" in argv else 0
        if recorded != split_seed:
            raise SystemExit(
                f"benchmark: --compare-runs: {held[k]}: command: trained on split seed {recorded}, "
                f"compared on {split_seed}"
            )
        model = folder / "accuracy-model" / f"member-{k}" / "model.keras"
        if not model.exists():
            raise SystemExit(f"benchmark: --compare-runs: {model}: missing (the member did not finish)")
        models.append(model)
    return models


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: of the rows exactly one of two models gets wrong, how unlikely a split this
    uneven is if each were as likely to be the one."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else round(float(binomtest(only_a, n, 0.5).pvalue), 4)


def compare(wrong: dict[str, list[bool]]) -> list[dict]:
    """Each pair of runs on the same rows: its errors, the rows only one gets wrong, and McNemar's p."""
    pairs = []
    for a, b in itertools.combinations(wrong, 2):
        only_a = sum(x and not y for x, y in zip(wrong[a], wrong[b], strict=True))
        only_b = sum(y and not x for x, y in zip(wrong[a], wrong[b], strict=True))
        both = sum(x and y for x, y in zip(wrong[a], wrong[b], strict=True))
        pairs.append({"a": a, "b": b, "only_a": only_a, "only_b": only_b, "both": both, "p": mcnemar(only_a, only_b)})
    return pairs


def measure(data: Path, runs: list[Run], split_seeds: list[int]) -> dict:
    """Per split seed, every run's models predict that seed's hold-out once; then the scores. `split_seeds`
    empty: the one recorded by the first run's first member (its folder may not hold {split})."""
    from pipeline.submission.retrain import hold_out_predictions

    if not split_seeds:
        if any(SPLIT in r.pattern for r in runs):
            raise SystemExit("benchmark: --compare-runs: {split} in a folder needs --compare-split-seeds")
        first = sorted(runs[0].folder(0).glob("accuracy-member-*.json"))
        argv = shlex.split(json.loads(first[0].read_text())["command"]) if first else []
        split_seeds = [int(argv[argv.index("--split-seed") + 1]) if "--split-seed" in argv else 0]
    per_split: list[dict] = []
    total_wrong: dict[str, list[bool]] = {}
    for seed in split_seeds:
        models = {r.spec: member_models(r, seed) for r in runs}
        files = [m for ms in models.values() for m in ms]
        _, y, _, probabilities = hold_out_predictions(files, data / "train.csv.gz", 0.1, split_seed=seed)
        wrong: dict[str, list[bool]] = {}
        start = 0
        for spec, ms in models.items():
            wrong[spec] = list(probabilities[start : start + len(ms)].mean(axis=0).argmax(axis=1) != y)
            start += len(ms)
        if len(runs) > 1:
            wrong["all averaged"] = list(probabilities.mean(axis=0).argmax(axis=1) != y)
        for name, w in wrong.items():
            total_wrong.setdefault(name, []).extend(w)
        per_split.append(
            {
                "split_seed": seed,
                "rows": len(y),
                "members": {spec: len(ms) for spec, ms in models.items()},
                "errors": {name: int(sum(w)) for name, w in wrong.items()},
                "pairs": compare(wrong),
            }
        )
    rows = len(next(iter(total_wrong.values())))
    return {
        "split_seeds": split_seeds,
        "per_split": per_split,
        "rows": rows,
        "errors": {name: int(sum(w)) for name, w in total_wrong.items()},
        "accuracy_ci95": {name: accuracy_interval(rows - int(sum(w)), rows) for name, w in total_wrong.items()},
        "pairs": compare(total_wrong),
    }


def add_arguments(group) -> None:
    group.add_argument(
        "--compare-runs",
        nargs="+",
        default=[],
        metavar="DIR[:K,K]",
        help="accuracy --out folders to compare ({split} in a path is each --compare-split-seeds value; ':0,1' "
        "keeps those members only), e.g. 'runs/acc-tuned-split{split}:0' 'runs/acc-default-split{split}'",
    )
    group.add_argument(
        "--compare-split-seeds",
        nargs="+",
        type=int,
        default=[],
        help="the hold-outs to compare on, summed (default: the one the first run was trained on)",
    )


def check(args) -> None:
    """The runs parsed before any section trains; compare needs at least one."""
    runs = [parse_run(s) for s in args.compare_runs]
    if "compare" in args.only and not runs:
        raise SystemExit("benchmark: --only compare: needs --compare-runs DIR [DIR ...] (accuracy --out folders)")


def run(args, report: dict) -> dict:
    return measure(args.data, [parse_run(s) for s in args.compare_runs], list(args.compare_split_seeds))
