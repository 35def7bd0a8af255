"""One SetFit point for bench/fewshot.py (issue 37), run under SetFit's own venv (not the project's).

SetFitModel.from_pretrained(MODEL) (a local sentence-transformers folder, offline), setfit's Trainer with default
TrainingArguments except the seed (TrainingArguments(seed=SEED)) and the default head (logistic regression), on
TRAIN; predictions on TEST. Training CPU time is time.process_time() around trainer.train() (pair generation, the
contrastive body training and the head fit), wall time likewise; prediction is timed apart. One thread.
`process_cpu_s` is the whole process's CPU time up to the end of training (start-up, imports and the model's load
too), the measure this tool's row takes of its `finetune-clf` process.

    /work/venv-setfit/bin/python bench/fewshot_setfit.py MODEL TRAIN.csv TEST.csv --seed 0 [--probe-steps N]

Prints one JSON line: the metrics, timings, versions and the settings seen (pairs, steps, batch size, epochs, rates,
sequence length). --probe-steps N stops after N body steps and prints instead the time per step and the estimate of
the whole training (steps x time per step, after the first step, plus pair generation). The Trainer writes its
default output_dir ("checkpoints") in the working directory: run it in a scratch folder (fewshot.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from fewshot import ENV, metrics, read  # bench/ is on the path (fewshot.py imports only the standard library)

os.environ.update(ENV)


class Probe(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("train")
    ap.add_argument("test")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--probe-steps", type=int, default=0)
    a = ap.parse_args()

    import datasets
    import sentence_transformers
    import setfit
    import sklearn
    import torch
    import transformers
    from setfit import SetFitModel, Trainer, TrainingArguments
    from transformers import TrainerCallback

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    tr, te = read(a.train), read(a.test)
    classes = sorted({r["label"] for r in tr})
    ids = {c: i for i, c in enumerate(classes)}
    train = datasets.Dataset.from_dict({"text": [r["text"] for r in tr], "label": [ids[r["label"]] for r in tr]})
    t_start = time.perf_counter()
    model = SetFitModel.from_pretrained(a.model)
    load_s = time.perf_counter() - t_start
    args = TrainingArguments(seed=a.seed)
    times: dict = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, targs, state, control, **kw):
            times["begin"], times["max_steps"] = time.perf_counter(), state.max_steps

        def on_step_end(self, targs, state, control, **kw):
            times.setdefault("step1", time.perf_counter())
            if a.probe_steps and state.global_step >= a.probe_steps + 1:
                times["stepN"], times["n"] = time.perf_counter(), state.global_step - 1
                raise Probe

    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[Clock()])
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        trainer.train()
    except Probe:
        per_step = (times["stepN"] - times["step1"]) / times["n"]
        est = times["begin"] - t0 + (times["step1"] - times["begin"]) + per_step * (times["max_steps"] - 1)
        print(json.dumps({"probe": True, "steps": times["max_steps"], "pairs": len(trainer.st_trainer.train_dataset),
                          "s_per_step": round(per_step, 3), "pairs_s": round(times["begin"] - t0, 1),
                          "est_train_s": round(est, 1)}))  # fmt: skip
        return
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    pred = [classes[int(i)] for i in model.predict([r["text"] for r in te])]
    eval_wall = time.perf_counter() - t0
    out = metrics([r["label"] for r in te], pred) | {
        "train_cpu_s": round(train_cpu, 2), "train_wall_s": round(train_wall, 2), "eval_wall_s": round(eval_wall, 2),
        "load_s": round(load_s, 2), "process_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "versions": {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__,
                     "transformers": transformers.__version__, "torch": torch.__version__,
                     "sklearn": sklearn.__version__},
        "setfit": {"pairs": len(trainer.st_trainer.train_dataset), "steps": times.get("max_steps"),
                   "sampling_strategy": args.sampling_strategy, "num_iterations": args.num_iterations,
                   "batch_size": args.embedding_batch_size, "epochs": args.embedding_num_epochs,
                   "body_lr": args.body_embedding_learning_rate, "head": type(model.model_head).__name__,
                   "head_lr": args.head_learning_rate, "max_length": args.max_length,
                   "max_seq_length": model.model_body.max_seq_length, "loss": args.loss.__name__,
                   "warmup_proportion": args.warmup_proportion, "l2_weight": args.l2_weight},
    }  # fmt: skip
    if a.probe_steps:  # it finished before the probe's steps: the estimate is the time itself
        out |= {"probe": False, "steps": times.get("max_steps"), "est_train_s": round(train_wall, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
