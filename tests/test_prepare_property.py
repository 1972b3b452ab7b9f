"""Issue 13: `aegan prepare` on random malformed input never shows a traceback and stays in bounded memory.

Hypothesis generates IDX files (random magic numbers, dimensions up to 2**32 - 1, bodies too short or
too long, gzip or not, a gzip member of zeros appended: a small bomb), .npz archives (random shapes,
dtypes and value ranges, labels or not) and image folders (valid images of random sizes and modes,
garbage with image extensions, other files, empty and nested folders). Every outcome must be success
(a data card) or exactly one `error:` line with exit code 2; the traced peak memory (numpy and Python
allocations) stays under a bound set from `prepare.max_input_mib`.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from aegan.cli import app
from params_file import write_params

MAX_INPUT_MIB = 4
PEAK_BOUND = 48 << 20  # a few times max_input_mib: the input, a converted copy, the packed arrays
EXAMPLES = int(os.environ.get("AEGAN_HYPOTHESIS_EXAMPLES", "50"))  # more for a deeper search, e.g. 1000
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 50,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
PARAMS = {"train": {"batch_size": 2}, "pretrain_ae": {"batch_size": 2}, "train_scorer": {"batch_size": 2},
          "evaluate": {"num_samples": 16, "kid_subset_size": 2}}  # fmt: skip


def _zeros_member(n: int) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    return co.compress(bytes(n)) + co.flush()


BOMB = _zeros_member(32 << 20)  # a 32 KiB gzip member inflating to 32 MiB, appended to some IDX files


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow DB for every example (a successful prepare logs its data card), and everything a successful
    prepare imports imported once beforehand: the memory bound is about the input, not about first imports."""
    from PIL import Image

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    Image.init()  # every file-format plugin
    warm = {f"f/c{c}/{i}.png": _png("L", 12, 12, c, "PNG") for c in range(2) for i in range(20)}
    prepare_outcome(warm, {"source": "folder", "path": "data/raw/f"}, bound=None)
    yield uri
    os.environ.pop("MLFLOW_TRACKING_URI")
    if old is not None:
        os.environ["MLFLOW_TRACKING_URI"] = old


