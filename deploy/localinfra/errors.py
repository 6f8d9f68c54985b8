"""The one error type the launcher raises: its message is what the user sees, on one line
(optionally followed by the tail of a log file)."""


class InfraError(Exception):
    """A failure the user can act on; the CLI prints the message and exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
