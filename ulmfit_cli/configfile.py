"""`--config FILE`: a command's flags in a TOML file (spaCy's config.cfg, Ludwig's YAML), read through typer's
`default_map`, so a flag on the command line overrides the file and the file overrides the preset.

Keys are the flags' names (`drop_mult` or `drop-mult`). A command that runs several stages (`pipeline`,
`learning-curve`) takes the stages' settings from a table per stage (`[pretrain]`, `[finetune-lm]`,
`[finetune-clf]`), read as its `--pretrain-set/--lm-set/--clf-set` pairs are (the pairs on the command line win);
a one-stage command reads the top-level keys and its own stage's table, so one file can serve every command.
An unknown key, a key of the wrong type, or one of another stage is an error naming the file, the key and the
closest valid name, before any work. Paths in the file are read from the current directory, as on the command
line. The file's text and hash go into every run's manifest (`config_file`); `ulmfit info RUN --config` and
`--print-config` write a file that reproduces a run.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from pathlib import Path

STAGE_COMMANDS = ("pretrain", "finetune-lm", "finetune-clf")
MULTI_STAGE = {"pipeline": STAGE_COMMANDS, "learning-curve": ("finetune-lm", "finetune-clf")}
# one-off actions, not settings: they stay on the command line
NOT_IN_FILE = {"config", "help", "resume", "print_schedule", "print_config"}

COMMANDS: dict = {}  # command name: its function; the CLI registers them (cli/main.py), this module reads them

# Where `callback` leaves the file the command read, {"path", "sha256", "text", "stages": {stage: {field: value}}}:
# in the meta of the command's own click context, so it lives and dies with that one command (`loaded`)
META_KEY = "ulmfit.config_file"


def callback(ctx, param, value):
    """The `--config` option's eager callback: read and check the file, then hand its values to typer as
    defaults (`ctx.default_map`), which the command line overrides. Errors are usage errors: one line, exit 2,
    before any other parameter is read."""
    import typer

    ctx.meta[META_KEY] = None
    if value is None:
        return None
    try:
        record, defaults = read(Path(value), ctx.info_name)
    except ValueError as e:
        raise typer.BadParameter(str(e), ctx=ctx, param=param) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[META_KEY] = record
    return value


def loaded(ctx) -> dict | None:
    """The file the command of click context `ctx` read with --config (`callback`), or None."""
    return ctx.meta.get(META_KEY) if ctx is not None else None


def read(path: Path, command: str) -> tuple[dict, dict]:
    """(what the manifest records, the defaults for this command's own flags) from the file at `path`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: not a TOML file ({e})") from None
    params = options(command)
    siblings = {stage: settings_of(stage) for stage in STAGE_COMMANDS}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    top = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for name in tables:
        if _table(name) not in STAGE_COMMANDS:
            raise ValueError(
                f"{path}: unknown table [{name}]{_closest(_table(name), STAGE_COMMANDS, '[{}]')}; the tables are "
                + ", ".join(f"[{s}]" for s in STAGE_COMMANDS)
            )
    stages = {}
    if command in MULTI_STAGE:
        for name, table in tables.items():
            stage = _table(name)
            if stage not in MULTI_STAGE[command]:
                raise ValueError(f"{path}: `{command}` runs no {stage} stage; drop the [{name}] table")
            stages[stage] = _stage_values(path, name, table, siblings[stage], siblings, command)
    else:  # the command's own stage table, if any, on top of the top-level keys; other stages' tables are theirs
        for name, table in tables.items():
            if _table(name) == command:
                top = {**top, **{_key(k): v for k, v in table.items()}}
    defaults = {}
    for key, value in top.items():
        name = _key(key)
        where = f"{path}: `{key}`"
        if name not in params:
            raise ValueError(where + _not_here(name, command, params, siblings))
        defaults[name] = check(params[name], value, where)
    text = raw.decode("utf-8")
    record = {"path": str(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest(), "text": text}
    return {**record, "stages": stages}, defaults


class Spec:
    """What a command's option takes, from its annotation: the Python type of one value, whether it repeats,
    and typer's OptionInfo (its min and max)."""

    def __init__(self, kind: type, multiple: bool, info):
        self.kind, self.multiple, self.info = kind, multiple, info


def options(command: str) -> dict[str, Spec]:
    """{parameter name: Spec} of the options of `command` that a file may set (arguments stay on the command
    line), read from the command function's annotations (typer builds its options from the same)."""
    import types
    import typing

    import typer.models

    out = {}
    for name, hint in typing.get_type_hints(COMMANDS[command], include_extras=True).items():
        info = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, typer.models.ParameterInfo)), None)
        if name in NOT_IN_FILE or not isinstance(info, typer.models.OptionInfo):
            continue
        t, multiple = typing.get_args(hint)[0], False
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            t = next(a for a in typing.get_args(t) if a is not type(None))
        if typing.get_origin(t) is list:
            t, multiple = typing.get_args(t)[0], True
        out[name] = Spec(t, multiple, info)
    return out


