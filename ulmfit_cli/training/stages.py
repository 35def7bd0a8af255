"""pretrain / finetune-lm / finetune-clf as plain functions on the shared parts in `stage_parts`.

Each stage checks everything it can before any work (parent run, output folder, inputs, labels), writes the
resolved config into its (temporary) run folder before training, and publishes the folder atomically at the end.
Inference (predict, evaluate) lives in `inference.predictor`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np

from .. import tasks
from ..config import RunConfig
from ..data.batches import LMStream, classifier_batches, classifier_steps
from ..data.readers import Source, open_corpus
from ..data.tokenizer import PAD_ID, file_sha256, load_tokenizer
from ..errors import ConfigError
from ..inference.predictor import docs_of, predict_logits
from ..models import backbone
from ..runfolder import artifacts
from . import checkpoint, contrastive, distill
from . import stage_parts as parts
from .schedule import unfreeze_plan

# ---- language-model stages -------------------------------------------------------------------------------


def _lm_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    """Steps per epoch of an LM stage: the whole stream, or --max-steps spread over the epochs."""
    if cfg.max_steps and cfg.epochs:
        return min(steps_per_epoch, -(-cfg.max_steps // cfg.epochs))
    return steps_per_epoch


def _train_lm(model, cfg: RunConfig, tok, train: LMStream, valid: LMStream, reporter, select, caller, **ckpt) -> list:
    """The LM stages' loop; the backbone's lm_objective (an encoder's masking) turns each batch into its target,
    seeded per epoch (and once for validation, the same masks every epoch)."""
    from .loop import fit, lm_evaluate, lm_loss

    bb = backbone(cfg.backbone)
    names, groups = bb.lm_groups(model)
    plan = unfreeze_plan(len(groups), cfg.epochs, cfg.lr, cfg.lr_factor, gradual=False)
    rng = np.random.default_rng(cfg.seed)
    offsets = [int(rng.integers(cfg.bptt)) for _ in plan]
    objective = bb.lm_objective(cfg, tok) or (lambda batches, seed: batches)

    class Valid:  # the validation stream as lm_evaluate reads it, through the objective
        def batches(self, offset):
            return objective(valid.batches(offset), cfg.seed)

    return fit(
        model,
        groups,
        names,
        plan,
        _lm_steps(cfg, len(train)),
        lambda e: objective(train.batches(offsets[e]), cfg.seed * 1000 + e + 1),
        lm_loss(model, cfg),
        lambda: lm_evaluate(model, Valid()),
        cfg,
        reporter,
        select=select,
        caller=caller,
        **ckpt,
    )


def train_lm_stage(
    stage: str,
    cfg: RunConfig,
    sources: list[Source],
    out: Path,
    *,
    text_col: str = "text",
    valid: Source | None = None,
    parent: artifacts.Run | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 0,
    cache_dir: Path | None = None,
    reporter,
    caller: artifacts.Caller = artifacts.ON_ITS_OWN,
) -> dict:
    """pretrain (parent None: trains a tokenizer, random weights) or finetune-lm (tokenizer and weights from
    the parent run). The corpus is streamed: tokenized once into a memory-mapped cache, trained on from there."""
    from .. import dist
    from ..data.tokencache import cache_root, token_ids

    started = time.time()
    if parent is not None:
        artifacts.check_apart(out, parent.path)
        if parent.manifest.get("lm_head") is False and not cfg.new_lm_head:
            raise ConfigError(
                f"{parent.path}: the checkpoint has no language-model head (a sentence encoder?), so there is nothing "
                "to fine-tune as a language model: go straight to `ulmfit finetune-clf` from it, or add --new-lm-head "
                "to train a fresh head tied to its input embeddings"
            )
    words = parts.word_vocab(parent)  # an `import-fastai` parent's fastai word vocabulary, else None
    corpora = [open_corpus(s, text_col) for s in sources]
    valid_corpus = open_corpus(valid, text_col) if valid is not None else None
    fingerprints = [c.fingerprint for c in [*corpora, *([valid_corpus] if valid_corpus else [])]]
    root = cache_root(cache_dir)
    with parts.writing(out, overwrite, resume, reporter, caller) as writer:
        dist.seed_all(cfg.seed)
        tok_path = writer.path(artifacts.TOKENIZER)

        def prepare():  # rank 0: the run folder, the tokenizer, the token cache; the other ranks wait for it
            writer.start(cfg.to_dict(), fingerprints)
            reporter.run_start(stage, out, writer.tmp, cfg.to_dict())
            if words is not None:  # fastai's words: the target corpus's own vocabulary, as fastai's LMLearner
                artifacts.save_tokenizer(parts.target_vocab(words, corpora, reporter), tok_path)
            elif parent is not None:
                artifacts.copy_file(parent.file("tokenizer"), tok_path)
            elif not (resume and tok_path.exists()):  # a resumed pretraining run keeps the tokenizer it trained
                artifacts.save_tokenizer(parts.sample_tokenizer(cfg, corpora, reporter), tok_path)
            return stream_ids()

        def stream_ids():  # the tokenizer and the token ids, from the cache when rank 0 has built it
            tok, sha = load_tokenizer(tok_path), file_sha256(tok_path)
            ids = token_ids(corpora, tok, sha, cfg.max_tokens, root, reporter)
            vids = token_ids([valid_corpus], tok, sha, 0, root, reporter, "validation") if valid_corpus else None
            return tok, ids, vids

        ready = dist.on_main(prepare)
        tok, ids, valid_ids = ready if writer.main else stream_ids()
        train, valid_stream = parts.lm_streams(cfg, ids, valid_ids)
        n_train, n_valid = len(train.ids), len(valid_stream.ids)
        reporter.info(
            f"{stage}: {n_train:,} training tokens, {n_valid:,} validation tokens, {len(train)} steps per epoch"
            + (f" on each of {dist.world().size} processes" if dist.world().size > 1 else "")
        )
        model = parts.place(parts.adapt(parts.parent_lm(cfg, parent, words, tok), cfg), cfg)
        select = parts.selection(stage, cfg)
        ckpt = parts.ckpt_args(writer, resume, checkpoint_every)
        history = _train_lm(model, cfg, tok, train, valid_stream, reporter, select, caller, **ckpt)
        if not writer.main:
            return {}
        pictures = parts.publish_model(
            writer, model, stage, cfg, history, _lm_steps(cfg, len(train)), reporter, select, parent
        )
        inputs = [{"source": str(c.source), "fingerprint": c.fingerprint, "text_col": c.text_col} for c in corpora]
        manifest = parts.manifest(
            stage,
            cfg,
            tok_path,
            inputs,
            parent,
            history,
            {"vocab_size": tok.get_vocab_size(), "tokens": {"train": n_train, "valid": n_valid}, "plots": pictures},
            started,
            select,
            caller,
        )
        writer.write_json(artifacts.MANIFEST, manifest)
        reporter.run_end(manifest, writer.tmp)
        writer.commit()
    return parts.summary(out, manifest)


# ---- classifier ------------------------------------------------------------------------------------------


def finetune_clf(
    cfg: RunConfig,
    parent: artifacts.Run,
    train_src: Source,
    out: Path,
    *,
    valid: Source | None = None,
    text_col: str = "text",
    label_col: str = "label",
    init: str = "pretrained",
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_every: int = 0,
    reporter,
    caller: artifacts.Caller = artifacts.ON_ITS_OWN,
    teaching: distill.Teaching | None = None,
) -> dict:
    """A classifier on top of `parent` from the labelled rows of `train_src`; with `teaching` (distill), a student
    of its teachers' answers over their texts, and of `train_src`'s labels (None: no labelled rows) by --hard-weight."""
    from .. import dist
    from .loop import fit

    started = time.time()
    artifacts.check_apart(out, parent.path)
    with parts.writing(out, overwrite, resume, reporter, caller) as writer:
        if teaching is None:
            tables = parts.clf_tables(cfg, train_src, valid, text_col, label_col)
            table, task, classes, (texts, labels), (vtexts, vlabels) = tables
            data = [table.fingerprint]
        else:
            task, classes = teaching.task, teaching.classes
            table, (texts, labels), (vtexts, vlabels) = teaching.tables(cfg, train_src, valid, text_col, label_col)
            data = [teaching.record["cache_key"], *([table.fingerprint] if table else [])]
        tasks.check_settings(task, cfg)
        if teaching is not None:
            target = teaching.target
        else:
            target = tasks.target_stats(labels) if task == tasks.REGRESSION else None
        y, vy = (tasks.encode(task, ls, classes, target) for ls in (labels, vlabels))
        pair_steps = contrastive.steps_of(cfg, y) if contrastive.applies(cfg, task) and teaching is None else 0
        if pair_steps and cfg.contrastive_steps < 0 and cfg.epochs != 1:  # auto: SetFit's split of the work
            reporter.info(
                "few labelled rows: the contrastive step trains the body, then one epoch the classifier's head "
                "(--contrastive-steps N keeps --epochs)"
            )
            cfg = dataclasses.replace(cfg, epochs=1)
        alone = contrastive.head_alone(cfg, pair_steps)  # the head trains on the body's features computed once
        if cfg.head == "auto":  # resolved before it is recorded: the run folder's readers build the head it names
            cfg = dataclasses.replace(cfg, head="linear" if alone else "ulmfit")
        dist.seed_all(cfg.seed)
        writer.start(cfg.to_dict(), [*data, init, *([str(valid)] if valid else [])])
        if writer.main:
            reporter.run_start("finetune-clf", out, writer.tmp, cfg.to_dict())
        tok_path = writer.path(artifacts.TOKENIZER)
        if writer.main:  # data-parallel: rank 0 writes, every rank reads the parent's
            artifacts.copy_file(parent.file("tokenizer"), tok_path)
        tok = load_tokenizer(parent.file("tokenizer"))
        docs, vdocs = docs_of(tok, texts, cfg), docs_of(tok, vtexts, cfg)
        learn = None if teaching is None else distill.Student(teaching, y, len(docs), texts[: len(labels)])
        bb = backbone(cfg.backbone)
        model = parts.build_classifier(cfg, parent, tok.get_vocab_size(), tasks.n_outputs(task, classes), init)
        parts.place(parts.adapt(model, cfg), cfg)
        names, groups = bb.classifier_groups(model)
        weights = None if learn else tasks.loss_weights(cfg, task, y, classes, next(model.parameters()).device)
        w = dist.world()
        fitted = alone and cfg.head == "linear"  # fit_linear_head: no steps
        steps = classifier_steps(len(docs), cfg.bs, w.size)  # data-parallel: each process every size-th batch
        passes = 1 if fitted else parts.passes_per_epoch(cfg, steps, len(docs), reporter)  # --min-steps: few rows
        steps *= passes  # read several times
        plan = unfreeze_plan(
            len(groups), cfg.epochs, cfg.lr, cfg.lr_factor, cfg.gradual_unfreezing, parts.head_mult(cfg)
        )
        rngs = [np.random.default_rng([cfg.seed, e]) for e in range(cfg.epochs)]
        reporter.info(
            f"finetune-clf: {len(docs)} training and {len(vdocs)} validation documents, "
            f"{task}{f', {len(classes)} classes' if classes else ''}, "
            + ("the linear head fitted after the contrastive step" if fitted else f"{steps} steps per epoch")
        )

        frozen = None  # the body's features, when every epoch trains the head alone after the contrastive step

        def loss_fn(batch):
            idx, x, yb = batch
            logits = model.head(frozen[idx]) if frozen is not None else model(x)[0]
            loss = learn.loss(logits, idx) if learn else tasks.loss(task, logits, yb, weights)
            return loss, loss.item()

        def evaluate():  # no validation rows (--valid-pct 0, or few labelled rows): nothing to measure
            return tasks.valid_metrics(task, predict_logits(model, vdocs, cfg), vy, target) if vdocs else {}

        def batches(e):  # each pass shuffled anew: the epoch's generator moves on
            return itertools.chain.from_iterable(
                classifier_batches(
                    docs, learn.rows if learn else y, cfg.bs, cfg.bptt, PAD_ID, rngs[e], bb.pad_batch, w.rank, w.size
                )  # fmt: skip
                for _ in range(passes)
            )

        ckpt = parts.ckpt_args(writer, resume, checkpoint_every)
        pairing = None
        if pair_steps and not (resume and checkpoint.position(writer.tmp)):  # a checkpoint holds the step's weights
            pairing = contrastive.train_body(model, groups, docs, y, cfg, bb.pad_batch, reporter)
        if alone:
            frozen = contrastive.head_features(model, docs, cfg, bb.pad_batch)
        select = parts.selection("finetune-clf", cfg, task, len(vdocs))
        if fitted:  # a logistic regression, fitted whole on the features computed once
            history = contrastive.fit_linear_head(model, frozen, y, weights, evaluate, reporter)
        else:
            history = fit(
                model,
                groups,
                names,
                plan,
                steps,
                batches,
                loss_fn,
                evaluate,
                cfg,
                reporter,
                **ckpt,
                select=select,
                caller=caller,
            )
        if not writer.main:
            return {}
        published = parts.kept(select, history, len(plan))["kept_epoch"]
        row = history[published - 1] if published else {}
        baseline = None if learn else tasks.majority_baseline(task, y, vy, classes)
        if baseline is None and task == tasks.SINGLE and published and not learn:  # no validation: training rows
            baseline = {**tasks.majority_baseline(task, y, y, classes), "on": "training"}
            train_pred = predict_logits(model.eval(), docs, cfg).argmax(1)
            row = {"accuracy": float((train_pred == y).mean())}
        warning = tasks.no_better_than_majority(row, baseline)
        if warning:
            reporter.warn(warning)
        pictures = parts.publish_model(writer, model, "finetune-clf", cfg, history, steps, reporter, select, parent)
        inputs = [] if table is None else [
            {"source": str(train_src), "fingerprint": table.fingerprint, "documents": len(table.texts)}
        ]  # fmt: skip
        if teaching is not None:  # the texts the teachers labelled
            inputs += [{**i, "documents": i["rows"]} for i in teaching.record["texts"]["inputs"]]
        extra = {
            "vocab_size": tok.get_vocab_size(),
            "task": task,
            "classes": classes,
            **tasks.run_extras(task, lambda: predict_logits(model.eval(), vdocs, cfg), vy, target, classes, reporter),
            "init": init,
            **({"majority_baseline": baseline} if baseline else {}),
            **({"passes_per_epoch": passes} if passes > 1 else {}),
            **({"contrastive": pairing} if pairing else {}),
            **({"distilled": teaching.record} if teaching else {}),
            **({"class_weights": dict(zip(classes, weights.tolist()))} if weights is not None else {}),
            "columns": {"text": text_col, "label": label_col},
            "plots": pictures,
        }
        manifest = parts.manifest(
            "finetune-clf", cfg, tok_path, inputs, parent, history, extra, started, select, caller
        )
        writer.write_json(artifacts.MANIFEST, manifest)
        reporter.run_end(manifest, writer.tmp)
        writer.commit()
    return parts.summary(out, manifest)
