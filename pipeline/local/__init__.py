"""The local dry-run: an Experiment run on this machine with Optuna, with Katib's semantics."""
