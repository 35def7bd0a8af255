"""Option types shared by the commands, declared once. `None` means "not given": the preset decides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TRAIN = "Training"
DATA = "Data"
MODEL = "Model (pretrain only; later stages take it from the parent)"
HARDWARE = "Hardware"

Out = Annotated[Path, typer.Option("--out", "-o", help="Run folder to create (written atomically).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder.")]
Preset = Annotated[str, typer.Option(help="Sizes and epochs: tiny | small | paper. Any flag overrides it.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")]
CheckpointEvery = Annotated[
    int, typer.Option(help="Also checkpoint every N optimizer steps (0: at epoch ends only).", min=0)
]
Ensemble = Annotated[
    list[Path] | None,
    typer.Option(
        "--ensemble",
        help="Another finetune-clf run folder (same task and classes) whose outputs are averaged with RUN's, "
        "e.g. a --backwards model; repeat for more.",
        metavar="RUN2",
        show_default=False,
    ),
]
Quantize = Annotated[
    str | None,
    typer.Option(
        help="int8: dynamic quantization of the Linear and LSTM layers, on the CPU (bench/RESULTS.md).",
        show_default=False,
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        help="torch | onnx: run the AWD-LSTM's LSTMs in onnxruntime on the CPU (faster, with or without --quantize; "
        "needs the export extra; the graph is cached, see README).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
PrintSchedule = Annotated[
    bool, typer.Option("--print-schedule", help="Print the per-epoch plan (groups, peak rates) and exit.")
]
TextCol = Annotated[str, typer.Option(help="Column holding the text (tables).", rich_help_panel=DATA)]
LabelCol = Annotated[str, typer.Option(help="Column holding the label.", rich_help_panel=DATA)]
Dataset = Annotated[
    str | None, typer.Option(help="Hub dataset name instead of files (needs the network).", rich_help_panel=DATA)
]
Split = Annotated[str, typer.Option(help="Split of --dataset.", rich_help_panel=DATA)]
Encoding = Annotated[
    str | None,
    typer.Option(
        help="The input files' text encoding (e.g. latin-1, cp1252, utf-16); default UTF-8, where bytes that are "
        "not UTF-8 are counted, said on stderr and read as U+FFFD.",
        rich_help_panel=DATA,
        show_default=False,
    ),
]
ValidPct = Annotated[float | None, typer.Option(help="Share held out for validation.", rich_help_panel=DATA)]
MaxTokens = Annotated[
    int | None, typer.Option(help="Use at most this many tokens of the corpus (0 = all).", rich_help_panel=DATA)
]

Epochs = Annotated[int | None, typer.Option(help="Epochs.", rich_help_panel=TRAIN)]
Lr = Annotated[float | None, typer.Option(help="Peak learning rate of the top layer group.", rich_help_panel=TRAIN)]
Bs = Annotated[int | None, typer.Option(help="Batch size.", rich_help_panel=TRAIN)]
Bptt = Annotated[int | None, typer.Option(help="Tokens per backpropagation window.", rich_help_panel=TRAIN)]
DropMult = Annotated[float | None, typer.Option(help="Scales every dropout.", rich_help_panel=TRAIN)]
Wd = Annotated[float | None, typer.Option(help="Decoupled weight decay.", rich_help_panel=TRAIN)]
LrFactor = Annotated[
    float | None, typer.Option(help="Each lower layer group's rate is the one above / this.", rich_help_panel=TRAIN)
]
HeadLrMult = Annotated[
    float | None,
    typer.Option(
        help="The classifier head's rate is --lr times this (the groups below keep theirs): a fresh head learns "
        "from zero, a pretrained checkpoint's blocks need small rates. Preset: 1; 5 for --backbone hf (small, paper).",
        rich_help_panel=TRAIN,
    ),
]
Groups = Annotated[
    int | None,
    typer.Option(
        help="--backbone hf: split the checkpoint's blocks into this many layer groups (between the embeddings "
        "and the top).",
        rich_help_panel=TRAIN,
    ),
]
Pooling = Annotated[
    str | None,
    typer.Option(
        help="--backbone hf: concat (last token, max, mean; a decoder's default) | mean (an encoder's default) | cls "
        "(an encoder's first token).",
        rich_help_panel=TRAIN,
    ),
]
NewLmHead = Annotated[
    bool | None,
    typer.Option(
        "--new-lm-head",
        help="An encoder checkpoint without a masked-LM head: train a fresh one, tied to its input embeddings.",
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]
CutFrac = Annotated[float | None, typer.Option(help="STLR: share of a phase spent warming up.", rich_help_panel=TRAIN)]
Ratio = Annotated[float | None, typer.Option(help="STLR: peak rate / lowest rate.", rich_help_panel=TRAIN)]
Clip = Annotated[float | None, typer.Option(help="Gradient norm clip (0 = none).", rich_help_panel=TRAIN)]
Alpha = Annotated[float | None, typer.Option(help="AR regularisation.", rich_help_panel=TRAIN)]
Beta = Annotated[float | None, typer.Option(help="TAR regularisation.", rich_help_panel=TRAIN)]
Beta1 = Annotated[float | None, typer.Option(help="Adam beta1.", rich_help_panel=TRAIN)]
Beta2 = Annotated[float | None, typer.Option(help="Adam beta2.", rich_help_panel=TRAIN)]
Keep = Annotated[
    str | None,
    typer.Option(
        help="Publish the weights of the best validation epoch (best by --metric, or an LM's validation loss) or "
        "of the last one (last); auto: best when the classifier has at least 200 validation documents to choose "
        "by, else last. Without validation data: last. [default: auto]",
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]
Metric = Annotated[
    str | None,
    typer.Option(
        help="The validation metric that chooses the epoch kept and the early stop: accuracy | macro_f1 | micro_f1 "
        "| valid_loss (classifiers), mae | rmse (--regression); auto: accuracy, a multi-label run's micro_f1, a "
        "regressor's mae. macro_f1 for imbalanced classes. [default: auto]",
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]
ClassWeights = Annotated[
    str | None,
    typer.Option(
        help="none | balanced: weigh each class's loss by its inverse frequency in the training data (multi-label: "
        "each label's positives by negatives/positives), for imbalanced classes. [default: none]",
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]
Patience = Annotated[
    int | None,
    typer.Option(
        help="Stop after this many epochs without a better validation metric, counted once every layer group "
        "trains (0: run every epoch). [default: 0]",
        rich_help_panel=TRAIN,
        show_default=False,
    ),
]
Seed = Annotated[int | None, typer.Option(help="Random seed (CPU runs repeat exactly).", rich_help_panel=TRAIN)]

Backbone = Annotated[str | None, typer.Option(help="awd-lstm (default) | transformer.", rich_help_panel=MODEL)]
Tokenizer = Annotated[str | None, typer.Option(help="bpe (repeatable) | unigram.", rich_help_panel=MODEL)]
VocabSize = Annotated[int | None, typer.Option(help="Subword vocabulary size.", rich_help_panel=MODEL)]
EmbSz = Annotated[int | None, typer.Option(help="Embedding size.", rich_help_panel=MODEL)]
NHid = Annotated[int | None, typer.Option(help="LSTM hidden size.", rich_help_panel=MODEL)]
NLayers = Annotated[int | None, typer.Option(help="LSTM layers.", rich_help_panel=MODEL)]
TokSample = Annotated[int | None, typer.Option(help="Corpus lines the tokenizer is trained on.", rich_help_panel=MODEL)]

NHeads = Annotated[int | None, typer.Option(help="Transformer: attention heads.", rich_help_panel=MODEL)]
Norm = Annotated[str | None, typer.Option(help="Transformer: layernorm | rmsnorm.", rich_help_panel=MODEL)]
NormPosition = Annotated[
    str | None,
    typer.Option(help="Transformer: pre (Pre-LN) | post (Post-LN) | residual (ResiDual).", rich_help_panel=MODEL),
]
Attention = Annotated[str | None, typer.Option(help="Transformer: softmax | linear.", rich_help_panel=MODEL)]
Backwards = Annotated[
    bool | None,
    typer.Option(
        "--backwards/--forwards",
        help="Read texts from the end (the paper's backward model; later stages take it from the parent).",
        rich_help_panel=MODEL,
    ),
]
MaxSteps = Annotated[
    int | None,
    typer.Option(
        help="At most this many optimizer steps in all, spread over the epochs (0 = no cap).", rich_help_panel=TRAIN
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(help="Token-id cache (default $ULMFIT_CACHE or ~/.cache/ulmfit).", rich_help_panel=DATA),
]
Device = Annotated[
    str | None,
    typer.Option(help="auto | cpu | cuda | cuda:N | mps (auto: a GPU when there is one).", rich_help_panel=HARDWARE),
]
Precision = Annotated[
    str | None, typer.Option(help="fp32 | bf16 | fp16 (mixed precision on CUDA GPUs).", rich_help_panel=HARDWARE)
]
Compile = Annotated[
    bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model.", rich_help_panel=HARDWARE)
]
BatchSize = Annotated[int, typer.Option(help="Documents per forward pass (sorted by length within it).", min=1)]
Threads = Annotated[
    int | None, typer.Option(help="CPU threads for torch and --engine onnx (default: torch's choice).", min=1, max=4096)
]


def _config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None):
    from ..configfile import callback

    return callback(ctx, param, value)


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A TOML file of this command's flags (keys: the flags' names, e.g. lr = 0.01; a multi-stage command "
        "takes a [pretrain], [finetune-lm] or [finetune-clf] table per stage); flags given here override it.",
        is_eager=True,
        callback=_config_callback,
        show_default=False,
    ),
]
PrintConfig = Annotated[
    bool,
    typer.Option("--print-config", help="Print the resolved settings as a --config file and exit."),
]
Track = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="tensorboard | mlflow (repeatable): log losses, rates, validation metrics and settings there "
        "(MLflow: to $MLFLOW_TRACKING_URI; needs the tracking extra). A failing tracker never fails the run.",
        show_default=False,
    ),
]
TrackDir = Annotated[
    Path | None,
    typer.Option(
        help="TensorBoard's folder: event files go to TRACK_DIR/RUN_NAME (default: RUN/tensorboard).",
        show_default=False,
    ),
]
