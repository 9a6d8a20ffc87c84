"""The Katib backend: an Experiment run on a real cluster through the Kubernetes API."""
