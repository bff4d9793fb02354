"""Keys typed in a terminal, one at a time and without Enter, for the keyboard teleop and `record-demos`."""

from __future__ import annotations

import os
import select
import sys

ESCAPE = "esc"


class KeyReader:
    """cbreak mode on the terminal while in use (restored on exit); reads nothing when stdin is not a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self.interactive = self.stream.isatty()
        self._saved = None

    def __enter__(self) -> "KeyReader":
        if self.interactive:
            import termios  # noqa: PLC0415
            import tty  # noqa: PLC0415

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            import termios  # noqa: PLC0415

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def keys(self, timeout_s: float) -> list[str]:
        """The keys typed since the last call, waiting up to `timeout_s` for the first one."""
        if not self.interactive:
            return []
        fd = self.stream.fileno()
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return []
        text = os.read(fd, 64).decode("utf-8", errors="ignore")
        if text.startswith("\x1b") and len(text) > 1:
            return []  # an arrow or function key's escape sequence: not bound
        return [ESCAPE if ch == "\x1b" else ch for ch in text]
