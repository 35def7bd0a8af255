"""Sentences of IMDb's unlabelled reviews, as extra in-domain text for distilling an SST-2 classifier (issue 38).

SST-2's rows are single sentences of movie reviews (Rotten Tomatoes); IMDb's 50,000 unlabelled reviews are movie
reviews too, so their sentences are text of the same domain that a user with an SST-2-like task could have. Each
review's HTML line breaks are dropped, the review is split after sentence-ending punctuation, and sentences of
MIN-MAX words (SST-2's training rows are 2-52 words, 19 on average) are kept; N of them are drawn with a seeded
shuffle, one a line.

    python bench/imdb_sentences.py ../shared/data/imdb/unsup.txt OUT.txt --n 10000 [--seed 42]
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def sentences(review: str, low: int, high: int) -> list[str]:
    text = re.sub(r"<br\s*/?>", " ", review)
    text = re.sub(r"\s+", " ", text).strip()
    return [s for s in SPLIT.split(text) if low <= len(s.split()) <= high]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("reviews", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--min-words", type=int, default=4)
    ap.add_argument("--max-words", type=int, default=40)
    a = ap.parse_args()
    pool = [s for line in a.reviews.read_text().splitlines() for s in sentences(line, a.min_words, a.max_words)]
    pool = list(dict.fromkeys(pool))  # a sentence repeated across reviews counts once
    picked = random.Random(a.seed).sample(pool, min(a.n, len(pool)))
    a.out.write_text("".join(s + "\n" for s in picked))
    print(f"{len(picked):,} of {len(pool):,} sentences -> {a.out}")


if __name__ == "__main__":
    main()
