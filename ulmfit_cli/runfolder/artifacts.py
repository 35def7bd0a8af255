"""The run-folder format: manifest, config, tokenizer and weights; atomic save; checks between stages.

A run folder is written in a hidden temporary sibling and renamed into place at the end, so it appears
complete or not at all. Loading never executes code from the folder: weights are safetensors (no pickle),
everything else is JSON, and file names in the manifest cannot point outside the folder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunFolderError, written

FORMAT = "ulmfit-run/1"
MANIFEST, CONFIG, TOKENIZER, WEIGHTS = "manifest.json", "config.json", "tokenizer.json", "model.safetensors"
LM_STAGES = ("pretrain", "finetune-lm")
ENSEMBLE, ENSEMBLE_FORMAT = "ensemble.json", "ulmfit-ensemble/1"  # a folder of runs used together (`pipeline`)
RESUME_MAY_CHANGE = {"lr", "clip", "wd", "device"}  # what a resumed run may change, e.g. after a NaN loss


# errors that mean "the disk would not take it", whatever the write: caught even where no write site wraps them
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}


def save_tokenizer(tok, path: Path) -> None:
    """A Hugging Face tokenizer (as its own `save` writes it) or a fastai word vocabulary, as `path`."""
    with written(path):
        if hasattr(tok, "to_str"):
            path.write_text(tok.to_str(pretty=True), encoding="utf-8")
        else:
            tok.save(str(path))


def copy_file(src: Path, dst: Path) -> None:
    with written(dst):
        shutil.copyfile(src, dst)


def check_links(out: Path) -> None:
    """Refuse, before any work, an --out that is (or lies under) a symbolic link leading nowhere: a loop, or a link
    whose target is missing. Each would otherwise fail only when the first file is written, with advice about
    free space that cannot help."""
    import errno
    import os

    for p in [out, *out.parents]:
        if not p.is_symlink():
            continue
        try:
            os.stat(p)
        except OSError as e:
            target = os.readlink(p)
            why = "loops back on itself" if e.errno == errno.ELOOP else f"does not exist ({e.strerror})"
            where = "--out" if p == out else f"a folder above --out {out},"
            raise RunFolderError(
                f"{where} {p} is a symbolic link to {target!r}, which {why}; remove the link or choose another --out"
            ) from None


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing folder without --overwrite, or a file with it."""
    check_links(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: is a file, not a run folder; choose another --out (nothing was deleted)")
    if out.exists() and not overwrite:
        raise RunFolderError(f"{out}: already exists; choose another --out or add --overwrite to replace it")
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise RunFolderError(f"{out}: exists and is not a run folder; refusing to replace it even with --overwrite")
    if not out.parent.exists():
        raise RunFolderError(f"{out.parent}: the folder for --out does not exist; create it first")


def check_apart(out: Path, parent: Path) -> None:
    """Refuse, before any work and whatever --overwrite says, an --out that would replace or nest with the
    parent run the stage reads from (symbolic links resolved)."""
    o, p = out.resolve(), parent.resolve()
    how = "is" if o == p else "lies inside" if o.is_relative_to(p) else "contains" if p.is_relative_to(o) else None
    if how is not None:
        raise RunFolderError(
            f"--out {out} {how} the parent run {parent}; writing there would replace the model this stage "
            "starts from: choose another --out"
        )


_HELD: dict[str, OutputLock] = {}  # lock file -> the OutputLock this process holds on it


class OutputLock:
    """An exclusive lock on an output folder `out`, held by the process writing it for its whole life: an OS lock
    (flock) on `.NAME.lock` beside `out`, which the kernel releases when the process ends however it ends, so a
    crash never leaves a stale lock. The file holds the holder's pid and start time, for the refusal's message.
    Taken before anything is checked or deleted: a second process on the same --out, with or without --overwrite
    or --resume, is refused before it can touch the first one's folder."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"
        check_links(out)
        if not out.parent.is_dir():
            raise RunFolderError(f"{out.parent}: the folder for --out does not exist; create it first")
        key = str(self.path.resolve())
        if key in _HELD:  # this process's own earlier lock, not yet collected (an exception's frames hold it): ours
            _HELD[key].release()
        while True:
            with written(self.path):
                f = open(self.path, "a+")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().split()
                f.close()
                pid, since = (holder + ["?", "?"])[:2]
                raise RunFolderError(
                    f"{out} is being written by process {pid} (since {since}); wait for it or choose another --out"
                ) from None
            try:  # the holder before us may have removed the file after we opened it: then lock the new one
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {time.strftime('%H:%M:%S')}\n")
        f.flush()
        self._file, self._key = f, key
        _HELD[key] = self

    def release(self) -> None:
        """Remove the lock file, then unlock (in this order: a process that opened it meanwhile sees it is gone)."""
        if self._file is None:
            return
        if _HELD.get(self._key) is self:
            del _HELD[self._key]
        self.path.unlink(missing_ok=True)
        self._file.close()
        self._file = None


class RunWriter:
    """Writes a run folder atomically: everything goes to `.NAME.partial` beside `out`, then one rename.

    The partial folder also holds the checkpoints; it survives a failed or interrupted run that checkpointed
    (for `--resume`) and is removed when nothing worth keeping was written. An OutputLock, taken first, stops a
    second process from writing, replacing or resuming the same run.
    """

    main = True

    def __init__(self, out: Path, overwrite: bool, resume: bool = False):
        self._lock = OutputLock(out)  # first: every check below sees what the holder left, never its work
        try:
            self._open(out, overwrite, resume)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, out: Path, overwrite: bool, resume: bool) -> None:
        check_out(out, overwrite)
        self.out, self.overwrite, self.resume = out, overwrite, resume
        self.tmp = out.parent / f".{out.name}.partial"
        if self.tmp.exists() and not resume:
            if not overwrite:
                raise RunFolderError(
                    f"{self.tmp}: an interrupted run of {out} is there; add --resume to continue it, or "
                    "--overwrite to start again"
                )
            shutil.rmtree(self.tmp)
        if resume and not (self.tmp / CONFIG).exists():
            raise RunFolderError(f"{out}: nothing to resume (no {self.tmp.name} with a checkpoint); drop --resume")
        with written(self.tmp):
            self.tmp.mkdir(exist_ok=True)

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, obj) -> None:
        with written(self.tmp / name), open(self.tmp / name, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    def start(self, config: dict, fingerprints: list[str]) -> None:
        """Write the resolved config before training; on --resume, check config and inputs are the interrupted
        run's (a checkpoint only continues the run it came from)."""
        if self.resume:
            saved_inputs = json.loads((self.tmp / ".inputs.json").read_text(encoding="utf-8"))
            if saved_inputs != fingerprints:
                raise RunFolderError(f"{self.out}: --resume needs the interrupted run's inputs; the data has changed")
            saved = json.loads((self.tmp / CONFIG).read_text(encoding="utf-8"))
            changed = sorted(
                k for k in set(saved) | set(config) if saved.get(k) != config.get(k) and k not in RESUME_MAY_CHANGE
            )
            if changed:
                diffs = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
                raise RunFolderError(f"{self.out}: --resume needs the interrupted run's settings; changed: {diffs}")
        self.write_json(CONFIG, config)
        self.write_json(".inputs.json", fingerprints)

    def commit(self) -> Path:
        """Publish the folder by one rename; the checkpoints go after it, so a failed rename keeps them."""
        old = None
        with written(self.out):
            if self.out.exists():  # --overwrite: swap, then delete the old one only once the new one is in place
                old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
                os.replace(self.out, old)
            try:
                os.replace(self.tmp, self.out)
            except OSError:
                if old is not None:  # put the old run back where it was
                    os.replace(old, self.out)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for name in ("ckpt", "ckpt.new", "ckpt.old", ".inputs.json"):
            p = self.out / name
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        self._lock.release()
        return self.out

    def abort(self) -> bool:
        """Clean up after a failure; keep the folder if it holds a checkpoint. True when kept."""
        try:
            if find_checkpoint(self.tmp) is not None:
                return True
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        finally:
            self._lock.release()

    def discard(self) -> None:
        """Remove the partial folder whole, checkpoints too: nothing will resume it."""
        try:
            shutil.rmtree(self.tmp, ignore_errors=True)
        finally:
            self._lock.release()


class Discard(Exception):
    """Raised inside a stage to drop its run on purpose (`ulmfit tune` prunes a trial at an epoch end): the partial
    folder goes whole, checkpoint or not, and the stage says nothing of it."""


@dataclass(frozen=True)
class Caller:
    """What a stage knows of the command that runs it, handed down as an argument (`caller=`), never kept aside:
    the --config file the command read (the manifest records it: {"path", "sha256", "text", "stages"}), and the
    advice its messages give, which depends on the command. A stage run as its own command continues with --resume
    (`rerun`, stage_parts.writing after an interruption) and takes a lower --lr after a NaN loss (`lower_lr` None:
    loop.fit says so itself). A command that runs its stages in a work folder (workdir.Workdir.stage: pipeline,
    learning-curve) resumes them when simply rerun and has neither flag: its stage's settings come through the
    command's --lm-set/--clf-set, a change the folder refuses without --overwrite; there `lower_lr` is that advice,
    "{lr}" standing for the rate to try."""

    config_file: dict | None = None
    rerun: str = "rerun the same command with --resume"
    lower_lr: str | None = None
    # whether a run that failed (rather than was interrupted) keeps its checkpoint for a rerun: a tuning trial
    # that failed is not run again (its failure is its result in the study), so its folder goes
    keeps_failed: bool = True


ON_ITS_OWN = Caller()  # a stage run as its own command, without --config: every default


def find_checkpoint(folder: Path) -> Path | None:
    """The checkpoint in a partial run folder (`checkpoint.save` writes it), or None. It lives here, below
    `checkpoint`, because the writer decides by it whether a failed run's folder is worth keeping."""
    for name in ("ckpt", "ckpt.old"):
        if (folder / name / "position.json").exists():
            return folder / name
    return None


class Follower:
    """What a data-parallel process other than rank 0 holds instead of a RunWriter: it writes nothing, and reads
    what rank 0 writes (the tokenizer, checkpoints to resume from) in rank 0's partial folder."""

    main = False

    def __init__(self, out: Path, resume: bool = False):
        self.out, self.resume = out, resume
        self.tmp = out.parent / f".{out.name}.partial"

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, obj) -> None:
        pass

    def start(self, config: dict, fingerprints: list[str]) -> None:
        pass

    def commit(self) -> Path:
        return self.out

    def abort(self) -> bool:
        return False

    def discard(self) -> None:
        pass


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_model

    with written(path):
        save_model(model, str(path))  # handles the tied embedding/decoder weights


