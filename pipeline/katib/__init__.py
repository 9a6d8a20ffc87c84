"""Katib v1beta1's semantics, pure: the Experiment and its defaults, the budget rule, rendering, the metrics
collector, medianstop, status and the optimal trial, each suggestion service's rules."""
