"""`ulmfit tune`'s search space: a TOML table per setting searched, checked against the settings' declarations
(config.RunConfig) before any work, and the default space of each backbone family (PRESETS).

    [lr]                      # a rate: low and high, on a log scale
    low = 1e-4
    high = 1e-2
    log = true

    [epochs]                  # a count: low and high (and a step, if wanted)
    low = 2
    high = 6

    [gradual_unfreezing]      # a switch or a name: its choices
    choices = [true, false]

A setting's type is its declaration's: an int is drawn with Optuna's suggest_int, a float with suggest_float, a
switch or a name with suggest_categorical (a number may take choices too). Every problem is one line naming the
file, the table and what to do, found before anything is trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass

from ..config import ARCH_FIELDS, RunConfig, flag_of, settings_on
from ..errors import ConfigError

KEYS = ("low", "high", "log", "step", "choices")
STAGES = ("finetune-clf", "finetune-lm")
HOW_IT_RUNS = "is how a trial runs, not what it learns: give it as `--{flag}`"
# settings a space may not search, and why: each is given once for every trial, as a flag
NOT_SEARCHED = {
    "device": HOW_IT_RUNS,
    "precision": HOW_IT_RUNS,
    "compile": HOW_IT_RUNS,
    "seed": "would be searched for luck: every trial trains from `--{flag}`, so that trials differ by their settings",
    "metric": "is what the trials are scored by: give it as `--{flag}`",
    "keep": "decides which epoch is scored: give it as `--{flag}`",
    "valid_pct": "decides which rows score the trials: give it as `--{flag}` (or give --valid)",
    "regression": "defines the task: give it as `--{flag}`",
    "label_delim": "defines the task: give it as `--{flag}`",
    **{name: "comes from the parent run, which every trial starts from" for name in ARCH_FIELDS},
}


@dataclass(frozen=True)
class Dimension:
    """One setting searched: a range (low, high; log, step) or a list of choices."""

    name: str
    kind: type  # the setting's declared type: int, float, bool or str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial):
        """The trial's value of this setting (an Optuna trial: its suggest_* keeps the draw in the study)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def table(self) -> dict:
        """The TOML table that declares it (what `--print-space` writes and the study records)."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        return {**out, **({"log": True} if self.log else {}), **({"step": self.step} if self.step else {})}


def suggest(trial, space: list[Dimension]) -> dict:
    return {d.name: d.suggest(trial) for d in space}


def parse_file(path, stage: str, fixed: set[str]) -> list[Dimension]:
    """The space in the TOML file at `path` for `stage`; a setting in `fixed` (given as a flag) is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"`--space` {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    space = parse(text, str(path), stage)
    both = [d.name for d in space if d.name in fixed]
    if both:
        flag = _flag(both[0])
        raise ConfigError(f"{path}: [{both[0]}] is searched but `{flag}` fixes it: drop one of the two")
    return space


def preset(name: str, stage: str, fixed: set[str], lr_scale: float = 1.0) -> list[Dimension]:
    """The default space of backbone family `name` for `stage`, less the settings given as flags (they are fixed).
    `lr_scale` moves the rate's range with the rate the run defaults to (a LoRA classifier's is 5x: config.py)."""
    if name not in PRESETS:
        raise ConfigError(f"`--space-preset` must be one of {', '.join(PRESETS)}, got {name!r}")
    space = [d for d in tables(PRESETS[name][stage], f"--space-preset {name}", stage) if d.name not in fixed]
    space = [
        dataclasses.replace(d, low=d.low * lr_scale, high=d.high * lr_scale) if d.name == "lr" else d for d in space
    ]
    if not space:
        raise ConfigError(f"`--space-preset {name}`: every setting it searches is fixed by a flag; nothing is left")
    return space


def parse(text: str, where: str, stage: str) -> list[Dimension]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not a TOML file ({e})") from None
    return tables(data, where, stage)