def load_weights(model, path: Path) -> None:
    """Load safetensors weights; anything else (a pickle, a zip from torch.save) is refused, never opened."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header. Its first byte can be 0x80 (a
    # header of 1408 bytes), so only a file that is not laid out so counts as a pickle (0x80) or a zip (PK).
    laid_out = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size
    if not laid_out and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise RunFolderError(
            f"{path}: is a pickle or torch.save archive, not safetensors; refusing to load it (it could run code)"
        )
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError) as e:
        raise RunFolderError(f"{path}: not a readable safetensors file ({e})") from None
    except RuntimeError as e:
        raise RunFolderError(
            f"{path}: weights do not fit the model in this run folder ({str(e).splitlines()[0]})"
        ) from None
    if missing or unexpected:
        raise RunFolderError(
            f"{path}: weights do not match the model (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]})"
        )


@dataclass
class Run:
    path: Path
    manifest: dict

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    def file(self, key: str) -> Path:
        """A file named in the manifest, resolved inside the folder; paths escaping it are refused."""
        name = self.manifest.get("files", {}).get(key)
        if not isinstance(name, str):
            raise RunFolderError(f"{self.path}: manifest names no {key} file; the run folder is incomplete")
        root = self.path.resolve()
        p = (root / name).resolve()
        if not p.is_relative_to(root) or p == root:
            raise RunFolderError(f"{self.path}: manifest points {key} outside the run folder ({name!r}); refusing")
        if not p.is_file():
            raise RunFolderError(f"{self.path}: {name} is missing; the run folder is incomplete")
        return p


# What a command may read of a manifest, by the run's kind: key -> the types its value may have. One schema in one
# place, checked when a run is opened (open_run), so that a hand-edited, copied or other-version manifest is one
# line, never a KeyError later. Keys a later version added are optional here (older runs lack them).
_NUMBER = (int, float)
TASKS = ("single-label", "multi-label", "regression")  # tasks.SINGLE, MULTI, REGRESSION (artifacts imports no tasks)
MANIFEST_SCHEMA: dict[str, dict[str, tuple]] = {
    "every run": {"stage": (str,), "complete": (bool,), "files": (dict,), "tokenizer_sha256": (str,),
                  "config": (dict,), "history": (list,)},
    "finetune-clf": {"classes": (list, type(None))},
}  # fmt: skip
OPTIONAL_SCHEMA: dict[str, tuple] = {
    "backbone": (str,), "task": (str,), "thresholds": (dict, type(None)), "target": (dict, type(None)),
    "parent": (dict, type(None)), "columns": (dict,), "plots": (dict,), "wall_s": (*_NUMBER, type(None)),
    "lm_head": (bool,), "distilled": (dict,),
}  # fmt: skip


def check_manifest(path: Path, m: dict) -> None:
    """Refuse a manifest that lacks a key its run's kind needs, or holds a value of the wrong type (exit 2)."""
    SINGLE, MULTI, REGRESSION = TASKS

    def damaged(why: str):
        return RunFolderError(f"{path}: {MANIFEST} is damaged or from another version: {why}")

    need = {**MANIFEST_SCHEMA["every run"], **MANIFEST_SCHEMA.get(str(m.get("stage")), {})}
    for key in need:
        if key not in m:
            raise damaged(f"missing {key!r}")
    for key, types in {**need, **OPTIONAL_SCHEMA}.items():
        if key in m and (not isinstance(m[key], types) or (isinstance(m[key], bool) and bool not in types)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise damaged(f"{key!r} is {type(m[key]).__name__}, not {names}")
    if m["stage"] != "finetune-clf":
        return
    task = m.get("task", SINGLE)
    if task not in (SINGLE, MULTI, REGRESSION):
        raise damaged(f"unknown task {task!r}")
    classes = m["classes"]
    if task != REGRESSION and (not classes or not all(isinstance(c, str) for c in classes)):
        raise damaged("'classes' must be a list of label names")
    target = m.get("target")
    if task == REGRESSION and not (
        isinstance(target, dict) and all(isinstance(target.get(k), _NUMBER) for k in ("mean", "std"))
    ):
        raise damaged("a regression run needs 'target' with numbers 'mean' and 'std'")


def open_run(path: Path, stages: tuple[str, ...], what: str) -> Run:
    """Open a parent or model run folder and check its kind, before any work is done."""
    if not path.exists():
        raise RunFolderError(f"{path}: no such run folder; give the --out of an earlier stage")
    if not path.is_dir():
        raise RunFolderError(f"{path}: is a file, not a run folder")
    mpath = path / MANIFEST
    if not mpath.exists():
        raise RunFolderError(f"{path}: no {MANIFEST}; not a run folder, or a run that did not finish")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{mpath}: not valid JSON ({e}); the run folder is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RunFolderError(f"{path}: not a {FORMAT} run folder")
    check_manifest(path, manifest)
    run = Run(path, manifest)
    if run.stage not in stages:
        raise RunFolderError(f"{path}: is a {run.stage} run, but {what} needs a {' or '.join(stages)} run")
    if not manifest.get("complete"):
        raise RunFolderError(f"{path}: the run did not complete; run that stage again")
    from ..data.tokenizer import file_sha256

    tok = run.file("tokenizer")
    if file_sha256(tok) != manifest.get("tokenizer_sha256"):
        raise RunFolderError(
            f"{path}: {tok.name} does not match the one this run was trained with; restore it or retrain"
        )
    run.file("weights")
    return run


def ensemble_members(path: Path) -> list[Path] | None:
    """The classifier run folders an ensemble folder (`ulmfit pipeline --both-directions`) names, inside it; None
    when `path` is not one."""
    f = path / ENSEMBLE
    if path.is_dir() and not (path / MANIFEST).exists() and f.is_file():
        try:
            spec = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunFolderError(f"{f}: not valid JSON ({e}); the ensemble folder is damaged") from None
        names = spec.get("runs") if isinstance(spec, dict) and spec.get("format") == ENSEMBLE_FORMAT else None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RunFolderError(f"{f}: not a {ENSEMBLE_FORMAT} file (a list of run folders under 'runs')")
        root = path.resolve()
        members = [(root / n).resolve() for n in names]
        if any(not m.is_relative_to(root) or m == root for m in members):
            raise RunFolderError(f"{f}: names a run outside the folder; refusing")
        return [path / n for n in names]
    return None


def describe(run: Run) -> dict:
    """What `ulmfit info` shows of a run folder opened with `open_run`: its manifest, organised for reading,
    with the chain of parent runs as they stand on disk now."""
    m, cfg = run.manifest, run.config
    sizes = {k: cfg.get(k) for k in ("emb_sz", "n_hid", "n_layers")}
    if m.get("backbone") == "transformer":
        sizes.update({k: cfg.get(k) for k in ("n_heads", "norm", "norm_position", "attention")})
    if m.get("backbone") == "hf" and isinstance(cfg.get("hf_config"), dict):  # the checkpoint's family and kind
        sizes = {"model_type": cfg["hf_config"].get("model_type"), **sizes, "groups": cfg.get("groups")}
    out = {
        "path": str(run.path),
        "stage": run.stage,
        "created": m.get("created"),
        "parents": parent_chain(m),
        "backbone": m.get("backbone"),
        "sizes": sizes,
        "tokenizer": {"kind": cfg.get("tokenizer"), "vocab_size": m.get("vocab_size")},
        "inputs": m.get("inputs", []),
    }
    out.update({k: m[k] for k in ("tokens", "classes", "init", "imported", "lm_head", "distilled") if k in m})
    out.update(
        epochs=len(m.get("history", [])),
        final=m.get("final", {}),
        **{k: m[k] for k in ("best_epoch", "best", "kept_epoch", "stopped_early", "selection") if k in m},
        wall_s=m.get("wall_s"),
        seed=m.get("seed"),
        versions=m.get("versions", {}),
        plots={k: str(run.path / name) for k, name in m.get("plots", {}).items()},
    )
    return out


def parent_chain(manifest: dict) -> list[dict]:
    """Each ancestor, nearest first, with its status now: ok (its weights are the ones this run started from),
    changed (replaced or retrained since), incomplete, or missing; the walk stops where the chain breaks."""
    from ..data.tokenizer import file_sha256

    chain, seen = [], set()
    rec = manifest.get("parent")
    while isinstance(rec, dict) and rec.get("path") not in seen:
        seen.add(rec.get("path"))
        path = Path(str(rec.get("path")))
        entry = {"path": str(path), "stage": rec.get("stage"), "status": "missing"}
        chain.append(entry)
        try:
            parent = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # gone, or no longer a run folder
            break
        try:
            same = file_sha256(Run(path, parent).file("weights")) == rec.get("weights_sha256")
        except (RunFolderError, AttributeError):
            entry["status"] = "incomplete"
            break
        entry["status"] = "ok" if same and parent.get("stage") == rec.get("stage") else "changed"
        rec = parent.get("parent")
    return chain


def versions() -> dict:
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("ulmfit-cli", "torch", "fastai", "tokenizers", "datasets", "safetensors"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
