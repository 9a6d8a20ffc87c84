"""The Kubeflow Pipelines (kfp v2) pipeline: `steps` (plain functions), `components` (typed kfp components),
`definition` (the @dsl.pipeline, its run arguments, compile), `local_run` (kfp.local), `server_run` (a KFP server)."""
