"""`python -m bench`: every section's flags, --only, and the report: a table of headline figures, then the
whole report as JSON (also written to --json-out)."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from bench import machine
from bench.paths import DEFAULT_DATA, DEFAULT_OUT
from bench.report import print_table, summary_rows
from bench.sections import SECTIONS

PROG = "python -m bench"


def description() -> str:
    """--help's text above the flags: what each section measures, in the order they run."""
    width = max(map(len, SECTIONS))
    lines = [
        "Benchmarks for katib-digits: prints figures as a table and JSON (issue 7).",
        "",
        f"    {PROG} [--data DIR] [--only NAME ...] [--json-out FILE]    (from the repository root)",
        "",
        "Sections (all but compare by default):",
    ]
    for name, section in SECTIONS.items():
        lines += textwrap.wrap(
            section.about, 116, initial_indent=f"  {name:<{width}}  ", subsequent_indent=" " * (width + 4)
        )
    lines.append("Figures depend on the machine and its load; each section prints what it ran.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=description(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with Kaggle's train.csv.gz (default ../shared/...)"
    )
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=[name for name, s in SECTIONS.items() if s.by_default],
        help="the sections to run (default: all but compare); they run in the order listed above",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="accuracy: reuse members already trained in --out by the same command (their recorded times "
        "count); efficiency: keep the trials already finished in --out (the dry-run resumes)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json-out", type=Path, default=None)
    for name, section in SECTIONS.items():
        if section.add_arguments:
            section.add_arguments(p.add_argument_group(f"{name} section"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for section in SECTIONS.values():  # every section's own check, whichever --only names
        if section.check:
            section.check(args)
    if any(SECTIONS[name].needs_data for name in args.only) and not (args.data / "train.csv.gz").exists():
        raise SystemExit(f"benchmark: {args.data / 'train.csv.gz'}: not found (pass --data DIR with Kaggle's files)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = machine.describe()
    for name, section in SECTIONS.items():
        if name in args.only:
            report[name] = section.run(args, report)
    print_table(summary_rows(report))
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0