def tables(data: dict, where: str, stage: str) -> list[Dimension]:
    """The space of a --space file's tables (as TOML reads them), for `stage`."""
    if not data:
        raise ConfigError(f"{where}: searches nothing; give a table per setting, e.g. [lr] with low and high")
    return [_dimension(where, key, table, stage) for key, table in data.items()]


def render(space: list[Dimension], header: list[str] = ()) -> str:
    """The space as a file `--space` takes."""
    from ..configfile import toml_value

    lines = [f"# {h}" for h in header]
    for d in space:
        lines += ["", f"[{d.name}]", *(f"{k} = {toml_value(v)}" for k, v in d.table().items())]
    return "\n".join(lines).lstrip("\n") + "\n"


def grid(space: list[Dimension], where: str) -> dict[str, list]:
    """Every value of each setting, for `--sampler grid` (Optuna's GridSampler tries every combination once): a
    setting's choices, or every count of an int range; a float range has no list of values to try."""
    out = {}
    for d in space:
        if d.choices is not None:
            out[d.name] = list(d.choices)
        elif d.kind is int:
            out[d.name] = list(range(int(d.low), int(d.high) + 1, int(d.step or 1)))
        else:
            raise ConfigError(
                f"{where}: `--sampler grid` tries every combination of listed values, and [{d.name}] is a range "
                f"({d.low:g} to {d.high:g}); give it choices, e.g. choices = [{d.low:g}, {d.high:g}]"
            )
    return out


def summary(space: list[Dimension]) -> str:
    """One line of what a space searches, as the tune guide lists the default spaces."""
    from ..configfile import toml_value

    def one(d: Dimension) -> str:
        if d.choices is not None:
            return f"{d.name} " + " or ".join(toml_value(c) for c in d.choices)
        return f"{d.name} {d.low:g} to {d.high:g}" + (" (log)" if d.log else "")

    return ", ".join(map(one, space))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _types() -> dict[str, type]:
    """Each setting's type as declared (an optional one's inner type)."""
    out = {}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = args[0] if args else hint
    return out


def _dimension(where: str, key: str, table, stage: str) -> Dimension:
    name = key.strip().replace("-", "_")
    _check_name(where, key, name, stage)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: `{key}` must be a table ([{key}] with low and high, or choices)")
    at = f"{where}: [{key}]"
    for k in table:
        if k not in KEYS:
            near = difflib.get_close_matches(k, KEYS, n=1)
            raise ConfigError(f"{at} has no key `{k}`" + (f"; did you mean `{near[0]}`?" if near else "") +
                              f" (the keys: {', '.join(KEYS)})")  # fmt: skip
    kind = _types()[name]
    rule = flag_of(next(f for f in dataclasses.fields(RunConfig) if f.name == name)).rule
    if "choices" in table:
        if set(table) - {"choices"}:
            raise ConfigError(f"{at}: give choices or a range (low, high), not both")
        choices = table["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list, got {_shown(choices)}")
        for v in choices:
            _check_value(at, name, "a choice", v, kind, rule)
        return Dimension(name, kind, choices=tuple(choices))
    if kind in (bool, str):
        example = "[true, false]" if kind is bool else '["a", "b"]'
        raise ConfigError(f"{at}: a {'switch' if kind is bool else 'name'} takes choices, e.g. choices = {example}")
    if "low" not in table or "high" not in table:
        raise ConfigError(f"{at}: give both low and high (or choices)")
    low, high = (_check_value(at, name, k, table[k], kind, rule) for k in ("low", "high"))
    log, step = table.get("log", False), table.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {_shown(log)}")
    if low > high:
        raise ConfigError(f"{at}: low {low:g} is above high {high:g}")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log range must lie above 0, got low {low:g}; give low > 0 or log = false")
    if step is not None:
        step = _check_value(at, name, "step", step, kind, None)
        if step <= 0 or log:
            raise ConfigError(f"{at}: step must be above 0, and a log range takes none")
    return Dimension(name, kind, low, high, log, step)


