"""`pretrain` run folders made from published weights rather than trained: fastai's WT103 AWD-LSTM (fastai,
`ulmfit import-fastai`) and Hugging Face checkpoints, decoders and encoders (hf, `ulmfit import-hf`). They train
nothing; they write the same run folder a `pretrain` stage writes, through the stages' run writer and manifest.

May import: the root modules, data, models, runfolder, inference, training.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..runfolder import artifacts
from ..training.stage_parts import manifest, summary


def finish(
    writer,
    out: Path,
    cfg: RunConfig,
    tok_path: Path,
    inputs: list[dict],
    extra: dict,
    started: float,
    reporter,
    said: str,
) -> dict:
    """Publish an imported run: its manifest (a `pretrain` run with no parent and no history), the folder renamed
    into place, one line on stderr (`said`); returns the summary a stage returns."""
    written = manifest("pretrain", cfg, tok_path, inputs, None, [], extra, started)
    writer.write_json(artifacts.MANIFEST, written)
    writer.commit()
    reporter.info(said)
    return summary(out, written)
