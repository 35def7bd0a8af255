"""ulmfit-cli: ULMFiT-style transfer learning for text classification, from the shell.

The package in layers, bottom to top; a subpackage imports only the root modules and the subpackages listed before
it, never one after (tests/test_layout.py holds this, and that nothing imports in a cycle):

- root modules: `errors` (one-line failures, exit codes), `config` (a run's resolved settings, presets),
  `configfile` (`--config FILE`), `tasks` (what a classifier predicts: labels, loss, metrics), `metrics`,
  `dist` (seeding, device, precision, torchrun);
- `data`: inputs to token ids (readers, tokenizers, the token cache, batches);
- `models`: the backbones and their layer groups;
- `runfolder`: the run-folder format and folders of many runs;
- `inference`: a trained classifier in use (predict, evaluate, ONNX, int8);
- `training`: the three stages, their loop and schedule;
- `importers`: pretrain runs from published weights (fastai's WT103, Hugging Face checkpoints);
- `workflows`: commands made of stages (pipeline, learning curve, lr-find) or run before them (inspect);
- `cli`: the typer commands and the Reporter that prints for them.
"""

__version__ = "0.1.0"