def settings_of(stage: str) -> dict[str, Spec]:
    """The options of a stage's command that are its settings (RunConfig fields): what a [stage] table takes."""
    from .config import flags

    ps = options(stage)
    return {k: ps[k] for k in flags(ps)}


def _stage_values(path: Path, name: str, table: dict, params: dict, siblings: dict, command: str) -> dict:
    values = {}
    for key, value in table.items():
        k = _key(key)
        where = f"{path}: `{key}` in [{name}]"
        if k not in params:
            raise ValueError(where + _not_here(k, _table(name), params, siblings, command))
        values[k] = check(params[k], value, where)
    return values


def _not_here(name: str, where: str, params: dict, siblings: dict, command: str | None = None) -> str:
    """Why `name` is not a key of `where` (a command, or a stage table of the multi-stage `command`): another
    stage's setting, the multi-stage command's own option, or unknown (with the closest valid name)."""
    others = [s for s, ps in siblings.items() if name in ps and s != where]
    if command is not None:  # a [stage] table of pipeline / learning-curve
        if others:
            return f" is not a {where} setting; it is {_owners(others)}'s: move it to that table"
        return f" is not a {where} setting" + _closest(name, params)
    if where in MULTI_STAGE and others:
        return f" is a stage setting: put it under [{'], ['.join(s for s in MULTI_STAGE[where] if s in others)}]"
    if others:
        return (
            f" is a setting of {_owners(others)}, not of `{where}`; put it under [{others[0]}] (a one-stage command "
            f"reads the top-level keys and its own table [{where}])"
        )
    return f" is not a setting of `{where}`" + _closest(name, params)


def _owners(stages: list[str]) -> str:
    return " and ".join(stages)


def _closest(name: str, names, fmt: str = "`{}`") -> str:
    near = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(near[0])}?" if near else ""


def _key(key: str) -> str:
    return key.strip().lstrip("-").replace("-", "_")


def _table(name: str) -> str:
    return name.strip().replace("_", "-")


def check(spec: Spec, value, where: str):
    """`value` from the file as the option takes it, strictly: TOML's own types (an integer for a count, true or
    false for a switch, a string for a name or a path, a list for a repeatable flag), then the flag's min and max."""
    if spec.multiple:
        return [check_one(spec, v, where) for v in (value if isinstance(value, list) else [value])]
    if isinstance(value, list):
        raise ValueError(f"{where} takes one value, got a list")
    return check_one(spec, value, where)


def check_one(spec: Spec, value, where: str):
    t = spec.kind
    if t is bool:
        want, ok = "true or false", isinstance(value, bool)
    elif t is int:
        want, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif t is float:
        want = "a number"
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    else:
        want, ok = "a string", isinstance(value, str)
    if not ok:
        raise ValueError(f"{where} must be {want}, got {json.dumps(value, default=str)}")
    lo, hi = getattr(spec.info, "min", None), getattr(spec.info, "max", None)
    if t in (int, float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        bounds = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{where} must be {bounds}, got {value}")
    return float(value) if t is float else Path(value) if t is Path else value


def stage_settings(stage: str, file: dict | None) -> dict:
    """The settings of `stage` from a loaded file's [stage] table (a multi-stage command), as RunConfig fields."""
    return dict(file["stages"].get(stage, {})) if file else {}


def manifest_record(file: dict | None) -> dict:
    """The manifest's record of the file a run was configured from: {"config_file": {path, sha256, text}}."""
    return {"config_file": {k: file[k] for k in ("path", "sha256", "text")}} if file else {}


# ---- writing a config file -----------------------------------------------------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v), ensure_ascii=False)


def render(stage: str, cfg, header: list[str], more: dict | None = None) -> str:
    """A TOML file that gives the stage's command the resolved `cfg`: every setting the command
    takes, explicitly (so a later change of a preset's defaults cannot change the run), plus `more` (data options
    such as text_col)."""
    from .config import ARCH_FIELDS, flags

    params = options(stage)
    values = cfg.to_dict()
    lines = [f"# {h}" for h in header]
    lines.append(f"preset = {toml_value(values['preset'])}")
    for name in sorted(flags(params)):
        v = values.get(name)
        if v is None or (stage != "pretrain" and name in ARCH_FIELDS):  # later stages inherit the architecture
            continue
        lines.append(f"{name} = {toml_value(v)}")
    for name, v in (more or {}).items():
        if name in params and v is not None:
            lines.append(f"{name} = {toml_value(v)}")
    return "\n".join(lines) + "\n"
