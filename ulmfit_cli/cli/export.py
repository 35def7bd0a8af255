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
        Path | None,
        typer.Option(
            "--onnx", help="ONNX file to write; OUT.tokenizer.json and OUT.json go beside it.", show_default=False
        ),
    ] = None,
    hf: Annotated[
        Path | None,
        typer.Option(
            "--hf",
            help="Folder to write a transformers model, its tokenizer and a model card in (a run of "
            "`finetune-clf --head hf`).",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            metavar="REPO",
            help="With --hf: upload the folder to this Hub repository.",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    quiet: Quiet = False,
):
    """Export a classifier for serving elsewhere: an ONNX graph (ids in, probabilities out), its tokenizer and a
    JSON that says how to feed it (--onnx; needs the `export` extra: pip install 'ulmfit-cli[export]'), or a folder
    that transformers loads with AutoModelForSequenceClassification, with a model card (--hf)."""
    import importlib.util
    import json
    import sys

    from ..errors import ConfigError
    from ..runfolder.artifacts import open_run
    from .common import check_file_out

    if (onnx is None) == (hf is None):
        raise ConfigError("`ulmfit export` writes one thing: give --onnx FILE or --hf DIR")
    if push_to_hub and hf is None:
        raise ConfigError("`--push-to-hub` uploads the folder of --hf DIR: give --hf")
    model = open_run(run, ("finetune-clf",), "export")
    if hf is not None:
        return _export_hf(model, hf, push_to_hub, quiet)
    check_file_out(onnx, "--onnx", "an ONNX file", ".onnx")
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError("`ulmfit export` needs the onnx package: pip install 'ulmfit-cli[export]'")
    from ..inference.export import export_onnx

    files = export_onnx(model, onnx)
    if not quiet:
        sys.stderr.write(f"exported {model.path} to {files['onnx']}\n")
    print(json.dumps({k: str(v) for k, v in files.items()}))


def _export_hf(model, out: Path, repo: str | None, quiet: bool) -> None:
    """--hf DIR (and --push-to-hub REPO): every check before any work, the upload by huggingface_hub's own."""
    import json
    import os
    import sys

    from ..errors import ConfigError
    from ..inference import hf_export

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: --hf needs a new or empty folder")
    hf_export.check(model)
    if repo:
        from huggingface_hub import constants, get_token

        # huggingface_hub reads HF_HUB_OFFLINE once, when first imported: the variable as it is now decides too
        if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES:
            raise ConfigError("`--push-to-hub` needs the Hub, but HF_HUB_OFFLINE is set; unset it, or export without")
        if get_token() is None:
            raise ConfigError("`--push-to-hub` needs a Hub token: run `hf auth login` (or set HF_TOKEN) first")
    files = hf_export.export_hf(model, out, sys.argv[1:])
    if repo:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        files["url"] = api.upload_folder(repo_id=repo, folder_path=str(out))
    if not quiet:
        sys.stderr.write(f"exported {model.path} to {out}\n")
    print(json.dumps({k: str(v) for k, v in files.items()}))
