"""Finding and loading libgoconn.so.

The library is looked up in this order: the file named by the
GOCONN_LIBRARY environment variable, then libgoconn.so beside this package.
It is loaded once and never unloaded (a Go runtime cannot be unloaded), and
its ABI version must match the one this package was written for.
"""

from __future__ import annotations

import ctypes
import os

ABI_VERSION = 1

_lib: ctypes.CDLL | None = None


class LibraryNotFoundError(ImportError):
    """libgoconn.so could not be loaded from any of the places tried."""


def _candidates() -> list[str]:
    paths = []
    env = os.environ.get("GOCONN_LIBRARY")
    if env:
        paths.append(env)
    paths.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "libgoconn.so"))
    return paths


def load() -> ctypes.CDLL:
    """Return the loaded library, loading it on first use."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        try:
            abi = lib.goconn_abi_version()
        except AttributeError:
            tried.append(f"{path}: not a goconn library (no goconn_abi_version)")
            continue
        if abi != ABI_VERSION:
            tried.append(f"{path}: ABI version {abi}, this package needs {ABI_VERSION}")
            continue
        _lib = lib  # kept for the life of the process: never unloaded
        return lib
    env = os.environ.get("GOCONN_LIBRARY")
    raise LibraryNotFoundError(
        "cannot load libgoconn.so; tried:\n  "
        + "\n  ".join(tried)
        + f"\n(GOCONN_LIBRARY={env!r}; run ./build.sh to build the library)"
    )
