"""A folder of many runs that a command builds step by step and finishes after an interruption: `learning-curve`
(one point per size, seed and variant) and `pipeline` (the stages of each direction).

The folder records what it was started with (`KEY_FILE`: inputs' fingerprints, parent, resolved settings); a
rerun with the same key skips what is finished and resumes what was interrupted, a rerun with another key is a
one-line error unless `--overwrite`. Every result is written whole (a temporary file, then a rename), and each
stage's run folder is published atomically by the stage itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError, RunFolderError
from . import artifacts

KEY_FILE = "settings.json"


def write_atomic(path: Path, text: str) -> None:
    """`path` holds the old content or the new one, never half of it (also with several processes writing it:
    each writes its own temporary file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with artifacts.written(path):
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


class Workdir:
    """The output folder of a resumable multi-run command `command`, checked against `key` before any work."""

    def __init__(
        self, out: Path, command: str, key: dict, overwrite: bool, owned: tuple[str, ...], stale=None, shared=False
    ) -> None:
        """`owned`: what the command writes in `out`, all of it discarded by --overwrite, unless `stale`
        (saved key -> the paths to discard) says which of it the changed key touches: the rest is kept. `shared`:
        several processes work in the folder at once (`tune`'s workers, each run folder locked by its writer), so
        none locks the whole of it."""
        self.out, self.command, self.key_file = out, command, out / KEY_FILE
        self.keeps_on_overwrite = stale is not None
        key = {"command": command, **key}
        artifacts.check_links(out)
        if not out.parent.exists():
            raise RunFolderError(f"{out.parent}: the folder for --out does not exist; create it first")
        # the folder is this command's for as long as this object lives (the kernel's lock; see artifacts.OutputLock):
        # taken before anything below reads or discards what is there
        self.lock = None if shared else artifacts.OutputLock(out)
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{out}: is a file; give --out a folder")
        if out.exists() and any(out.iterdir()) and not self.key_file.exists():
            raise RunFolderError(
                f"{out}: exists and is not a {command} folder (no {self.key_file.name}); choose another --out"
            )
        saved, unreadable = None, False
        try:
            saved = json.loads(self.key_file.read_text(encoding="utf-8")) if self.key_file.exists() else None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if not overwrite:
                raise RunFolderError(f"{self.key_file}: not valid JSON ({e}); add --overwrite to start again") from None
            unreadable = True
        if saved is not None and saved != key and not overwrite:
            changed = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
            again = "train again what they change" if stale else "discard its results and start again"
            raise ConfigError(
                f"{out}: holds a {command} started with other settings or data (changed: {', '.join(changed)}); "
                f"add --overwrite to {again}, or choose another --out"
            )
        if (saved is not None or unreadable) and overwrite:  # start again, as --overwrite does for a run folder
            whole = unreadable or stale is None or not isinstance(saved, dict) or saved.get("command") != command
            for name in owned if whole else stale(saved):  # only what this command writes: a user's file stays
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        out.mkdir(exist_ok=True)
        write_json(self.key_file, key)

    def stage(
        self,
        out: Path,
        call,
        what: str,
        reporter,
        sets: str,
        kept: str | None = None,
        caller: artifacts.Caller = artifacts.ON_ITS_OWN,
    ) -> artifacts.Run:
        """The run folder `out` of one stage: reused when it is complete, resumed from its checkpoint when an
        interrupted call left one, else trained afresh (`call(resume=..., overwrite=..., caller=...)` runs the stage,
        `caller` the command's with this command's advice). `sets`
        is the command's flag for this stage's settings (`--clf-set`), which its advice after a NaN loss names,
        with `kept`: what --overwrite keeps after a change of it (by default, the finished stages before it when
        the command discards only what a change touches, else nothing)."""
        if (out / artifacts.MANIFEST).exists():
            try:
                run = artifacts.open_run(out, (*artifacts.LM_STAGES, "finetune-clf"), what)
            except RunFolderError:
                run = None  # damaged: train it again below
            if run is not None:
                reporter.info(f"{self.command}: reusing {out}")
                return run
        partial = out.parent / f".{out.name}.partial"
        resume = artifacts.find_checkpoint(partial) is not None
        if resume:
            reporter.info(f"{self.command}: resuming {out} from its checkpoint")
        if kept is None:
            before = "the finished stages before it are kept"
            kept = before if self.keeps_on_overwrite else "which starts the folder again"
        advised = dataclasses.replace(
            caller,
            rerun="rerun the same command (it resumes by itself)",
            lower_lr=f"rerun with {sets} lr={{lr}} and --overwrite ({kept}) or another --out",
        )
        call(resume=resume, overwrite=True, caller=advised)
        return artifacts.open_run(out, (*artifacts.LM_STAGES, "finetune-clf"), what)
