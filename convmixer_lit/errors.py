"""Errors that mean "the user asked for something we cannot do": the commands print them as one line, no traceback."""


class UserError(Exception):
    """Base class: the message says what was wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """An invalid flag, config value or hyper-parameter combination."""


class DataError(UserError):
    """A missing, malformed or unreadable dataset, or a failed download."""


class CheckpointError(UserError):
    """A file that is not a checkpoint of this kit, or of another model."""


class TrainingError(UserError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""
