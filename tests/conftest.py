"""Shared fixtures: the real CLI as a subprocess (`cli`) or in this process (`ulmfit`, where a process is not
the point), offline, one thread; one tiny three-stage pipeline per session.

Pinning torch to one thread matters on 2-core machines: a tiny epoch takes a fraction of a second with one
thread and many seconds with two fighting each other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp / "hf-cache"),
        ULMFIT_CACHE=str(tmp / "ulmfit-cache"),  # never the user's ~/.cache/ulmfit
        TOKENIZERS_PARALLELISM="false",
        COLUMNS="200",
    )
    return env


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def cli_env(cache_dir) -> dict:
    return _env(cache_dir)


@pytest.fixture(scope="session")
def cli(cache_dir):
    """cli(*args, stdin=None) -> CompletedProcess of `python -m ulmfit_cli ARGS` (text mode)."""

    def run(*args, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ulmfit_cli", *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=_env(cache_dir),
            cwd=cwd,
            timeout=600,
        )

    return run


@pytest.fixture(scope="session")
def ulmfit(cache_dir):
    """ulmfit(*args) -> CompletedProcess: the same command line as `cli`, run in this process (typer's CliRunner)
    with the same environment, for tests where a process is not the point: a fresh interpreter's imports (torch
    and fastai, several seconds) are paid once per worker instead of once per call. Exit code, stdout and stderr
    are the CLI's; an exception other than the CLI's own exit is a bug and is raised here, traceback and all.
    Not for stdin (the CLI reads fd 0 with os.read/select), signals or anything about the process itself."""
    import signal

    import torch
    from typer.testing import CliRunner

    from ulmfit_cli.cli.main import app

    def run(*args) -> subprocess.CompletedProcess:
        environ, term, threads = dict(os.environ), signal.getsignal(signal.SIGTERM), torch.get_num_threads()
        os.environ.update(_env(cache_dir))
        torch.set_num_threads(1)  # what OMP_NUM_THREADS=1 gives the subprocess; pytest's own default is every core
        try:
            r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
        finally:
            os.environ.clear()
            os.environ.update(environ)
            signal.signal(signal.SIGTERM, term)
            torch.set_num_threads(threads)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return subprocess.CompletedProcess(["ulmfit", *map(str, args)], r.exit_code, r.stdout, r.stderr)

    return run


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, ulmfit, worker_id) -> dict[str, Path]:
    """The three stages on sample_data with the tiny preset, once for the whole session: under pytest-xdist the
    first worker to need it builds it in the workers' shared temporary folder, holding a lock, and the others
    read it (tests only read and copy these runs; they write elsewhere). About a minute of CPU saved per worker."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    root = shared / "session-pipeline"
    runs = {"lm": root / "lm", "ft": root / "ft", "clf": root / "clf"}
    with FileLock(str(shared / "session-pipeline.lock")):
        if (root / "done").exists():
            return runs
        shutil.rmtree(root, ignore_errors=True)  # what a build that failed half-way left
        root.mkdir()
        steps = [
            ("pretrain", SAMPLE / "books.txt", "--out", runs["lm"]),
            ("finetune-lm", runs["lm"], SAMPLE / "trec_train.csv", "--out", runs["ft"]),
            ("finetune-clf", runs["ft"], SAMPLE / "trec_train.csv", "--out", runs["clf"]),
        ]
        for step in steps:
            r = ulmfit(*step, "--preset", "tiny", "--quiet")
            assert r.returncode == 0, f"{step[0]} failed: {r.stderr}"
        (root / "done").touch()
    return runs


def one_line_error(r, code, *fragments):
    """`r` failed with exit `code` and exactly one `ulmfit: error:` line on stderr holding every fragment."""
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("ulmfit: error:")]
    assert len(lines) == 1, r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def log_reporter():
    """A quiet Reporter that keeps its info lines (warnings as "warning: ...") in `.lines`, for asserting on them."""
    from ulmfit_cli.cli.report import Reporter

    class Log(Reporter):
        def __init__(self):
            super().__init__(quiet=True)
            self.lines: list[str] = []

        def info(self, msg):
            self.lines.append(msg)

        def warn(self, msg):
            self.lines.append("warning: " + msg)

    return Log()
