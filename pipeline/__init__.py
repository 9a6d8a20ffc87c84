"""Everything that drives a Katib Experiment: read and lint a spec, run it
locally with Optuna or on Katib, the KFP pipeline, retrain and predict."""
