"""`predict`'s output lines: JSON lines, tab-separated values, or the label alone (one line per input line).

- jsonl: {"label", "probs"} (single-label), {"labels", "probs"} (multi-label: the labels at or above their
  tuned thresholds, in class order), {"value"} (regression). With --top-k K, "probs" holds the K most probable
  classes, most probable first (multi-label "labels" only those among them).
- tsv: LABEL, PROB, TEXT for a single-label classifier (with --top-k K: K label/prob pairs, most probable
  first, then TEXT); LABELS and PROBS joined by ',' (the predicted labels and their probabilities, in class
  order; empty when none passes its threshold), then TEXT for multi-label; VALUE, TEXT for regression.
  TEXT and every LABEL are escaped: backslash, tab, newline and carriage return as \\\\ \\t \\n \\r (and a
  comma inside a multi-label label as \\, since the labels are joined by commas), so each output is one line
  with a fixed number of fields, and the text is always the last. Probabilities have 6 decimals.
- label: the first field of tsv (the label, the ','-joined labels, or the value).
A blank input text gets a line of its own: JSON with null values ({"label": null, "probs": null}), empty fields
in tsv, an empty line with label, so outputs stay aligned with inputs (`paste input.txt predictions`).
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import ConfigError
from ..tasks import MULTI, REGRESSION

FORMATS = ("jsonl", "tsv", "label")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    return text.translate(_ESCAPES)


def escape_listed(label: str) -> str:
    """A label in a ','-joined list: escaped, its own commas too."""
    return escape(label).replace(",", "\\,")


class Formatter:
    """`line(text, out)` -> one output line (no line end) for one input: `out` is its probabilities (C,), its
    value (regression), or None for a blank text."""

    def __init__(self, fmt: str, task: str, classes: list[str] | None, cuts: np.ndarray | None, top_k: int | None):
        if fmt not in FORMATS:
            raise ConfigError(f"`--format` is one of {', '.join(FORMATS)}; got {fmt!r}")
        if top_k is not None and task == REGRESSION:
            raise ConfigError("`--top-k` is for classifiers; this run is a regression")
        self.fmt, self.task, self.classes, self.cuts = fmt, task, classes, cuts
        self.top_k = None if top_k is None else min(top_k, len(classes))

    def line(self, text: str, out) -> str:
        fields = self._blank() if out is None else self._fields(out)
        if self.fmt == "jsonl":
            return json.dumps(fields)
        if self.fmt == "label":
            return fields[0]
        return "\t".join([*fields, escape(text)])

    def _blank(self):
        if self.fmt == "jsonl":
            if self.task == REGRESSION:
                return {"value": None}
            return {"labels" if self.task == MULTI else "label": None, "probs": None}
        return [""] * (1 if self.task == REGRESSION else 2 if self.task == MULTI else 2 * (self.top_k or 1))

    def _fields(self, out):
        if self.task == REGRESSION:
            return {"value": float(out)} if self.fmt == "jsonl" else [repr(float(out))]
        shown = np.argsort(-out, kind="stable")[: self.top_k] if self.top_k else np.arange(len(out))
        if self.task == MULTI:
            chosen = [i for i in sorted(shown) if out[i] >= self.cuts[i]]
            if self.fmt != "jsonl":
                labels = ",".join(escape_listed(self.classes[i]) for i in chosen)
                return [labels, ",".join(f"{out[i]:.6f}" for i in chosen)]
            return {"labels": [self.classes[i] for i in chosen], "probs": self._probs(out, shown)}
        best = int(np.argmax(out))
        if self.fmt == "jsonl":
            return {"label": self.classes[best], "probs": self._probs(out, shown)}
        pairs = shown if self.top_k else [best]
        return [x for i in pairs for x in (escape(self.classes[i]), f"{out[i]:.6f}")]

    def _probs(self, out, shown) -> dict:
        return {self.classes[i]: round(float(out[i]), 6) for i in shown}
