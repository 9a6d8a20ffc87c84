"""The Kubeflow Pipelines (kfp v2) pipeline: its steps as plain functions, the typed components, compile, kfp.local and submit."""
