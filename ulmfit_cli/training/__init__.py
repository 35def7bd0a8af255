"""Training the three stages: the loop with discriminative rates, STLR and gradual unfreezing (loop, schedule),
checkpoints for `--resume` (checkpoint), per-block diagnostics (diagnostics), what every stage shares (the
layer-group plan, the model a stage starts from, the run writer, manifest and summary: stage_parts; pictures:
plots), the stages themselves (stages) and experiment trackers (tracking).

May import: the root modules, data, models, runfolder, inference.
"""