def prepare_outcome(files: dict[str, bytes], prepare: dict, bound: int | None = PEAK_BOUND) -> None:
    """Write `files` under data/raw/ of a fresh folder, run `aegan prepare` there, check the contract."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            path = root / "data" / "raw" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                path.write_bytes(data)
        (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
        params = PARAMS | {"prepare": prepare | {"max_input_mib": MAX_INPUT_MIB, "heldout_fraction": 0.5}}
        write_params(root, params)
        cwd = os.getcwd()
        os.chdir(root)
        tracemalloc.start()
        try:
            result = CliRunner().invoke(app, ["prepare"])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            os.chdir(cwd)
        assert bound is None or peak < bound, f"peak {peak >> 20} MiB"
        assert "Traceback" not in result.output
        if bound is not None:  # inside a hypothesis example (not the warm-up)
            event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how often each outcome was reached
        if result.exit_code == 0:
            card = json.loads((root / "data" / "prepared" / "card.json").read_text())
            # accepted data fills a batch (2) and holds a held-out split; images end at 16x16
            assert card["num_train"] >= 2 and card["num_heldout"] >= 1 and card["shape"][1:] == [16, 16]
            return
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        assert isinstance(result.exception, SystemExit)
        assert result.stdout == ""
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
        assert not (root / "data" / "prepared").exists()  # nothing half-written


# ---------------------------------------------------------------- IDX
IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_files(draw) -> bytes:
    """An IDX file, valid or with one flaw, plain or gzip (cut, or with a bomb member appended)."""
    code = draw(st.sampled_from([0x08, 0x08, 0x08, *IDX_CODES, 0x00, 0x07, 0xFF]))
    dims = draw(st.one_of(
        st.tuples(st.integers(32, 64), st.integers(1, 20), st.integers(1, 20)).map(list),  # images, often valid
        st.lists(st.one_of(st.integers(0, 48), st.integers(0, 2**32 - 1)), min_size=0, max_size=5)))  # fmt: skip
    head = bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    declared = int(np.prod(dims, dtype=object)) * np.dtype(IDX_CODES.get(code, "u1")).itemsize if dims else 0
    body = bytes([draw(st.sampled_from([0, 1, 127, 255]))]) * declared if declared <= 1 << 20 else b""
    flaw = draw(st.sampled_from(["none"] * 4 + ["cut header", "junk after", "short body", "bad magic", "random body"]))
    if flaw == "cut header":
        head, body = head[: draw(st.integers(0, len(head)))], b""
    elif flaw == "junk after":
        body += draw(st.binary(min_size=1, max_size=16))
    elif flaw == "short body":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif flaw == "bad magic":
        head = draw(st.binary(min_size=4, max_size=4)) + head[4:]
    elif flaw == "random body":
        body = draw(st.binary(max_size=2048))
    data = head + body
    packing = draw(st.sampled_from(["plain", "plain", "gzip", "gzip cut", "gzip bomb"]))
    if packing != "plain":
        data = gzip.compress(data, mtime=0)
    if packing == "gzip cut":
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif packing == "gzip bomb":
        data += BOMB  # a second gzip member: 32 MiB of zeros after the declared body
    return data


@SETTINGS
@given(images=idx_files(), labels=st.one_of(st.none(), st.none(), idx_files()))
def test_prepare_on_random_idx_files(tracking, images, labels):
    files = {"imgs.idx": images} | ({"lbls.idx": labels} if labels is not None else {})
    prepare = {"source": "idx", "path": "data/raw/imgs.idx"} | ({"labels_path": "data/raw/lbls.idx"} if labels else {})
    prepare_outcome(files, prepare)


# ---------------------------------------------------------------- npz
DTYPES = ["uint8", "uint8", "uint8", "float32", "int8", "int64", "float16", "float64", "bool", "complex64", "U3",
          "uint16"]  # fmt: skip


@st.composite
def arrays(draw, max_ndim: int = 5) -> np.ndarray:
    ndim = draw(st.integers(0, max_ndim))
    shape = tuple(draw(st.lists(st.integers(0, 24), min_size=ndim, max_size=ndim)))
    if max_ndim >= 3 and draw(st.integers(0, 2)):  # an image stack, often a valid one
        shape = (draw(st.integers(32, 80)), draw(st.integers(1, 24)), draw(st.integers(1, 24)),
                 *draw(st.sampled_from([(), (1,), (3,), (4,)])))  # fmt: skip
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "U":
        return np.full(shape, draw(st.sampled_from(["a", "", "xyz"])), dtype=dtype)
    fill = draw(st.sampled_from([0.0, 0.5, 1.0, 0.25, 2.0, -1.0, 255.0, float("nan"), float("inf")]))
    with np.errstate(invalid="ignore", over="ignore"):
        arr = np.full(shape, fill, dtype=np.float64)
        if dtype.kind in "iub":
            arr = np.nan_to_num(arr, nan=0, posinf=1, neginf=0)
        out = arr.astype(dtype)
    if out.size and draw(st.booleans()):  # a spread of values, not one
        out.flat[:: max(1, out.size // 7)] = np.array(draw(st.sampled_from([0, 1, 7]))).astype(dtype)
    return out


@SETTINGS
@given(images=st.one_of(arrays(), arrays(), st.none()), labels=st.sampled_from(["none", "none", "matching", "random"]),
       random_labels=arrays(max_ndim=2), extra=st.booleans(), garbage=st.integers(0, 9))  # fmt: skip
def test_prepare_on_random_npz_archives(tracking, images, labels, random_labels, extra, garbage):
    if labels == "matching" and images is not None and images.ndim:
        labels = np.arange(len(images)) % 3
    else:
        labels = random_labels if labels == "random" else None
    buf = io.BytesIO()
    members = {"images": images, "labels": labels, "other": np.zeros(3) if extra else None}
    np.savez(buf, **{k: v for k, v in members.items() if v is not None})
    data = buf.getvalue()
    if garbage == 0:
        data = data[: len(data) // 2]  # truncated archive
    elif garbage == 1:
        data = b"PK\x03\x04" + data[4:200]  # a zip header, then nonsense
    prepare_outcome({"d.npz": data}, {"source": "npz", "path": "data/raw/d.npz"})


# ---------------------------------------------------------------- folder
MODES = ["L", "RGB", "RGBA", "P", "I;16", "LA", "1", "CMYK"]


def _png(mode: str, w: int, h: int, value: int, fmt: str) -> bytes:
    image = Image.new(mode, (w, h), value if mode not in ("RGB", "RGBA", "CMYK", "LA") else (value,) * len(mode))
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except (OSError, KeyError, ValueError):  # a mode the format cannot hold: write it as PNG
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def entries(draw) -> tuple[str, bytes | None]:
    kind = draw(st.sampled_from(["image", "image", "image", "garbage", "other", "empty"]))
    ext = draw(st.sampled_from(["png", "jpg", "bmp", "webp", "PNG", "gif", "txt"]))
    if kind == "image":
        fmt = {"png": "PNG", "PNG": "PNG", "jpg": "JPEG", "bmp": "BMP", "webp": "WEBP", "gif": "GIF", "txt": "PNG"}[ext]
        data = _png(draw(st.sampled_from(MODES)), draw(st.integers(1, 40)), draw(st.integers(1, 40)),
                    draw(st.integers(0, 255)), fmt)  # fmt: skip
    elif kind == "garbage":
        data = draw(st.binary(max_size=64))
    elif kind == "other":
        data, ext = b"notes", "md"
    else:
        data = b""
    return ext, data


@st.composite
def folders(draw) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {}
    n_classes = draw(st.integers(0, 3))
    for c in range(max(1, n_classes)):
        prefix = f"f/c{c}/" if n_classes else "f/"
        n = draw(st.sampled_from([0, 1, 5, 40]))
        bulk = _png("L", 12, 12, 100 + c, "PNG")
        for i in range(n):
            files[f"{prefix}{i:03d}.png"] = bulk  # enough readable images for the split, sometimes
        for i, (ext, data) in enumerate(draw(st.lists(entries(), max_size=6))):
            nested = draw(st.sampled_from(["", "deep/", ".hidden/"]))
            files[f"{prefix}{nested}x{i}.{ext}"] = data
    if draw(st.booleans()):
        files[f"f/empty{draw(st.integers(0, 9))}/.keep"] = b""
    return files


@SETTINGS
@given(files=folders(), allow=st.booleans(), channels=st.sampled_from([1, 3]))
def test_prepare_on_random_folders(tracking, files, allow, channels):
    prepare = {"source": "folder", "path": "data/raw/f", "allow_missing_classes": allow, "channels": channels}
    prepare_outcome(files, prepare)
