"""The one exception type for mistakes a user can make (bad file, bad option, missing package), and the one
warning type for what the user should know but need not fix."""


class RTDetrExportError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero.

    Bugs in this package stay ordinary exceptions so that they keep their traceback.
    """

    exit_code = 1


class MissingDependencyError(RTDetrExportError):
    """An optional runtime (TensorRT, CUDA, ...) is not installed."""

    exit_code = 2


class RTDetrExportWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints it as one ``warning:``
    line)."""
