"""Every trial flag, its one default, its help text and its check: `TrialConfig`.

`trial.cli.build_parser()` generates the command line from these fields and
`trial.model.build_model()` takes its defaults from them, so the flags, the
model and the benchmark's "same model" cannot drift apart. No TensorFlow here:
the parser and the pipeline's linter import this in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from trial.hardware import PRECISIONS

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "sample" / "train.csv.gz"
OPTIMIZER_NAMES = ("adam", "adamw", "rmsprop", "sgd")
ARCHS = ("strided", "pool")
# The checkpoint key's one rule (trial.checkpoint): a checkpoint is reused only by the same training run, so every
# field is in the key except these, which do not change what training computes: --epochs (resuming is the point;
# the learning rate of epoch k does not depend on it), where things are cached or written, how metrics are
# reported, thread counts. --data and --max-rows enter as a hash of the rows actually loaded, --precision as the
# policy it resolved to. A field added later is in the key unless it is listed here.
NOT_IN_CHECKPOINT_KEY = (
    "epochs",
    "cache_dir",
    "threads",
    "model_out",
    "metrics_file",
    "push_metrics",
    "checkpoint_dir",
)
REPLACED_IN_CHECKPOINT_KEY = ("data", "max_rows", "precision")
GROUPS = ("data", "hyperparameters", "hardware", "output")  # the --help sections, in order


# Checks return what is wrong with a value (None: fine); callers prefix the value or flag.
def positive(value) -> str | None:
    return None if value > 0 and not math.isinf(value) else "is not a positive number"


def positive_int(value: int) -> str | None:
    return None if value > 0 else "is not a positive integer"


def non_negative(value: int) -> str | None:
    return None if value >= 0 else "is negative"


def not_a_file(value: Path) -> str | None:
    return "is a file, not a directory" if value.is_file() else None


def fraction(low_inclusive: bool, high_inclusive: bool) -> Callable[[float], str | None]:
    """[0, 1), (0, 1] and so on; NaN fails every comparison, so it is refused too."""

    def check(value: float) -> str | None:
        ok = (value >= 0 if low_inclusive else value > 0) and (value <= 1 if high_inclusive else value < 1)
        return None if ok else f"is outside {'[' if low_inclusive else '('}0, 1{']' if high_inclusive else ')'}"

    return check


def flag(
    default: Any,
    group: str,
    help: str,
    parse: Callable[[str], Any] = str,
    check: Callable[[Any], str | None] | None = None,
    choices: tuple[str, ...] | None = None,
):
    """A dataclass field that also describes its command-line flag (`--name-with-dashes`)."""
    return field(
        default=default, metadata={"group": group, "help": help, "parse": parse, "check": check, "choices": choices}
    )


@dataclass(frozen=True)
class TrialConfig:
    # data
    data: Path = flag(DEFAULT_DATA, "data", "Kaggle train.csv or train.csv.gz (label,pixel0..pixel783)", Path)
    max_rows: int = flag(0, "data", "use only the first N rows (0 = all), for smoke runs", int, non_negative)
    val_fraction: float = flag(
        0.1, "data", "validation hold-out (0 = none: no val_* metrics)", float, fraction(True, False)
    )
    cache_dir: Path | None = flag(
        None, "data", "where parsed CSVs are cached (unset: $KATIB_DIGITS_CACHE or ~/.cache/katib-digits)", Path
    )
    # hyperparameters
    # 27 epochs with decay 0.925 (0.9's end rate after 20 epochs, stretched): the retrain default, measured best within
    # float32's old 3 x 20 wall time (README Results, "Spending the saved time").
    epochs: int = flag(27, "hyperparameters", "passes over the training rows", int, positive_int)
    batch_size: int = flag(64, "hyperparameters", "images per gradient step", int, positive_int)
    learning_rate: float = flag(1e-3, "hyperparameters", "learning rate of the first epoch", float, positive)
    optimizer: str = flag("adam", "hyperparameters", "sgd is Nesterov with momentum 0.9", choices=OPTIMIZER_NAMES)
    lr_decay: float = flag(
        0.925, "hyperparameters", "learning rate multiplier per epoch (1 = constant)", float, fraction(False, True)
    )
    arch: str = flag(
        "strided",
        "hyperparameters",
        "conv block shape: conv3-conv3-conv5/stride2 (strided) or conv3-conv3-maxpool (pool)",
        choices=ARCHS,
    )
    conv_filters: int = flag(
        32, "hyperparameters", "filters of the first conv block (the second has twice as many)", int, positive_int
    )
    dense_units: int = flag(
        256, "hyperparameters", "units of the dense layer before the 10-way softmax", int, positive_int
    )
    dropout: float = flag(
        0.4, "hyperparameters", "dropout rate after each conv block and the dense layer", float, fraction(True, False)
    )
    augment: float = flag(
        0.1,
        "hyperparameters",
        "rotation/shift/zoom strength (0.1 = 10 degrees, 10%); 0 = off",
        float,
        fraction(True, False),
    )
    seed: int = flag(
        42, "hyperparameters", "weights, shuffling and augmentation (and the split, unless --split-seed)", int
    )
    split_seed: int | None = flag(
        None,
        "hyperparameters",
        "seed of the validation split (unset: --seed); fixed, it "
        "keeps one hold-out across models trained with different --seed",
        int,
    )
    # hardware
    # auto by default: the retrained default in mixed bfloat16 scored as well as in float32 on the four fair
    # hold-outs, faster (README Results, "Where one training epoch goes"), so every Experiment and retrain gets it.
    precision: str = flag(
        "auto",
        "hardware",
        "auto (the default) picks by the hardware: mixed bfloat16 on CPUs "
        "with AMX or AVX512-BF16, mixed float16 on a GPU (with loss "
        "scaling), float32 otherwise; or name one; the choice is the first "
        "line on stderr",
        choices=PRECISIONS,
    )
    threads: int = flag(
        0,
        "hardware",
        "TensorFlow's intra-op threads (0 = the container's CPU limit, so a pod "
        "limited to 4 CPUs on a 64-core node starts 4)",
        int,
        non_negative,
    )
    # output
    model_out: Path | None = flag(None, "output", "write model.keras, hparams.json and history.json here", Path)
    metrics_file: Path | None = flag(
        None, "output", "also write the metric lines here (Katib File collector, TEXT format)", Path
    )
    push_metrics: bool = flag(
        False,
        "output",
        "also send each epoch's metrics to Katib's DB manager: only for an "
        "Experiment with the Push collector (under StdOut or File the "
        "sidecar reads stdout, and a push would record every epoch twice)",
        bool,
    )
    checkpoint_dir: Path | None = flag(
        None,
        "output",
        "save the run after every epoch under CHECKPOINT_DIR/<key>/ "
        "(key: a hash of every setting that shapes training, "
        "--epochs excepted) and continue from there when started "
        "again with more --epochs; created if missing",
        Path,
        not_a_file,
    )

    def __post_init__(self):
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            if meta["parse"] is Path and not isinstance(value, Path):  # TrialConfig(data="x.csv") works too
                object.__setattr__(self, f.name, value := Path(value))
            if meta["choices"] and value not in meta["choices"]:
                raise ValueError(f"unknown {f.name} {value!r}, expected one of {', '.join(meta['choices'])}")
            problem = meta["check"] and meta["check"](value)
            if problem:
                raise ValueError(f"{f.name}={value!r} {problem}")

    @classmethod
    def from_args(cls, args) -> TrialConfig:
        """From `build_parser().parse_args(...)` (or anything with one attribute per field)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @property
    def validation_seed(self) -> int:
        """The split's seed: --split-seed, or --seed when that is unset."""
        return self.seed if self.split_seed is None else self.split_seed

    def to_json(self) -> dict[str, Any]:
        """hparams.json: every field, paths as strings."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
