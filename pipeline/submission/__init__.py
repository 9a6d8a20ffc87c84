"""From a tuned Experiment to Kaggle's submission.csv: retrain the best configuration, predict, check."""
