"""Training the three stages: the loop with discriminative rates, STLR and gradual unfreezing (loop, schedule),
checkpoints for `--resume` (checkpoint), per-block diagnostics (diagnostics), what every stage shares (seeds,
layer-group plan, the run writer, manifest and summary: stage_parts; pictures: plots), the stages themselves
(stages), experiment trackers (tracking), and `pretrain` run folders made from published weights: fastai's WT103
(import_fastai) and Hugging Face checkpoints (import_hf).

May import: the root modules, data, models, runfolder, inference.
"""
