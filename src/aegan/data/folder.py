"""The `folder` source: image files, flat or in class sub-folders, and everything left out, by name.

Nothing is left out silently. Hidden files and folders (a leading dot:
.DS_Store, ._x.png) are ignored as documented; everything else that is not
read is recorded with the reason: a file with another extension or that is not
a regular file, a folder that cannot be listed (permissions, I/O error), a
symbolic link to a folder (not followed: it may lead outside data/raw/ or
into a loop), a symbolic link to a file outside the folder DVC tracks
(data/raw/: a link to a file inside it is read), a sub-folder with no image
file. So nothing outside data/raw/ is read, whether through prepare.path
(stages/prepare.py), a folder link or a file link. `load_folder` (sources.py)
adds the image files Pillow cannot decode, warns, and writes it all in the
data card; losing a whole class is an error unless the user allows it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aegan.data.arrays import composite_on_white
from aegan.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
EXTENSIONS = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)


@dataclass
class Listing:
    """What is in the folder: loose image files, or class sub-folders with theirs; and what was left out."""

    root: Path
    allowed: Path  # resolved: a file link is read only if its target is under it (data/raw/)
    allowed_shown: str  # how messages name it
    loose: list[Path] = field(default_factory=list)
    classes: list[tuple[str, list[Path]]] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # "relative/path (reason)"
    skipped_folders: list[str] = field(default_factory=list)  # "relative/path/ (reason)"
    unreadable: set[str] = field(default_factory=set)  # top-level sub-folders holding a folder that cannot be listed

    def rel(self, path: str | os.PathLike) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def skip_file(self, path: Path, reason: str) -> None:
        self.skipped_files.append(f"{self.rel(path)} ({reason})")


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _kind(path: Path, allowed: Path) -> tuple[str, str]:
    """('dir' | 'file' | 'link-dir' | 'link-out' | 'other', '') for what `path` is, or ('error', why it cannot be
    looked at). 'link-out': a link to a file outside `allowed`."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            if stat.S_ISDIR(os.stat(path).st_mode):
                return "link-dir", ""
            target = path.resolve()
            if allowed not in target.parents:
                return "link-out", str(target)
            mode = os.stat(path).st_mode
    except OSError as err:
        return "error", _reason(err)
    return ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"), ""


def _visit(listing: Listing, path: Path, found: list[Path]) -> bool:
    """Record the entry `path` (not hidden): an image file into `found`, anything else left out with its reason.
    True if it is a folder to descend into."""
    kind, why = _kind(path, listing.allowed)
    if kind == "dir":
        return True
    if kind == "link-dir":
        listing.skipped_folders.append(f"{listing.rel(path)}/ (a symbolic link: not followed)")
    elif kind == "link-out":
        listing.skip_file(path, f"a symbolic link to {why}, outside {listing.allowed_shown}/: not read")
    elif kind == "error":
        listing.skip_file(path, why)
    elif path.suffix.lower() not in IMAGE_EXTENSIONS:
        listing.skip_file(path, f"not {EXTENSIONS}")
    elif kind != "file":
        listing.skip_file(path, "not a regular file")
    else:
        found.append(path)
    return False


def _walk(listing: Listing, top: Path) -> list[Path]:
    """Image files under the folder `top`, recursively, sorted by relative path; the rest recorded in `listing`."""
    found: list[Path] = []

    def unlistable(err: OSError) -> None:
        listing.skipped_folders.append(f"{listing.rel(err.filename)}/ ({_reason(err)})")
        listing.unreadable.add(listing.rel(top).split("/")[0])

    for dirpath, dirnames, filenames in os.walk(top, onerror=unlistable):
        here = Path(dirpath)
        names = sorted(n for n in dirnames + filenames if not n.startswith("."))
        dirnames[:] = [n for n in names if _visit(listing, here / n, found)]
    return sorted(found, key=listing.rel)


def list_folder(folder: Path, shown: str, allowed: Path) -> Listing:
    """The folder's image files (loose, or per class sub-folder) and what was left out; a one-line error when the
    folder itself cannot be read, holds nothing, or mixes loose images with class sub-folders. A file link is read
    only if it leads to a file under `allowed`."""
    listing = Listing(folder, Path(allowed).resolve(), Path(allowed).as_posix())
    try:
        entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise UserError(
            f"prepare.path: {shown} cannot be read ({_reason(err)}): make it readable (chmod -R u+rX {shown})"
        ) from None
    if not entries:
        raise UserError(f"prepare.path: {shown} is an empty folder: put image files ({EXTENSIONS}) in it, or in "
                        "class sub-folders")  # fmt: skip
    for entry in entries:
        if not _visit(listing, entry, listing.loose):
            continue
        files = _walk(listing, entry)
        if files or entry.name in listing.unreadable:
            listing.classes.append((entry.name, files))
        else:
            listing.skipped_folders.append(f"{entry.name}/ (no {EXTENSIONS} file in it)")
    readable = [name for name, files in listing.classes if files]
    if listing.loose and readable:
        raise UserError(
            f"prepare.path: {shown} holds both image files and class sub-folders ({readable[0]}/, ...): "
            "move the loose images into a sub-folder, or remove the sub-folders"
        )
    if listing.loose:  # no classes: a sub-folder that cannot be read is a skipped folder like any other
        listing.classes = []
    return listing


def decode_image(path: Path) -> np.ndarray:
    """One image file -> uint8 (C, H, W), C = 1 (grey) or 3 (colour); alpha composited onto white."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im.load()
        ImageOps.exif_transpose(im, in_place=True)  # camera photos: upright as displayed
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey
            a = np.round(np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)[..., None]
        elif mode in ("1", "L", "F"):
            a = np.asarray(im.convert("L"))[..., None]
        elif mode in ("LA", "La"):
            la = np.asarray(im.convert("LA"))
            a = composite_on_white(la[..., :1], la[..., 1:])
        elif mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
            rgba = np.asarray(im.convert("RGBA"))
            a = composite_on_white(rgba[..., :3], rgba[..., 3:])
        else:  # RGB, P, CMYK, YCbCr, ...
            a = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(a.transpose(2, 0, 1))
