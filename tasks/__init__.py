"""Tasks: data, objective and metrics for one problem each; deterministic, resumable data."""
