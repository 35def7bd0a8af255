"""The Optuna side of `ulmfit tune`: the storage `--storage` names, the study (created, or joined by a worker with
the same settings and data), its sampler and pruner, Optuna's logging routed to the command's reporter, and what a
study holds (for the summary and `ulmfit info`).

Several workers share one study through its storage: an RDB (SQLite on one machine, PostgreSQL or MySQL across
machines), whose heartbeat lets a worker that was killed mid-trial be noticed and its trial retried, or Optuna's
journal file on a shared file system (no heartbeat: a killed worker's trial stays running in the study).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import re
import secrets
import time
import warnings
from pathlib import Path

from ..errors import ConfigError

STUDY_DB = "study.db"  # the storage when --storage is not given: SQLite in the tune folder
KEY_ATTR = "ulmfit_tune"  # the study's user attribute that records what its trials train and are scored by
MAX_RETRY = 2  # a trial whose worker died is run again at most this many times (it may be what kills them)
SQLITE_WAIT_S = 60  # how long a worker waits for another's write to an SQLite file before failing
# tries to open a database storage: the first workers on a new database race to create Optuna's tables, and all
# but one fail once (PostgreSQL: a duplicate key), then find them made
OPEN_TRIES = 4


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def shown_url(url: str | None, out: Path) -> str:
    """The storage as recorded and shown: a database URL with its password hidden, or the journal file's path."""
    if url is None:
        return default_url(out)
    if "://" not in url:  # a journal file
        if Path(url).suffix in (".db", ".sqlite", ".sqlite3"):
            raise ConfigError(
                f"`--storage {url}`: an SQLite file is given as sqlite:///{url}; a plain path is a journal file "
                "(Optuna's, for workers on a shared file system), e.g. study.log"
            )
        return str(Path(url).resolve())
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"`--storage {url}`: not a database URL such as sqlite:///study.db") from None
    return parsed.render_as_string(hide_password=bool(parsed.password))


def open_storage(url: str | None, out: Path, heartbeat: int):
    """(the Optuna storage that `url` names, the URL as recorded: a password hidden). No URL: SQLite in `out`."""
    url = url or default_url(out)
    if "://" not in url:
        return _journal(url)
    import optuna
    import sqlalchemy.exc

    shown = shown_url(url, out)
    sqlite = url.startswith("sqlite")
    hook = "heartbeat_stale_trial_callback"  # Optuna 4.9 renamed failed_trial_callback so
    if hook not in inspect.signature(optuna.storages.RDBStorage).parameters:
        hook = "failed_trial_callback"
    for attempt in range(OPEN_TRIES):
        try:
            with quiet_optuna():
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"connect_args": {"timeout": SQLITE_WAIT_S}} if sqlite else None,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    **{hook: _retry_callback()},
                )
            return storage, shown
        except ImportError as e:  # the database's driver (psycopg, pymysql) is not installed
            raise ConfigError(
                f"`--storage {shown}`: the database driver is not installed ({e}); install it (for PostgreSQL: pip "
                "install psycopg[binary], then a URL postgresql+psycopg://...)"
            ) from None
        except sqlalchemy.exc.DatabaseError as e:  # also two workers creating a new database's tables at once
            if attempt + 1 == OPEN_TRIES:
                raise ConfigError(f"`--storage {shown}`: cannot open it ({_first_line(e)})") from None
            time.sleep(0.2 + 0.3 * random.random() * (attempt + 1))
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise ConfigError(f"`--storage {shown}`: cannot open it ({_first_line(e)})") from None


def _journal(path_text: str):
    import optuna.storages.journal as journal

    path = Path(path_text)
    if not path.parent.is_dir():
        raise ConfigError(f"`--storage {path_text}`: the folder {path.parent} does not exist; create it first")
    try:
        with quiet_optuna():
            return journal.JournalStorage(journal.JournalFileBackend(str(path))), str(path)
    except OSError as e:
        raise ConfigError(f"`--storage {path_text}`: cannot open it ({e.strerror or e})") from None


def _retry_callback():
    """Optuna's callback that queues a failed trial again (its settings, and the epochs it reported, so a pruner
    judges the retry as it judged the original), at most MAX_RETRY times."""
    import optuna.storages as s

    cls = getattr(s, "RetryHeartbeatStaleTrialCallback", None) or s.RetryFailedTrialCallback  # before Optuna 4.9
    return cls(max_retry=MAX_RETRY, inherit_intermediate_values=True)


def retry(study, trial) -> None:
    """Queue `trial` (a FrozenTrial that failed) to run again, as the heartbeat does for a killed worker's."""
    with quiet_optuna():
        _retry_callback()(study, trial)


