"""The one error type of ``cnnbench.bench`` that a user can act on."""


class BenchError(Exception):
    """A problem the user can fix (missing run, existing output...); the CLI exits with 2."""
