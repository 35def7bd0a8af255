"""`--engine onnx`: the AWD-LSTM's embedding and LSTMs run in onnxruntime, chunk by chunk, on the CPU; a Hugging
Face checkpoint's classifier (--backbone hf) runs whole in onnxruntime (its body, pooling and head: `attach_whole`).

The classifier (models/awd_lstm_infer.py) keeps its chunk loop, pooling and head in torch; only `recur` (token
ids and the LSTMs' states in, the last LSTM's outputs and the new states out) is a graph, exported once per run
and kept in a cache (`cache_dir`), keyed by the run's weights and config, so later calls only load it. With
`--quantize int8` the graph's LSTMs are quantized by onnxruntime's `quantize_dynamic` (int8 weights, activations
quantized on the fly: its DynamicQuantizeLSTM), the head stays fp32. Why: onnxruntime's CPU LSTM kernels are
faster than torch's on short documents, and its int8 LSTM faster than torch's on all.

The one-pass graph of `ulmfit export` is not used here: on long documents one pass materialises every step's
gates for the whole batch at once (memory-bound); short chunks keep them in cache, as the torch model does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..runfolder import artifacts

ENGINES = ("torch", "onnx")
GRAPH_VERSION = 2  # bump when chunk_graph or whole_graph changes: cached graphs of other versions are never read


def check(engine: str, backbone: str | None = None) -> None:
    """Exit 2 before any work: an unknown engine, a backbone it cannot run, or onnxruntime missing."""
    if engine not in ENGINES:
        raise ConfigError(f"`--engine` must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "onnx":
        return
    if backbone == "transformer":
        raise ConfigError(
            "`--engine onnx` runs AWD-LSTM and --backbone hf classifiers; use --engine torch for a transformer run"
        )
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        raise ConfigError("`--engine onnx` needs onnx and onnxruntime: pip install 'ulmfit-cli[export]'")


def cache_dir() -> Path:
    """Where the graphs are kept: onnx/ in the token cache's folder ($ULMFIT_CACHE, else ~/.cache/ulmfit)."""
    from ..data.tokencache import cache_root

    return cache_root() / "onnx"


