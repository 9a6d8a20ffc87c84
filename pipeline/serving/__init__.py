"""Serving the tuned model: a SavedModel for TF Serving and KServe, from one model or an ensemble."""
