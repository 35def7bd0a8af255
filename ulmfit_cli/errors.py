"""Every user-facing failure is a UlmfitError: one line, and an exit code that means something.

Exit codes (design.md): 0 success; 2 bad invocation or bad input found before training starts;
1 a run that started and failed; 130 interrupted.
"""


class UlmfitError(Exception):
    """A failure the user can act on. `str(err)` is the one line printed on stderr."""

    exit_code = 2


class InputError(UlmfitError):
    """A data file, column or label problem found before any training step."""


class ConfigError(UlmfitError):
    """A flag out of range or a combination of flags that cannot work."""


class RunFolderError(UlmfitError):
    """A run folder that is missing, of the wrong stage, incomplete, or unsafe to load."""


class TrainingError(UlmfitError):
    """A run that started and then failed (for example a NaN loss)."""

    exit_code = 1


class OutputError(UlmfitError):
    """The work was done and its results shown, but an output the user asked for could not be written."""

    exit_code = 1