def key(run: artifacts.Run, quantize: str | None) -> str:
    """What the graph depends on: the weights, the config, the graph's code and, for int8, onnxruntime's
    quantizer."""
    import onnxruntime

    h = hashlib.sha256()
    with open(run.file("weights"), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(json.dumps(run.config, sort_keys=True).encode())
    h.update(f"v{GRAPH_VERSION} {quantize} {onnxruntime.__version__ if quantize else ''}".encode())
    return h.hexdigest()[:32]


def chunk_graph(model):
    """`model.recur` as a module with explicit states: (ids (n, t), h_0, c_0, h_1, c_1, ...) -> (outputs (n, t, C),
    h_0', c_0', ...), each state (1, n, size)."""
    import torch.nn as nn

    class Chunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.rnns = model.encoder, model.rnns

        def forward(self, ids, *states):
            h, out = self.encoder(ids), []
            for i, rnn in enumerate(self.rnns):
                h, (hn, cn) = rnn(h, (states[2 * i], states[2 * i + 1]))
                out += [hn, cn]
            return (h, *out)

    return Chunk().eval()


def state_names(n_layers: int) -> tuple[list[str], list[str]]:
    ins = [f"{hc}{i}" for i in range(n_layers) for hc in ("h", "c")]
    return ins, [f"{s}_out" for s in ins]


def export_chunk(model, path: Path) -> None:
    """Write the chunk graph of `model` (fp32) to `path`."""
    import torch

    g = chunk_graph(model)
    ins, outs = state_names(len(model.rnns))
    ids = torch.full((2, 5), 3, dtype=torch.int64)
    states = [torch.zeros(1, 2, rnn.hidden_size) for rnn in model.rnns for _ in (0, 1)]
    axes = {"ids": {0: "n", 1: "t"}, "hidden": {0: "n", 1: "t"}, **{s: {1: "n"} for s in ins + outs}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes; the dynamic axes are tested
        torch.onnx.export(
            g, (ids, *states), str(path), input_names=["ids", *ins], output_names=["hidden", *outs],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip


def whole_graph(model):
    """A --backbone hf classifier as a module: ids (n, t) padded at the end with HF_PAD -> logits (n, C)."""
    import torch.nn as nn

    class Whole(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model.head(self.model.features(ids, attention_mask=True).float())

    return Whole().eval()


def export_whole(model, path: Path) -> None:
    """The classifier's graph with every attention as onnxruntime's fused MultiHeadAttention (`fused_attention`):
    the plain ONNX of `ulmfit export` spells it out as matmuls, a softmax and NaN guards over (rows, heads, time,
    time) scores, several copies of them at once; this graph is only ever run by onnxruntime."""
    import torch

    ids = torch.full((2, 7), -1, dtype=torch.int64)
    ids[:, :3], ids[0, 3:] = 5, 6
    heads = model.body.config.num_attention_heads
    torch.onnx.register_custom_op_symbolic("aten::scaled_dot_product_attention", fused_attention(heads), 17)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                whole_graph(model), (ids,), str(path), input_names=["ids"], output_names=["logits"],
                dynamic_axes={"ids": {0: "n", 1: "t"}, "logits": {0: "n"}}, opset_version=17, dynamo=False,
                custom_opsets={"com.microsoft": 1},
            )  # fmt: skip
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::scaled_dot_product_attention", 17)


def fused_attention(heads: int):
    """The export's translation of torch's scaled_dot_product_attention for a model of `heads` heads: `attention`."""

    def attention(g, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, gqa=None):
        return _attention(g, heads, query, key, value, attn_mask, is_causal, scale, gqa)

    return attention


def _attention(g, heads, query, key, value, attn_mask, is_causal, scale, gqa):
    """torch's scaled_dot_product_attention as com.microsoft's MultiHeadAttention: query, key and value (B, N, S|T,
    H) in as (B, S|T, N*H), a boolean mask as an additive bias (B|1, 1|N, S, T) of 0 and float32's lowest (what
    transformers' own masks add), a causal flag as `unidirectional`, the result back as (B, N, S, H)."""
    from torch.onnx import symbolic_helper as sh

    if sh._maybe_get_const(gqa, "b"):
        raise RuntimeError("scaled_dot_product_attention with enable_gqa cannot be exported as MultiHeadAttention")

    def flat(x):  # (B, N, S, H) -> (B, S, N*H)
        return g.op("Reshape", g.op("Transpose", x, perm_i=[0, 2, 1, 3]), g.op("Constant", value_t=_shape(0, 0, -1)))

    bias = sh._optional_input_placeholder_tensor(g)
    if not sh._is_none(attn_mask):
        if attn_mask.type().scalarType() == "Bool":
            import torch

            lowest = g.op("Constant", value_t=torch.tensor(torch.finfo(torch.float32).min))
            attn_mask = g.op("Where", attn_mask, g.op("Constant", value_t=torch.tensor(0.0)), lowest)
        bias = attn_mask
    extra = {} if sh._is_none(scale) else {"scale_f": sh._maybe_get_const(scale, "f")}
    none = sh._optional_input_placeholder_tensor(g)
    out = g.op(
        "com.microsoft::MultiHeadAttention", flat(query), flat(key), flat(value), none, none, bias,
        num_heads_i=heads, unidirectional_i=int(bool(sh._maybe_get_const(is_causal, "b"))), **extra,
    )  # fmt: skip
    back = g.op("Reshape", out, g.op("Constant", value_t=_shape(0, 0, heads, -1)))  # (B, S, N, H)
    return g.op("Transpose", back, perm_i=[0, 2, 1, 3])


def _shape(*dims: int):
    import torch

    return torch.tensor(dims, dtype=torch.int64)


def graph_file(run: artifacts.Run, model, quantize: str | None, whole: bool = False) -> Path:
    """The cached graph for this run (and int8 or not), exported now if missing. Written under a temporary name
    and renamed, so a reader never sees half a file; nothing is written to the run folder. `whole`: the hf
    classifier's whole graph, its MatMuls quantized for int8; else the AWD-LSTM's chunk graph, its LSTMs."""
    out = cache_dir() / f"{key(run, quantize)}{'.whole' if whole else ''}{'.int8' if quantize else ''}.onnx"
    if out.exists():
        return out
    tmp = [out.with_name(f".{out.name}.{os.getpid()}.{s}") for s in ("fp32", "int8")]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (export_whole if whole else export_chunk)(model, tmp[0])
        if quantize:
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process, on the root logger
            ops = ["MatMul", "Gemm"] if whole else ["LSTM"]
            if whole:  # onnx's shape inference stops at the fused attention, onnxruntime's own knows it
                import onnx
                from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

                onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(tmp[0]), auto_merge=True), tmp[0])
            quantize_dynamic(tmp[0], tmp[1], weight_type=QuantType.QInt8, op_types_to_quantize=ops)
        os.replace(tmp[1] if quantize else tmp[0], out)
    except OSError as e:
        raise OutputError(
            f"{out.parent}: could not write the onnx graph cache ({e.strerror or e}); set ULMFIT_CACHE to a "
            "writable folder"
        ) from None
    finally:
        for p in tmp:
            p.unlink(missing_ok=True)
    return out


class Recurrence:
    """An onnxruntime session standing in for AWDLSTMClassifier.recur (same arguments, same results).

    With `threads` N > 1 the session runs one thread per call, and the classifier splits each batch's rows into
    N parts (`parts`, dealt out by length) whose chunk loops and pooling run side by side in N Python threads
    (`map`; onnxruntime and torch release the GIL), torch on one thread (attach): torch's idle OpenMP threads
    spin for a while after each operator, on the cores the onnxruntime calls need. Why rows and not operators:
    onnxruntime's own 2 threads inside each operator gave int8 1.13x (TREC-6) and 1.53x (IMDb) its 1-thread
    speed, where fastai gains 1.70x and 1.90x; and why whole parts rather than each call's rows: the threads
    then meet once a batch, not once a chunk, and pool in parallel."""

    def __init__(self, path: Path, sizes: list[int], threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1 if threads > 1 else threads, 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.sizes = sizes
        self.names = state_names(len(sizes))
        self.threads, self.pool = threads, None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ulmfit-onnx")

    def parts(self, rows: int) -> int:
        """How many threads a batch of `rows` rows is split between: 1 (no split) up to `threads`, with at least
        MIN_ROWS rows each."""
        return max(1, min(self.threads, rows // MIN_ROWS))

    def map(self, fn, items: list) -> list:
        """fn over items, one per pool thread, torch on one thread in each; results in order."""

        def one(item):
            import torch

            torch.set_num_threads(1)  # a fresh thread's OpenMP default is every core
            return fn(item)

        return list(self.pool.map(one, items))

    def __call__(self, x, states: list) -> tuple:
        import numpy as np
        import torch

        n = x.shape[0]
        feed = {"ids": np.ascontiguousarray(x.cpu().numpy())}
        for i, (size, st) in enumerate(zip(self.sizes, states)):
            for j, name in enumerate(self.names[0][2 * i : 2 * i + 2]):
                feed[name] = np.zeros((1, n, size), np.float32) if st is None else np.ascontiguousarray(st[j].numpy())
        h, *out = (torch.from_numpy(a) for a in self.session.run(None, feed))
        return h, [(out[2 * i], out[2 * i + 1]) for i in range(len(self.sizes))]


MIN_ROWS = 8  # rows per thread at least when a batch's rows are dealt out to threads


ATTENTION_CELLS = 1 << 21  # rows x time x time a session call may hold: 8 rows of 512 tokens, a batch of short texts


class WholeClassifier:
    """An onnxruntime session standing in for a --backbone hf classifier's forward: ids -> (logits,).

    onnxruntime's attention on the CPU holds a call's (rows, heads, time, time) scores whole, where torch's
    never does: fed whole, a batch of 64 documents of 512 tokens took several times torch's peak memory. So a
    long batch goes to the session a few rows at a time (`rows_per_call`), each part cut to its own longest
    row (the rows come sorted by length); a batch of short texts is still one call."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x):
        import numpy as np
        import torch

        from ..models.hf import HF_PAD

        ids = x.cpu().numpy()
        step = rows_per_call(ids.shape[1])
        out = []
        for i in range(0, len(ids), step):
            part = ids[i : i + step]
            width = int((part != HF_PAD).sum(1).max())
            out.append(self.session.run(None, {"ids": np.ascontiguousarray(part[:, :width])})[0])
        return (torch.from_numpy(np.concatenate(out)),)


def rows_per_call(time: int) -> int:
    """How many rows of `time` tokens one session call reads: as many as ATTENTION_CELLS allows, at least one."""
    return max(1, ATTENTION_CELLS // max(1, time * time))


def attach(run: artifacts.Run, model, quantize: str | None) -> None:
    """Make `model` (on the CPU, loaded with the run's weights) run in onnxruntime, on torch's thread count: an
    AWDLSTMClassifier its LSTMs, an hf classifier the whole of it."""
    import torch

    if run.config.get("backbone") == "hf":
        model.engine = WholeClassifier(graph_file(run, model, quantize, whole=True), torch.get_num_threads())
        return
    path = graph_file(run, model, quantize)
    threads = torch.get_num_threads()
    model.engine = Recurrence(path, [rnn.hidden_size for rnn in model.rnns], threads)
    if threads > 1:
        model.torch_threads = 1
