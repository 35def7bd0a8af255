"""`--help` is part of the front door (issue 29, part 6): every command's help, as rendered, says what its
docstring and each option's help say, intact (rich markup once ate "[export]" out of "pip install
'ulmfit-cli[export]'"), and arguments show as the capitalised names users expect (RUN, TRAIN)."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from ulmfit_cli.cli.main import app, reflow

COMMANDS = typer.main.get_command(app).commands
BOX = re.compile(r"[│╭╮╰╯─]")


def flat(text: str) -> str:
    """Text as the screen shows it, whatever the wrapping: box borders dropped, whitespace collapsed, and the
    markdown code marks (backticks) that the help renders as styled text removed."""
    return " ".join(BOX.sub(" ", text.replace("`", "")).split())


def rendered(name: str) -> str:
    r = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return flat(r.output)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_help_text_reaches_the_screen_intact(name):
    shown, command = rendered(name), COMMANDS[name]
    doc = reflow(command.help)
    for paragraph in doc.split("\n\n"):
        assert flat(paragraph) in shown, (name, paragraph)
    for p in command.params:
        text = getattr(p, "help", None)
        if text:
            assert flat(text) in shown, (name, p.name, text)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_arguments_show_as_capitalised_names(name):
    shown = rendered(name)
    for p in COMMANDS[name].params:
        if type(p).__name__ == "TyperArgument":
            assert p.name.upper() in shown.split("Usage:")[1].split("Options")[0], (name, p.name)
            assert re.search(rf"[{{\[]{p.name}[}}\]]", shown) is None, f"{name}: argument shown as {{{p.name}}}"


def test_bracketed_install_hints_survive():
    assert "pip install 'ulmfit-cli[export]'" in rendered("export")
    assert "[default: auto]" in rendered("finetune-clf")


@pytest.mark.parametrize("name", [None, *sorted(COMMANDS)])
def test_usage_names_arguments_plainly_and_switches_show_no_type(name):
    """`Usage: ulmfit predict [OPTIONS] RUN [INPUT]` (typer 0.29 writes a required argument as {RUN}), and a switch
    such as --json or --help shows no `<bool>` beside it."""
    r = CliRunner().invoke(app, [*([name] if name else []), "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    usage = next(line for line in r.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    assert "<bool>" not in r.output
    if name:
        for p in COMMANDS[name].params:
            if p.param_type_name == "argument":
                shown = p.metavar or p.name.upper()
                shown = (shown if p.required else f"[{shown}]") + ("..." if p.nargs != 1 else "")
                assert f" {shown}" in usage, (usage, p.name)


def test_export_takes_quiet_as_the_training_commands_do():
    for name in ("export", "pretrain", "finetune-clf", "import-hf"):
        assert any(p.opts == ["--quiet", "-q"] for p in COMMANDS[name].params), name
