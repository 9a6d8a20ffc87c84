"""katib-digits' benchmarks (issue 7): `python -m bench --help` from the repository root.

One concept a module:

- `bench.sections`: the registry (`SECTIONS`, name -> `Section`), one module per section
  (throughput, flops, precision, profile, overhead, efficiency, asha, accuracy, serve), each with
  `ABOUT` and `measure(...)`
- `bench.process`: one trial as a process (`run_trial`), CPU seconds
- `bench.tuning`: dry-run Experiments and what their trials recorded
- `bench.replay`: recorded curves replayed through medianstop's and ASHA's rules
- `bench.rates`: FLOPs per image, matmul rates, a rate's share of them
- `bench.loadgen`: HTTP load on a model server
- `bench.stats`: significant digits, an accuracy's interval, spreads, percentiles
- `bench.plots`: the pictures
- `bench.report`: the table of headline figures
- `bench.machine`, `bench.paths`, `bench.cli` (`python -m bench`)

Imports run one way: bench uses `pipeline` and `trial`; nothing of theirs imports bench.
"""

from bench.cli import main
from bench.report import print_table, summary_rows
from bench.sections import SECTIONS, Section

__all__ = ["SECTIONS", "Section", "main", "print_table", "summary_rows"]
