"""typer only: one module per command; each body is parse -> config -> one core call -> summary.
Nothing heavy is imported at module level, so `ulmfit --help` and usage errors answer at once."""
