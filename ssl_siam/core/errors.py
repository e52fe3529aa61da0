"""User-facing errors: the CLI turns these into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, key, value); the message names it and says what was expected."""


class ConfigError(UserError):
    """A config key is unknown or has the wrong type."""


class DataError(UserError):
    """A data file or folder is missing, unreadable or not what was expected."""


class Preempted(Exception):
    """SIGTERM/SIGUSR1 arrived: the current step was finished and checkpointed; re-running resumes."""

    exit_code = 75  # EX_TEMPFAIL: the job script requeues on it (configs/slurm)
