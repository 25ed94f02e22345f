"""The CLI's exit codes and its one error type (``error: MESSAGE`` on stderr)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments, kept for our checks too
EXIT_UNREACHABLE = 3
EXIT_SIMULATION_ERRORS = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the API refused the request ("error: CODE: detail" on stderr)
  2    bad command-line input
  3    the API could not be reached
  4    simulate: some requests failed (see the summary's errors)
  130  interrupted (Ctrl-C)
"""


class CliError(Exception):
    """A failure to report as ``error: MESSAGE`` (and ``hint: HINT``) with ``exit_code``."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint
