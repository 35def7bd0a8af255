"""Writing results can fail: stdout on a full device (/dev/full), or closed (`>&-`). Every command then says so
in one line and exits 1 (issue 27, case 3); a closed pipe stays silent. Real processes: the file descriptors are
the point."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SAMPLE, _env

COMMANDS = {
    "predict": lambda p: ["predict", p["clf"], SAMPLE / "trec_test.csv"],
    "evaluate --json": lambda p: ["evaluate", p["clf"], SAMPLE / "trec_test.csv", "--json"],
    "info": lambda p: ["info", p["clf"]],
    "info --json": lambda p: ["info", p["clf"], "--json"],
    "--help": lambda p: ["predict", "--help"],
    "inspect --json": lambda p: ["inspect", SAMPLE / "trec_test.csv", "--json"],
}


def _run(args, cache_dir, stdout):
    return subprocess.run(
        [sys.executable, "-m", "ulmfit_cli", *map(str, args)],
        stdout=stdout, stderr=subprocess.PIPE, text=True, env=_env(cache_dir), timeout=300,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("where", ["full", "closed"])
def test_a_failed_output_is_one_line_and_exit_1(pipeline, cache_dir, name, where):
    args = COMMANDS[name](pipeline)
    if where == "full":
        with open("/dev/full", "w") as full:
            r = _run(args, cache_dir, full)
    else:  # the child starts with fd 1 closed, as `>&-` does
        r = subprocess.run(
            ["bash", "-c", 'exec "$@" >&-', "_", sys.executable, "-m", "ulmfit_cli", *map(str, args)],
            stderr=subprocess.PIPE, text=True, env=_env(cache_dir), timeout=300,
        )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("ulmfit: error:")]
    assert len(errors) == 1 and "could not write the output" in errors[0], r.stderr
