"""Exceptions that carry a one-line, user-facing message.

Every message names the file (or option) at fault and says what to do, so the CLI and the
Blender add-on can show ``str(exc)`` as it is, without a traceback.
"""

from __future__ import annotations


class SegcoreError(Exception):
    """Base class: a user-facing problem, not a bug."""


class InputError(SegcoreError):
    """The input path or folder cannot be used (missing, empty, unreadable)."""


class OutputError(SegcoreError):
    """The output folder cannot be used (inside the input, not writable, disk full)."""


class FrameError(SegcoreError):
    """One frame could not be read or written; the others go on."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelError(SegcoreError):
    """The model file or its card is missing, corrupt or inconsistent."""


class DependencyError(SegcoreError):
    """An optional dependency (pycolmap, scikit-image) is missing."""


# how to install what 3D reconstruction needs: one hint, the same in every message and doc
RECON_INSTALL = (
    'pip install "pycolmap>=4.2,<5" "scikit-image>=0.22" (in a checkout of segcore: '
    'pip install -e ".[recon]")'
)


def optional_import(module: str, package: str):
    """``module``, or a :class:`DependencyError` that says which packages to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(
            f"{package} is not installed; 3D reconstruction needs pycolmap and scikit-image: "
            f"{RECON_INSTALL}"
        ) from None
