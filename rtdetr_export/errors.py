"""The one exception type for mistakes a user can make (bad file, bad option, missing package)."""


class RTDetrExportError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero.

    Bugs in this package stay ordinary exceptions so that they keep their traceback.
    """

    exit_code = 1


class MissingDependencyError(RTDetrExportError):
    """An optional runtime (TensorRT, CUDA, ...) is not installed."""

    exit_code = 2