def open_study(storage, shown: str, name: str, key: dict, overwrite: bool):
    """(the study `name` in `storage`, whether this worker created it). A study another worker started is joined
    when it records the same `key` (what the trials train, on what, scored how); otherwise a one-line error."""
    import optuna

    with quiet_optuna():
        if overwrite:
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=name, storage=storage)
        created = False
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            try:
                study = optuna.create_study(storage=storage, study_name=name, direction=key["direction"])
                created = True
            except optuna.exceptions.DuplicatedStudyError:  # another worker created it first
                study = optuna.load_study(study_name=name, storage=storage)
        saved = study.user_attrs.get(KEY_ATTR)
        if saved is None and study.get_trials(deepcopy=False):
            raise ConfigError(f"study {name!r} in {shown} was not started by `ulmfit tune`; give another --study")
        if saved is None:  # just created (here or by a worker that has not recorded it yet)
            study.set_user_attr(KEY_ATTR, key)
            saved = study.user_attrs.get(KEY_ATTR)
    if saved != key:
        changed = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
        raise ConfigError(
            f"study {name!r} in {shown} was started with other settings or data (changed: {', '.join(changed)}); "
            "give another --study, or add --overwrite to delete it and start again"
        )
    return study, created


def sampler(name: str, seed: int, grid: dict[str, list] | None = None):
    """Optuna's sampler `name`; `grid` (space.grid) is the values GridSampler combines. Its workers each take a
    combination no trial of the study has run or is running, and the study stops when none is left."""
    import optuna

    with quiet_optuna():
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            return optuna.samplers.GridSampler(grid, seed=seed)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)  # the liar: workers spread their draws


def sampler_seed(seed: int, created: bool, name: str) -> int:
    """The study's creator draws from --seed, so one worker's study repeats; a worker that joins draws from a seed
    of its own, else two workers started together would try the same settings in the same order. A grid's workers
    all take --seed: GridSampler numbers the combinations in an order its seed shuffles, and the study records
    which numbers were tried."""
    return seed if created or name == "grid" else secrets.randbits(32)


def pruner(name: str, trials: int):
    """median: a trial whose best validation score so far is worse than the median of earlier trials at the same
    epoch stops there; the first quarter of the trials (1 to 5) always run whole, to give the median something to
    be. halving: successive halving (Jamieson & Talwalkar 2016) over epochs, a third going on at each rung."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, trials // 4)), n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def finished_states() -> tuple:
    """The states `--trials` counts: complete and pruned (a failed trial is retried or tells of a problem)."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def grid_taken(study, size: int) -> bool:
    """Whether each of a --sampler grid study's `size` combinations has a trial that ran it or runs it now. A worker
    then stops: GridSampler would give its next trial a combination another worker is running."""
    from optuna.trial import TrialState

    states = (*finished_states(), TrialState.FAIL, TrialState.RUNNING)
    return (
        len({t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False, states=states)} - {None}) >= size
    )


def finished(study) -> int:
    return len(study.get_trials(deepcopy=False, states=finished_states()))


def counts(study) -> dict:
    """{complete, pruned, failed, running, waiting}: how many of the study's trials are in each state."""
    from optuna.trial import TrialState

    names = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
             TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}  # fmt: skip
    out = dict.fromkeys(names.values(), 0)
    for t in study.get_trials(deepcopy=False):
        out[names[t.state]] += 1
    return out


def best(study):
    """The best complete trial, or None."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


@contextlib.contextmanager
def quiet_optuna(warn=None):
    """Optuna's own messages off for the body (its per-trial lines, its experimental-feature warnings and those its
    code raises): the command's table is the progress. Its logged warnings go to `warn` (one line each) when given,
    less the failed-trial ones (the table shows each failure, with its reason). Everything is put back afterwards,
    so a second command in the same process starts as the first did."""
    import optuna

    verbosity = optuna.logging.get_verbosity()  # first: it gives Optuna's logger its handler, the first time
    logger = logging.getLogger("optuna")
    handlers = logger.handlers[:]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for h in handlers:  # Optuna's own handler (on stderr) among them
        logger.removeHandler(h)
    logger.addHandler(_ToReporter(warn) if warn is not None else logging.NullHandler())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", module=r"optuna(\.|$)")  # raised by its code (importances on few trials)
            yield
    finally:
        logger.handlers[:] = handlers
        optuna.logging.set_verbosity(verbosity)


class _ToReporter(logging.Handler):
    SKIP = re.compile(r"^Trial \d+ failed|is already reported")  # the table shows failures; a resumed epoch

    def __init__(self, warn):
        super().__init__(logging.WARNING)
        self.warn = warn

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if not self.SKIP.search(msg):
            self.warn(f"optuna: {_first_line(msg)}")


def _first_line(e) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
