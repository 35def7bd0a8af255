"""typer only: one module per command; each body is parse -> config -> one core call -> summary. `report` holds
the Reporter: the core never prints, it calls one, and the commands choose which. Nothing heavy is imported at
module level, so `ulmfit --help` and usage errors answer at once.

May import: the root modules, data, models, runfolder, inference, training, importers, workflows.
"""
