from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Quiet


def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder of `ulmfit finetune-clf`.", show_default=False)
    ],
    onnx: Annotated[
        Path,
        typer.Option(
            "--onnx", help="ONNX file to write; OUT.tokenizer.json and OUT.json go beside it.", show_default=False
        ),
    ],
    quiet: Quiet = False,
):
    """Export a classifier for serving elsewhere: an ONNX graph (ids in, probabilities out), its tokenizer and a
    JSON that says how to feed it. Needs the `export` extra (pip install 'ulmfit-cli[export]')."""
    import importlib.util
    import json
    import sys

    from ..errors import ConfigError
    from ..inference.export import export_onnx
    from ..runfolder.artifacts import open_run
    from .common import check_file_out

    model = open_run(run, ("finetune-clf",), "export")
    check_file_out(onnx, "--onnx", "an ONNX file", ".onnx")
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError("`ulmfit export` needs the onnx package: pip install 'ulmfit-cli[export]'")
    files = export_onnx(model, onnx)
    if not quiet:
        sys.stderr.write(f"exported {model.path} to {files['onnx']}\n")
    print(json.dumps({k: str(v) for k, v in files.items()}))
