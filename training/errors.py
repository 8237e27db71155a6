"""How the training entry points report errors: one paragraph, no traceback (unless ``--debug``)."""

from __future__ import annotations

import sys
from typing import Callable

from codenet_pynq.errors import CodenetError

__all__ = ["EXIT_DIVERGED", "EXIT_ERROR", "report_errors"]

EXIT_ERROR = 2
EXIT_DIVERGED = 3

# What a user can cause and fix: bad files, bad configs, missing paths. Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (CodenetError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError)


def _own_message(text: str) -> str:
    """The error's own message: a DataLoader worker re-raises it with the worker's traceback in front."""
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last and not last.startswith(" ") else last


def report_errors(prog: str, debug: bool, run: Callable[[], int]) -> int:
    """Run ``run()``; a user error becomes ``prog: error: <message>`` on stderr and exit status 2."""
    if debug:
        return run()
    try:
        return run()
    except USER_ERRORS as e:
        text = " ".join(_own_message(str(e)).split()) or type(e).__name__
        if not isinstance(e, CodenetError):
            text += " (run again with --debug for the traceback)"
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint written is kept (continue with --resume)", file=sys.stderr)
        return 130
