"""Bounded reading of the binary sources (`idx`, `npz`): the header first, then no more than it declares.

A corrupt header or a compression bomb (a small gzip file or zip member that
inflates to gigabytes) must end in one line, never in an out-of-memory kill.
So each array's header is read and checked from the stream before its body:
the size it declares (computed with Python integers: no overflow) must not
exceed `prepare.max_input_mib`, and reading stops at the declared size (plus
one byte, to tell a file longer than its header says). Memory use is
therefore bounded by that parameter, whatever the file holds.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from aegan.errors import UserError, one_line

MIB = 2**20
IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip
NPZ_HINT = "save it with numpy.savez(path, images=..., labels=...)"
STREAM_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
ZIP_ERRORS = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, OSError, NotImplementedError)


def too_large(where: str, declared: str, nbytes: int, max_bytes: int) -> UserError:
    return UserError(
        f"{where} declares {declared} ({nbytes} bytes), more than prepare.max_input_mib = {max_bytes // MIB} MiB "
        "allows: if the file is right, raise prepare.max_input_mib; otherwise export or download it again"
    )


def _open_idx(path: Path, key: str) -> BinaryIO:
    """The file's content stream: gunzipped on the fly when it starts with the gzip magic (by content, not name)."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if compressed else open(path, "rb")
    except OSError as err:
        raise UserError(f"prepare.{key}: {path} cannot be read ({one_line(err)}): point it at an IDX file") from None


def _read_into(stream: BinaryIO, buf: memoryview, path: Path) -> int:
    """Fill `buf` from `stream` as far as it goes; the number of bytes read."""
    done = 0
    try:
        while done < len(buf):
            n = stream.readinto(buf[done:])
            if not n:
                break
            done += n
    except STREAM_ERRORS as err:
        raise UserError(f"{path}: corrupt or truncated gzip ({one_line(err)}): download or compress it again") from None
    return done


def read_idx(path: Path, key: str, max_bytes: int) -> np.ndarray:
    """One IDX file (gzip-compressed or not) -> numpy array; header checked first, body read up to its declared size."""
    with _open_idx(path, key) as stream:
        magic = bytearray(4)
        got = _read_into(stream, memoryview(magic), path)
        if got < 4 or magic[0] or magic[1] or magic[2] not in IDX_TYPES or not 1 <= magic[3] <= 4:
            raise UserError(
                f"{path}: not an IDX file (magic number 0x{bytes(magic[:got]).hex():0<8}, expected 00 00 <type> "
                f"<dims>, e.g. 0x00000803 for images): point prepare.{key} at an IDX file, gzip-compressed or not"
            )
        ndim, dtype = magic[3], IDX_TYPES[magic[2]]
        head = bytearray(4 * ndim)
        if _read_into(stream, memoryview(head), path) < len(head):
            raise UserError(
                f"{path}: truncated IDX file (the header alone needs {4 + len(head)} bytes): download or export it again"
            )
        dims = struct.unpack(f">{ndim}I", head)
        shape = " x ".join(map(str, dims))
        need = math.prod(dims) * dtype.itemsize
        if need > max_bytes:
            raise too_large(f"{path}: the IDX header", f"{shape} values", need, max_bytes)
        body = bytearray(need + 1)  # one byte more: a longer body is an error too
        have = _read_into(stream, memoryview(body), path)
    if have != need:
        problem, body_size = ("truncated IDX file", f"{have} bytes") if have < need else \
            ("IDX file longer than its header says", f"more than {need} bytes")  # fmt: skip
        raise UserError(
            f"{path}: {problem}: the header declares {shape} values ({need} bytes), the body has {body_size}: "
            "download or export it again"
        )
    return np.frombuffer(body, dtype=dtype, count=math.prod(dims)).reshape(dims)


def _npy_header(member: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(member)
    return shape, dtype


def read_npz(path: Path, names: tuple[str, ...], max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays `names` of an .npz that has them (no pickles); each member's header is checked before it is read."""
    try:
        with open(path, "rb") as f:
            start = f.read(6)
    except OSError as err:
        raise UserError(f"{path}: not a readable .npz file ({one_line(err)}): {NPZ_HINT}") from None
    if start == b"\x93NUMPY":
        raise UserError(f"{path}: a single array (.npy), not an .npz archive: {NPZ_HINT}")
    try:
        with zipfile.ZipFile(path) as zf:
            found = [n.removesuffix(".npy") for n in zf.namelist() if n.endswith(".npy")]
            if "images" not in found:
                raise UserError(f"{path}: no array named 'images' (found: {', '.join(found) or 'no arrays'}): {NPZ_HINT}")
            for name in (n for n in names if n in found):
                with zf.open(f"{name}.npy") as member:
                    shape, dtype = _npy_header(member)
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > max_bytes:
                    raise too_large(f"{path}: {name}", f"shape {shape} of {dtype}", nbytes, max_bytes)
    except ZIP_ERRORS as err:
        raise UserError(f"{path}: not a readable .npz file ({one_line(err)}): {NPZ_HINT}") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in names if name in found}
    except ZIP_ERRORS as err:
        raise UserError(f"{path}: an array cannot be read ({one_line(err)}): save numeric arrays: {NPZ_HINT}") from None
