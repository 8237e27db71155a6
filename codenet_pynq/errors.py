"""Exception hierarchy of codenet-pynq.

Every error raised on purpose by the package derives from :class:`CodenetError`, and also from
the matching built-in exception (``ValueError``, ``RuntimeError``, ``TimeoutError``) so that
callers who do not know this module can still catch it the usual way.

Messages follow one rule: say *which* file / field / device is involved, *what* is wrong, and
*what to do* about it.  :func:`format_message` builds such a message.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "CodenetError",
    "ImageReadError",
    "ImageWriteError",
    "ArtifactError",
    "BackendError",
    "AcceleratorTimeout",
    "CameraError",
    "format_message",
]


def format_message(subject: Optional[str], problem: str, hint: Optional[str] = None) -> str:
    """Return ``"<subject>: <problem>. <hint>"`` (subject and hint optional), one line."""
    text = problem.strip().rstrip(".")
    if subject:
        text = f"{subject}: {text}"
    text += "."
    if hint:
        hint = hint.strip()
        text += " " + hint[0].upper() + hint[1:]
        if not hint.endswith((".", "!", "?")):
            text += "."
    return text


class CodenetError(Exception):
    """Base class of every error raised on purpose by codenet-pynq."""


class ImageReadError(CodenetError, ValueError):
    """An image file (or buffer) is missing, empty, corrupt, truncated, unsupported or too large."""


class ImageWriteError(CodenetError, ValueError):
    """An image could not be encoded or written (bad extension, bad array, unwritable folder)."""


class ArtifactError(CodenetError, ValueError):
    """A ``.codenet`` model artifact is missing, corrupt, of an unsupported version or inconsistent."""


class BackendError(CodenetError, RuntimeError):
    """A backend (fpga, emulator, cpu) cannot be created or failed while running."""


class AcceleratorTimeout(BackendError, TimeoutError):
    """The accelerator did not signal completion within the allowed time."""


class CameraError(CodenetError, RuntimeError):
    """A camera could not be opened or stopped delivering frames."""
