"""Token ids -> batches: the validation split, contiguous LM batches (fastai LMDataLoader) and sorted, padded
classifier batches (fastai SortedDL with its chunked padding), and the checks that a table can train at all.
Reading and tokenizing the inputs is readers.py's."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def held_out(n: int, valid_pct: float) -> int:
    """How many of `n` rows --valid-pct holds out: at least one, unless it is 0 (train on every row)."""
    return 0 if valid_pct == 0 else max(1, int(round(n * valid_pct)))


def split_valid(n: int, valid_pct: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/valid indices (fastai RandomSplitter): at least one of each, or no valid with valid_pct 0."""
    idx = np.random.default_rng(seed).permutation(n)
    n_valid = held_out(n, valid_pct)
    if n_valid >= n:
        raise InputError(f"--valid-pct {valid_pct} leaves no training rows out of {n}; lower it")
    return np.sort(idx[n_valid:]), np.sort(idx[:n_valid])


class LMStream:
    """Contiguous LM batches from one token stream (fastai LMDataLoader): the stream is cut into `bs` rows
    read left to right in `bptt` windows, so each row's hidden state carries over from one batch to the next.
    Each epoch starts the rows at a random offset in [0, bptt) so windows differ between epochs.

    `ids` may be a memory-mapped file: each batch reads only its own (bs, bptt + 1) window, so an epoch never
    holds the stream in memory. `backwards` reads the stream from its end (fastai's backwards LM). With
    `ranks` > 1 (data-parallel training) the stream is cut into `bs * ranks` rows and `rank` reads its own `bs`.
    """

    def __init__(self, ids: np.ndarray, bs: int, bptt: int, backwards: bool = False, rank: int = 0, ranks: int = 1):
        self.ids, self.bs, self.bptt = (ids[::-1] if backwards else ids), bs, bptt
        self.rank, self.ranks = rank, ranks
        self.row_len = (len(ids) - 1 - bptt) // (bs * ranks)  # room for the random offset and the shifted target

    def __len__(self) -> int:
        return -(-self.row_len // self.bptt) if self.row_len > 0 else 0

    def batches(self, offset: int = 0):
        import torch

        L = self.row_len
        starts = (np.arange(self.bs) + self.rank * self.bs) * L + offset
        for i in range(0, L, self.bptt):
            n = min(self.bptt, L - i)
            window = self.ids[starts[:, None] + i + np.arange(n + 1)]  # (bs, n + 1): one read per batch
            yield torch.from_numpy(window[:, :-1].astype(np.int64)), torch.from_numpy(window[:, 1:].astype(np.int64))


def classifier_steps(n: int, bs: int, ranks: int = 1) -> int:
    """Training steps per epoch of `classifier_batches` on `n` documents for each of `ranks` processes."""
    batches = -(-n // bs)
    if batches > 1 and n % bs == 1:  # the lone last document joins the batch before it
        batches -= 1
    return batches // ranks if (n >= 2 and bs >= 2) else 0


def min_classifier_docs(bs: int, ranks: int = 1) -> int:
    """The fewest training documents that give every process a step of at least two documents."""
    return 2 if ranks == 1 else (ranks - 1) * bs + 2


def check_trainable(n: int, bs: int, ranks: int, source, valid_pct: float | None) -> None:
    """Refuse, before any work, `n` training documents too few to give each of `ranks` processes a step of two
    (`valid_pct`: the share held out of `source` for validation, None when validation came from elsewhere)."""
    if classifier_steps(max(n, 0), bs, ranks) == 0:
        held = f" after holding out --valid-pct {valid_pct} for validation" if valid_pct is not None else ""
        procs, lower = (f" on {ranks} processes", " or lower --bs") if ranks > 1 else ("", "")
        raise InputError(
            f"{source}: {max(n, 0)} training document(s){held}, too few to train with --bs {bs}{procs}: "
            f"at least {min_classifier_docs(bs, ranks)} are needed; give more data{lower}"
        )


def pad_chunks(docs: list[np.ndarray], pad_id: int, bptt: int) -> np.ndarray:
    """Pad a batch for fastai's SentenceEncoder (as fastai's `pad_chunk`, pad_first): whole `bptt`-sized
    chunks of padding go before the text and the remainder after, so every row's real text starts on a chunk
    boundary. Rows must be sorted longest first: SentenceEncoder feeds each chunk to the first rows only.

    Unlike fastai's, a batch wider than one chunk is a whole number of chunks wide: with a ragged last chunk, a
    row whose text ended just before it (no lead, remainder of padding) sat above a shorter row still reading, and
    SentenceEncoder fed the first rows, so one row read padding and the other lost its last tokens: answers
    changed with the batch. A batch of one chunk or less keeps its own width (every row's text starts at column 0,
    so nothing can go wrong there): padding short documents to a whole chunk made TREC's batches of 10-30 tokens
    70 wide, and inference 3-4x slower.
    """
    width = max(len(d) for d in docs)
    if width > bptt:
        width = -(-width // bptt) * bptt
    out = np.full((len(docs), width), pad_id, dtype=np.int64)
    for r, d in enumerate(docs):
        lead = ((width - len(d)) // bptt) * bptt
        out[r, lead : lead + len(d)] = d
    return out


def classifier_batches(
    docs: list[np.ndarray],
    labels: np.ndarray | None,
    bs: int,
    bptt: int,
    pad_id: int,
    rng: np.random.Generator | None = None,
    pad=pad_chunks,
    rank: int = 0,
    ranks: int = 1,
):
    """Batches of similar-length documents (fastai SortedDL). With `rng`: shuffled, then sorted within
    chunks of 50 batches, then the batches shuffled; without: sorted by length for inference. With `ranks` > 1
    (data-parallel training) process `rank` gets every ranks-th batch, all processes the same number.
    Yields (original indices, x (B, T) int64, y (B,) or None).

    Training (with `rng`) never yields a batch of one document: the classifier head's batch-norm cannot train on
    it. A last batch of one joins the batch before it (bs + 1 documents), so no document is left out of an epoch
    (fastai drops that last batch instead, losing a different document each epoch)."""
    import torch

    n = len(docs)
    lens = np.array([len(d) for d in docs])
    if rng is None:
        order = np.argsort(-lens, kind="stable")
        groups = [order[i : i + bs] for i in range(0, n, bs)]
    else:
        perm = rng.permutation(n)
        groups = []
        for c in range(0, n, bs * 50):
            chunk = perm[c : c + bs * 50]
            chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
            groups += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
        if groups and len(groups[-1]) == 1:  # only the last chunk's last batch can be short
            groups[-2:] = [np.concatenate(groups[-2:])] if len(groups) > 1 else []  # one document: nothing to train
        groups = [groups[i] for i in rng.permutation(len(groups))]
    if ranks > 1:
        groups = groups[rank::ranks][: len(groups) // ranks]
    for g in groups:
        g = g[np.argsort(-lens[g], kind="stable")]
        x = torch.from_numpy(pad([docs[i] for i in g], pad_id, bptt))
        y = torch.from_numpy(labels[g]) if labels is not None else None
        yield g, x, y
