"""Permission denial that also holds for root: tests that chmod a file or folder away must see EACCES.

Root bypasses file modes through two capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH).
`file_modes_enforced()` drops them from the calling thread's effective set for the duration of the
block (the permitted set keeps them, so they come back afterwards); for any other user it does nothing.
Linux only (capget/capset through ctypes).
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

_VERSION_3 = 0x20080522
_DAC_CAPS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _caps(set_to: int | None = None) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _Header(_VERSION_3, 0), (_Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    old = data[0].effective
    if set_to is not None:
        data[0].effective = set_to
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
    return old


@contextmanager
def file_modes_enforced():
    if os.geteuid() != 0:
        yield
        return
    old = _caps()
    _caps(old & ~_DAC_CAPS)
    try:
        yield
    finally:
        _caps(old)


def denied(path: os.PathLike) -> bool:
    """Whether listing/reading `path` now fails with a permission error (checks that the setup works)."""
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
    except PermissionError:
        return True
    return False
