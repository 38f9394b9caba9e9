"""Errors users see. Each message names the problem and the fix."""


class LlmpressError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class ConfigError(LlmpressError, ValueError):
    """A setting is out of range or names something unknown."""


class ModelSpecError(LlmpressError):
    """A model spec cannot be resolved to a model."""


class DataUnavailableError(LlmpressError):
    """A model or data set is neither cached nor downloadable (e.g. no network)."""


class CheckpointError(LlmpressError):
    """A compressed-model directory is missing, truncated, edited or from another version.

    Its message is always one line: names quoted from an untrusted file may hold newlines or
    other control characters, which are escaped (they could otherwise forge log lines)."""

    def __init__(self, *args):
        super().__init__(*(_one_line(a) if isinstance(a, str) else a for a in args))


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class RunMismatchError(CheckpointError, ConfigError):
    """A saved training state belongs to a run with other settings (resume with them, or start over)."""
