"""`katib-digits`: the command line, click only. Each subcommand lives in its own
module here and loads lazily, so `--help` is fast and imports neither TensorFlow
nor kfp. Nothing else in the project imports this package."""

from __future__ import annotations

import importlib
import sys

import click

from pipeline.errors import UserError

# name -> ("module:attribute", one-line help shown by `katib-digits --help`)
COMMANDS = {
    "lint": ("pipeline.cli.lint:lint_command", "Check Experiment YAMLs against Katib's admission rules, offline."),
    "tune": ("pipeline.cli.tune:tune_command", "Run an Experiment locally with Optuna, with Katib's semantics."),
    "pipeline": (
        "pipeline.cli.pipeline:pipeline_group",
        "Compile the KFP pipeline or run it (locally or on a KFP server).",
    ),
    "train": (
        "pipeline.cli.train:train_command",
        "Retrain the best parameters of a tuned Experiment on all labelled rows.",
    ),
    "predict": (
        "pipeline.cli.train:predict_command",
        "Predict test.csv with a trained model and write submission.csv.",
    ),
    "export": (
        "pipeline.cli.export:export_command",
        "Export the trained model as a SavedModel for TF Serving / KServe.",
    ),
    "serve": ("pipeline.cli.serve:serve_command", "Serve the trained model with KServe's V1 protocol, here."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        """Bad input (a file, a field, a flag) ends as one line and exit 2, here, so that the
        console command and click's CliRunner behave alike; --debug shows the traceback."""
        from trial.data import DataError

        try:
            return super().invoke(ctx)
        except (UserError, DataError) as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"katib-digits: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """Tune a Keras CNN for Kaggle's digit-recognizer with one Katib v1beta1
    Experiment YAML: lint it, run it locally with Optuna (`tune`), run the whole
    KFP pipeline (`pipeline run --local`), or apply it to a cluster with kubectl.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None):
    try:
        # standalone_mode=False: click returns a command's ctx.exit(code) instead of exiting.
        rc = cli.main(args=argv, prog_name="katib-digits", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("katib-digits: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
