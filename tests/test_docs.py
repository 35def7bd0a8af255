"""The documentation site (mkdocs.yml, docs/): the command reference is the CLI's own, the site builds with no
warning, and every page is linked and every link lands."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from ulmfit_cli.cli.main import app
from ulmfit_cli.cli.reference import render

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
REGENERATE = "python -m ulmfit_cli.cli.reference > docs/reference.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
FENCE = re.compile(r"^( *)```.*?^\1```", re.S | re.M)
COMMAND_LINE = re.compile(r"\bulmfit((?:\s+--\S+)*)\s+([a-z][a-z-]*)(.*)")  # ulmfit [--debug] COMMAND ARGS


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def links(page: Path) -> list[str]:
    """The targets of the Markdown links of `page`, code blocks and inline code left out."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith(("#", "/"))


def test_the_reference_is_generated_from_the_cli():
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        f"docs/reference.md is not what the CLI says now (a flag or a help text changed): run `{REGENERATE}`"
    )


def test_every_command_and_flag_is_in_the_reference():
    text = REFERENCE.read_text(encoding="utf-8")
    group = typer.main.get_command(app)
    assert len(group.commands) >= 13
    missing = []
    for name, command in [("", group), *group.commands.items()]:
        if name and f"## ulmfit {name}\n" not in text:
            missing.append(f"command {name}")
        for param in command.params:
            for flag in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if flag.startswith("-") and f"`{flag}`" not in text:
                    missing.append(f"{name or 'ulmfit'} {flag}")
    assert not missing, f"not in docs/reference.md: {', '.join(missing)}; run `{REGENERATE}`"


def test_the_reference_module_runs_as_a_script():
    out = subprocess.run(
        [sys.executable, "-m", "ulmfit_cli.cli.reference"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out == render()


def test_the_cli_does_not_import_the_reference():
    code = "import sys, ulmfit_cli.cli.main; print('ulmfit_cli.cli.reference' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "cli/main.py must not import cli/reference.py: `ulmfit --help` stays fast"


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    # no -q: mkdocs counts warnings for --strict only where they are logged
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "index.html").is_file()
    assert (site / "reference" / "index.html").is_file()


def test_every_guide_is_linked_from_the_home_page():
    linked = {(DOCS / t.split("#")[0]).resolve() for t in links(DOCS / "index.md") if relative(t)}
    guides = sorted((DOCS / "guides").glob("*.md"))
    assert len(guides) >= 9
    assert [g.name for g in guides if g.resolve() not in linked] == []


def test_every_relative_link_lands_on_a_file():
    broken = []
    for page in pages():
        for target in links(page):
            path = target.split("#")[0]
            if relative(target) and path and not (page.parent / path).is_file():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []


def commands_in(page: Path) -> list[str]:
    """Each `ulmfit ...` command line of `page`'s code blocks and inline code, cut at a pipe, `&&`, `;` or comment."""
    text = page.read_text(encoding="utf-8")
    code = [m.group(0) for m in FENCE.finditer(text)] + re.findall(r"`(ulmfit [^`\n]*)`", text)
    found = []
    for block in code:
        for line in block.replace("\\\n", " ").splitlines():
            found += [part.split("#")[0] for part in re.split(r"\||&&|;|\$\(|<\(", line) if "ulmfit" in part]
    return found


def test_the_guides_use_only_real_commands_and_flags():
    group = typer.main.get_command(app)
    flags = {
        name: {f for p in command.params for f in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}
        for name, command in group.commands.items()
    }
    global_flags = {f for p in group.params for f in p.opts}
    wrong = []
    for page in pages():
        if page == REFERENCE:
            continue
        for line in commands_in(page):
            m = COMMAND_LINE.search(line)
            if m is None:
                continue
            before, name, rest = m.groups()
            if name not in flags:
                wrong.append(f"{page.name}: no command {name!r}: {line.strip()}")
                continue
            wrong += [f"{page.name}: {f}" for f in re.findall(r"--[\w-]+", before) if f not in global_flags]
            used = re.findall(r"(?<!\S)(--?[A-Za-z][\w-]*)", rest)
            wrong += [f"{page.name}: ulmfit {name} {f}" for f in used if f not in flags[name]]
    assert wrong == []


def test_the_link_reader_sees_links():
    page = DOCS / "index.md"
    assert "guides/classify-your-csv.md" in links(page)
    assert relative("../concepts/recipe.md#gradual-unfreezing")
    assert not relative("https://arxiv.org/abs/1801.06146")
