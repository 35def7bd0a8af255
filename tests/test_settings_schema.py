"""One declaration per setting (issue 36): a RunConfig field's metadata is the only place a setting is declared;
each command's typer options, its `--config` keys, `--print-config`, the validation message and the reference page
all come from it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from ulmfit_cli.cli.main import app
from ulmfit_cli.config import SETTING_COMMANDS, RunConfig, flag_of, settings_on

COMMANDS = typer.main.get_command(app).commands
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("target", SETTING_COMMANDS)
def test_each_command_offers_exactly_the_settings_declared_for_it(target):
    """The options typer builds for a command's settings are the declared ones, with the declared help and panel."""
    command, prefix = (target.split("/")[0], "lm_") if "/" in target else (target, "")
    params = {p.name: p for p in COMMANDS[command].params}
    declared = settings_on(target)
    assert declared, target
    for f in declared:
        p = params[prefix + f.name]
        flag = flag_of(f)
        assert p.help == flag.help_on(target)
        assert p.default is None  # not given: the preset decides
        if flag.decls:
            assert p.opts[0] == flag.decls[0].split("/")[0]
    # and no option of a setting's name that was not declared for it
    others = {prefix + f.name for f in dataclasses.fields(RunConfig) if flag_of(f) and f not in declared}
    assert not others & set(params) - {"preset"}, sorted(others & set(params))


def test_no_command_gathers_its_settings_from_its_locals():
    code = "\n".join(p.read_text() for p in (ROOT / "ulmfit_cli").rglob("*.py"))
    assert "flags(locals())" not in code


PROBE = r"""
import dataclasses, json, sys
from ulmfit_cli import config

@dataclasses.dataclass(frozen=True)
class Probed(config.RunConfig):
    probe_depth: int = config.setting(3, "How deep the probe goes.", ("pretrain", "finetune-clf"),
                                      rule=config.at_least(0))

config.RunConfig = Probed  # before the commands are built from the declarations
from typer.testing import CliRunner
from ulmfit_cli import configfile
from ulmfit_cli.cli import reference
from ulmfit_cli.cli.main import app

out = {}
r = CliRunner().invoke(app, ["finetune-clf", "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
out["help"] = r.output
r = CliRunner().invoke(app, ["pretrain", "--preset", "tiny", "--probe-depth", "5", "--print-config"])
out["print_config"] = r.output
r = CliRunner().invoke(app, ["pretrain", "--preset", "tiny", "--probe-depth", "-1", "--print-config"])
out["bad"] = [r.exit_code, r.output]
_, defaults = configfile.read(__import__("pathlib").Path(sys.argv[1]), "finetune-clf")
out["file"] = {k: v for k, v in defaults.items()}
out["reference"] = reference.render()
print(json.dumps(out))
"""


def test_a_field_declared_in_a_test_reaches_every_surface(tmp_path):
    """The rule of issue 36: a new setting is one declaration. A field added here (in a fresh interpreter, before
    the commands are built) is a flag of the commands named, a --config key, a --print-config line, a flag-named
    validation error and a row of the reference page, with nothing else edited."""
    toml = tmp_path / "c.toml"
    toml.write_text("probe_depth = 7\n")
    r = subprocess.run([sys.executable, "-c", PROBE, str(toml)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "--probe-depth" in out["help"] and "How deep the probe goes." in out["help"]
    assert "probe_depth = 5" in out["print_config"]
    code, text = out["bad"]
    assert code == 2 and "`--probe-depth` must be >= 0, got -1" in text
    assert out["file"] == {"probe_depth": 7}
    assert "`--probe-depth`" in out["reference"] and "How deep the probe goes." in out["reference"]
