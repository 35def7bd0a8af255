"""Tokenization to ids, ours against fastai's default pipeline, on the same words and the same cores.

The first --words words of the book corpus (whole paragraphs, one a line) are tokenized to ids:
  fastai  `TextDataLoaders.from_df(..., is_lm=True)` as a user runs it: spaCy word tokenizer plus fastai's rules
          in `defaults.cpus` worker processes, then Numericalize (vocabulary building) and the LM DataLoaders.
  ours    the LM stages' real path: train the BPE tokenizer on its sample (`tokenizer_sample_lines`, 50,000 lines),
          then stream the file through the Rust tokenizer into the memory-mapped token cache.
Each side runs in a child process of its own, so its peak memory (max RSS) is its own. Prints one JSON line.

  .venv/bin/python bench/tokenize_speed.py --words 2000000 --cores 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def corpus(data: Path, n_words: int, out: Path) -> int:
    total = 0
    with open(data / "gutenberg/train_000.txt", encoding="utf-8") as f, open(out, "w", encoding="utf-8") as g:
        for line in f:
            if line.strip():
                g.write(line)
                total += len(line.split())
                if total >= n_words:
                    break
    return total


def fastai_side(path: Path, cores: int) -> dict:
    import pandas as pd
    from fastai.text.all import TextDataLoaders, defaults

    defaults.cpus = cores
    df = pd.DataFrame({"text": Path(path).read_text(encoding="utf-8").splitlines()})
    t0 = time.perf_counter()
    dls = TextDataLoaders.from_df(df, text_col="text", is_lm=True, valid_pct=0.1, seq_len=70, bs=64, seed=0)
    secs = time.perf_counter() - t0
    n_tokens = int(sum(dls.train.lens) + sum(dls.valid.lens))
    return {"seconds": round(secs, 2), "tokens": int(n_tokens), "vocab": len(dls.vocab)}


def ours_side(path: Path, cores: int) -> dict:
    os.environ["RAYON_NUM_THREADS"] = str(cores)  # the Rust tokenizer's thread pool
    from ulmfit_cli.cli.report import Reporter
    from ulmfit_cli.data.readers import Source, open_corpus
    from ulmfit_cli.data.tokencache import token_ids
    from ulmfit_cli.data.tokenizer import load_tokenizer, train_tokenizer

    t0 = time.perf_counter()
    corpus = open_corpus(Source(path=str(path)))
    sample = corpus.sample(50_000)
    tok = train_tokenizer(sample, "bpe", 15_000)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tok.save(f"{d}/tok.json")
        tok = load_tokenizer(Path(f"{d}/tok.json"))
        t2 = time.perf_counter()
        ids = token_ids([corpus], tok, "bench", 0, Path(d), Reporter(quiet=True))
        t3 = time.perf_counter()
        n = len(ids)
    return {
        "seconds": round(t1 - t0 + t3 - t2, 2),
        "train_tokenizer_s": round(t1 - t0, 2),
        "encode_s": round(t3 - t2, 2),
        "tokens": int(n),
        "vocab": tok.get_vocab_size(),
    }


def child(side: str, path: Path, cores: int) -> dict:
    here = str(Path(__file__).parent)
    code = (
        f"import json,sys; sys.path.insert(0, {here!r}); import tokenize_speed as b; "
        f"print(json.dumps(b.{side}_side({str(path)!r}, {cores})))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(cores), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"{side} failed:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)  # largest child so far
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=REPO / "../shared/data")
    p.add_argument("--words", type=int, default=2_000_000)
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "corpus.txt"
        words = corpus(args.data, args.words, path)
        ours = child("ours", path, args.cores)  # ours first: its RSS is not masked by fastai's larger child
        fastai = child("fastai", path, args.cores)
    print(
        json.dumps(
            {
                "words": words,
                "cores": args.cores,
                "ours": ours,
                "fastai": fastai,
                "speedup": round(fastai["seconds"] / ours["seconds"], 1),
                "speedup_encode_only": round(fastai["seconds"] / ours["encode_s"], 1),
                "words_per_s": {"ours": round(words / ours["seconds"]), "fastai": round(words / fastai["seconds"])},
            }
        )
    )


if __name__ == "__main__":
    main()
