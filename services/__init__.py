"""The service layer: what the entry points (the CLI, the API and UI routes) do with runs and
workflows — queue, rerun, cancel, archive, delete, list, deliver webhooks — on top of the runner
and storage. Entry points call these; they never change a run's status themselves."""