def _check_name(where: str, key: str, name: str, stage: str) -> None:
    ours = {f.name for f in settings_on(stage)}
    if name in NOT_SEARCHED and (name in ours or name in ARCH_FIELDS):
        raise ConfigError(f"{where}: `{key}` {NOT_SEARCHED[name].format(flag=_flag(name)[2:])}")
    if name in ours:
        return
    other = next((s for s in STAGES if s != stage and name in {f.name for f in settings_on(s)}), None)
    if other is not None:
        raise ConfigError(f"{where}: `{key}` is a {other} setting; the trials train {stage} (--stage)")
    searchable = sorted(ours - set(NOT_SEARCHED))
    near = difflib.get_close_matches(name, searchable, n=1, cutoff=0.6)
    hint = f"; did you mean `{near[0]}`?" if near else f"; the settings of {stage}: `ulmfit {stage} --help`"
    raise ConfigError(f"{where}: `{key}` is not a {stage} setting{hint}")


def _check_value(at: str, name: str, what: str, v, kind: type, rule):
    """`v` as a value of a setting of type `kind`, as strictly as a --config file's (an integer for a count, a
    number for a rate, true or false for a switch), and within the setting's declared rule."""
    from ..configfile import Spec, check_one

    try:
        v = check_one(Spec(kind, False, None), v, f"{at}: {what}")
    except ValueError as e:
        raise ConfigError(f"{e} (`{_flag(name)}` takes one)") from None
    if rule is not None and not rule.ok(v):
        raise ConfigError(f"{at}: {what} {_shown(v)}: `{_flag(name)}` must be {rule.text}")
    return v


def _shown(v) -> str:
    import json

    return json.dumps(v, default=str)


# The default space of each backbone family (`--space-preset`, chosen from the parent's backbone by default), per
# stage, as the tables of a --space file: the settings that matter most per task, over ranges usual for the family.
# The AWD-LSTM's classifier rates lie around the presets' 1e-2 to 4e-2 (the paper's 1e-2); the own transformer's a
# few times lower; a pretrained checkpoint's are those of fine-tuning pretrained transformers (1e-5 to 5e-4), its
# fresh head up to 20x faster (its preset: 5x).
def _range(name: str, low: float, high: float, log: bool = False) -> dict:
    return {name: {"low": low, "high": high, **({"log": True} if log else {})}}


_DROPOUT = _range("drop_mult", 0.1, 1.0)
_UNFREEZE = {"gradual_unfreezing": {"choices": [True, False]}}
_CLF = {**_DROPOUT, **_range("epochs", 4, 20), **_UNFREEZE, **_range("lr_factor", 1.5, 4.0)}
_LM = {**_DROPOUT, **_range("epochs", 1, 10), **_range("lr_factor", 1.0, 4.0)}
PRESETS: dict[str, dict[str, dict]] = {
    "awd-lstm": {"finetune-clf": {**_range("lr", 1e-3, 1e-1, log=True), **_CLF},
                 "finetune-lm": {**_range("lr", 1e-3, 3e-2, log=True), **_LM}},
    "transformer": {"finetune-clf": {**_range("lr", 3e-4, 3e-2, log=True), **_CLF,
                                     **_range("head_lr_mult", 1.0, 10.0, log=True)},
                    "finetune-lm": {**_range("lr", 1e-4, 1e-2, log=True), **_LM}},
    "hf": {"finetune-clf": {**_range("lr", 1e-5, 5e-4, log=True), **_range("head_lr_mult", 1.0, 20.0, log=True),
                            **_range("epochs", 2, 10), **_UNFREEZE, **_range("lr_factor", 1.0, 2.6),
                            **_range("drop_mult", 0.25, 1.5)},
           "finetune-lm": {**_range("lr", 1e-5, 5e-4, log=True), **_range("epochs", 1, 3),
                           **_range("lr_factor", 1.0, 2.6)}},
}  # fmt: skip
