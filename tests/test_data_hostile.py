"""Issue 13: hostile input to `aegan prepare`, case by case.

Data outside data/raw/, unreadable folders (nothing lost silently: a warning, the data card and the
report name every skipped file and folder; a lost class is an error unless allowed), headers that
declare more than `prepare.max_input_mib` and compression bombs (bounded memory), zero-sized images,
a read-only data/prepared/. Every failure: one `error:` line, exit 2, no traceback, earlier outputs intact.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from aegan.cli import app
from perms import denied, file_modes_enforced
from test_data_errors import RAW, SMALL_BATCHES, fails, workdir  # noqa: F401 (fixture)
from test_data_sources import pattern_images, write_folder, write_idx
from params_file import complete, validated, write_params


def succeeds(workdir: Path, prepare: dict) -> tuple[str, dict]:
    """Run `aegan prepare`; assert exit 0; return its warnings (stderr less MLflow's log lines) and the data card."""
    write_params(workdir, {"prepare": prepare, **SMALL_BATCHES})
    result = CliRunner().invoke(app, ["prepare", "--params", "params.yaml"])
    assert result.exit_code == 0, (result.output, result.exception)
    warnings = "".join(line for line in result.stderr.splitlines(keepends=True) if " INFO mlflow" not in line)
    return warnings, json.loads((workdir / "data/prepared/card.json").read_text())


def classes(workdir: Path, names=("a", "b", "c"), n: int = 120) -> Path:
    return write_folder(workdir / RAW / "cls", pattern_images(n, 16, 16), classes=list(names))


@pytest.fixture()
def locked():
    """chmod a path to 0 (restored afterwards, so pytest can clean up), with file modes enforced even for root."""
    changed: list[tuple[Path, int]] = []

    def lock(path: Path, mode: int = 0) -> Path:
        changed.append((path, path.stat().st_mode))
        path.chmod(mode)
        return path

    with file_modes_enforced():
        yield lock
    for path, mode in reversed(changed):
        path.chmod(mode)


# ---------------------------------------------------------------- item 2: only data/raw/ is tracked by DVC
@pytest.mark.parametrize("key", ["path", "labels_path"])
def test_a_file_outside_data_raw_is_refused(workdir, key):
    write_idx(workdir / "elsewhere" / "imgs", pattern_images(40))
    write_idx(workdir / RAW / "imgs", pattern_images(40))
    prepare = {"source": "idx", "path": "data/raw/imgs", key: "elsewhere/imgs"}
    msg = fails(workdir, prepare)
    assert msg == (f"prepare.{key}: elsewhere/imgs is outside data/raw/ (resolved: {workdir / 'elsewhere/imgs'}), so "
                   f"DVC would never see it change: copy it under data/raw/ (e.g. data/raw/imgs) and set prepare.{key} "
                   "to that path")  # fmt: skip


def test_relative_absolute_and_linked_ways_out_are_refused(workdir):
    np.savez(workdir / "ext.npz", images=pattern_images(300, 8, 8))
    for way in ("../ext.npz", "data/raw/../../ext.npz", str(workdir / "ext.npz")):
        assert "is outside data/raw/" in fails(workdir, {"source": "npz", "path": way})
    (workdir / RAW / "link.npz").symlink_to(workdir / "ext.npz")
    msg = fails(workdir, {"source": "npz", "path": "data/raw/link.npz"})
    assert msg.startswith(f"prepare.path: data/raw/link.npz is outside data/raw/ (resolved: {workdir / 'ext.npz'})")
    assert "is outside data/raw/" in fails(workdir, {"source": "mnist", "root": "/tmp", "download": False})


def test_data_under_data_raw_is_accepted_by_any_spelling(workdir):
    np.savez(workdir / RAW / "d.npz", images=pattern_images(100, 8, 8))
    for way in ("data/raw/d.npz", str(workdir / RAW / "d.npz"), "data/raw/./sub/../d.npz"):
        (workdir / RAW / "sub").mkdir(exist_ok=True)
        _, card = succeeds(workdir, {"source": "npz", "path": way})
        assert card["num_images"] == 100


# ---------------------------------------------------------------- item 3: nothing lost silently
def test_an_unreadable_class_folder_is_an_error(workdir, locked):
    root = classes(workdir)
    locked(root / "b")
    assert denied(root / "b")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/cls"})
    assert msg == ("prepare.path: 1 class sub-folder(s) of data/raw/cls yield no readable image (b; first skipped: "
                   "b/ (Permission denied)): make them readable, or set prepare.allow_missing_classes: true to go on "
                   "without them")  # fmt: skip


def test_an_unreadable_class_folder_allowed_is_named_in_warning_card_and_report(workdir, locked):
    from aegan.report.compose import skipped_inputs

    root = classes(workdir)
    locked(root / "b")
    err, card = succeeds(workdir, {"source": "folder", "path": "data/raw/cls", "allow_missing_classes": True})
    assert err == ("warning: data/raw/cls: skipped 0 file(s) and 1 folder(s): b/ (Permission denied); classes dropped "
                   "(prepare.allow_missing_classes): b (data/prepared/card.json lists them once prepare has written it)\n")  # fmt: skip
    assert card["num_images"] == 80 and card["class_counts"] == {"a": 40, "c": 40}
    assert card["input"] | {"path": None} == {"path": None, "skipped_files": 0, "skipped_folders": 1,
                                              "skipped": ["b/ (Permission denied)"], "missing_classes": ["b"]}  # fmt: skip
    line = skipped_inputs(card)
    assert "0 file(s) and 1 folder(s)" in line and "`b/ (Permission denied)`" in line and "dropped" in line
    assert line in setup_markdown(card)  # in the report's Setup section


def setup_markdown(card: dict) -> str:
    """The report's Setup section for this data card (the other inputs as small as the section allows)."""
    import pandas as pd

    from aegan.report.compose import setup_section
    from aegan.report.inputs import Differences, ReportInputs, WallTime
    from aegan.report.render import Document, to_markdown

    doc = Document("report")
    inputs = ReportInputs(
        card=card | {"sha256": "0" * 64}, scorer={"task": "classes", "heldout_accuracy": 1.0},
        ae={0: {"train_seconds": 1.0, "heldout_mse": 0.1}}, reference={"num_samples": 16}, params=validated(),
        differences=Differences(None, []), commit="abc",
        # the runs and what is derived from them: not read by the Setup section
        runs=pd.DataFrame(), histories={}, table=pd.DataFrame(), comparisons=[], stability=pd.DataFrame(), curves={},
        plateau=None, rankings={},
    )  # fmt: skip
    setup_section(doc, inputs, WallTime(1.0, 1, 1))
    return to_markdown(doc)


def test_a_class_of_undecodable_images_is_a_lost_class(workdir):
    root = classes(workdir)
    for f in (root / "c").iterdir():
        f.write_bytes(b"not an image any more")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/cls"})
    assert msg.startswith("prepare.path: 1 class sub-folder(s) of data/raw/cls yield no readable image (c; first "
                          "skipped: c/img0002.png (")  # fmt: skip


def test_unreadable_nested_folders_links_and_other_files_are_counted_and_named(workdir, locked):
    root = classes(workdir)
    write_folder(root / "a" / "more", pattern_images(3, 16, 16))
    (root / "a" / "notes.txt").write_text("x")
    (root / "b" / "outside").symlink_to(workdir / "elsewhere", target_is_directory=True)
    (workdir / "elsewhere").mkdir()
    (root / "docs").mkdir()
    (root / "docs" / "readme.md").write_text("x")
    (root / "c" / "broken.png").write_bytes(b"x")
    locked(root / "a" / "more")
    err, card = succeeds(workdir, {"source": "folder", "path": "data/raw/cls"})
    assert card["num_images"] == 120 and card["num_classes"] == 3  # docs/ is no class
    assert card["input"]["skipped_files"] == 3 and card["input"]["skipped_folders"] == 3
    assert card["input"]["skipped"] == [
        "a/more/ (Permission denied)", "b/outside/ (a symbolic link: not followed)",
        "docs/ (no png, jpg, jpeg, bmp, webp file in it)", "a/notes.txt (not png, jpg, jpeg, bmp, webp)",
        "docs/readme.md (not png, jpg, jpeg, bmp, webp)", card["input"]["skipped"][-1]]  # fmt: skip
    assert card["input"]["skipped"][-1].startswith("c/broken.png (cannot identify image file")
    assert err.count("\n") == 1 and err.startswith("warning: data/raw/cls: skipped 3 file(s) and 3 folder(s): a/more/")


def test_a_file_link_is_read_only_when_it_leads_inside_data_raw(workdir):
    """One rule for links (issue 22): nothing outside data/raw/ is read; a skipped link is named."""
    root = classes(workdir, n=120)
    outside = workdir / "elsewhere.png"
    (root / "a" / "img0000.png").rename(outside)  # a good image, moved out of data/raw/ and linked back
    (root / "a" / "img0000.png").symlink_to(outside)
    (root / "b" / "passwd.png").symlink_to("/etc/passwd")  # a system file under an image name: never opened
    (workdir / RAW / "spare.png").write_bytes((root / "c" / "img0002.png").read_bytes())
    (root / "c" / "spare.png").symlink_to(workdir / RAW / "spare.png")  # inside data/raw/: read like a file
    err, card = succeeds(workdir, {"source": "folder", "path": "data/raw/cls"})
    assert card["num_images"] == 120  # 120 - the outside one + the inside link
    assert card["input"]["skipped"] == [
        f"a/img0000.png (a symbolic link to {outside.resolve()}, outside data/raw/: not read)",
        "b/passwd.png (a symbolic link to /etc/passwd, outside data/raw/: not read)"]  # fmt: skip
    assert err.count("\n") == 1 and "a/img0000.png (a symbolic link to" in err


def test_an_unreadable_top_folder_is_one_line(workdir, locked):
    root = classes(workdir)
    locked(root)
    assert fails(workdir, {"source": "folder", "path": "data/raw/cls"}) == \
        "prepare.path: data/raw/cls cannot be read (Permission denied): make it readable (chmod -R u+rX data/raw/cls)"


def test_a_path_behind_an_unsearchable_folder_is_one_line(workdir, locked):
    (workdir / RAW / "sub").mkdir()
    np.savez(workdir / RAW / "sub" / "d.npz", images=pattern_images(100, 8, 8))
    locked(workdir / RAW / "sub")
    assert fails(workdir, {"source": "npz", "path": "data/raw/sub/d.npz"}) == ("prepare.path: data/raw/sub/d.npz cannot "
        "be reached (Permission denied): check the permissions of the folders on its way")  # fmt: skip


# ---------------------------------------------------------------- item 4: bounded memory
def _gzip_stream(head: bytes, zeros: int) -> bytes:
    """gzip of `head` followed by `zeros` zero bytes, built in chunks (never the inflated bytes in memory)."""
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [co.compress(head)]
    block = bytes(1 << 20)
    for _ in range(zeros >> 20):
        out.append(co.compress(block))
    return b"".join(out + [co.flush()])


def _peak_of(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_one_line_in_bounded_memory(workdir):
    """128 MiB of zeros behind a header that declares 100 images: read up to the declared size, then refused."""
    head = bytes([0, 0, 8, 3]) + struct.pack(">3I", 100, 28, 28)
    (workdir / RAW / "bomb.gz").write_bytes(_gzip_stream(head, 128 << 20))
    msgs = []
    peak = _peak_of(lambda: msgs.append(fails(workdir, {"source": "idx", "path": "data/raw/bomb.gz"})))
    assert msgs[0] == ("data/raw/bomb.gz: IDX file longer than its header says: the header declares 100 x 28 x 28 "
                       "values (78400 bytes), the body has more than 78400 bytes: download or export it again")
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"


@pytest.mark.parametrize("dims, shown", [((65536,) * 4, "65536 x 65536 x 65536 x 65536 values (18446744073709551616 "
                                                        "bytes)"),
                                         ((3_000_000, 28, 28), "3000000 x 28 x 28 values (2352000000 bytes)")])
def test_an_idx_header_declaring_too_much_is_refused_before_reading(workdir, dims, shown):
    """The first: the product overflowed int64 to 0 (a reshape traceback); the second: a 2.2 GB body."""
    head = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    (workdir / RAW / "big.gz").write_bytes(_gzip_stream(head, 64 << 20))
    msgs: list[str] = []
    peak = _peak_of(lambda: msgs.append(fails(workdir, {"source": "idx", "path": "data/raw/big.gz"})))
    assert msgs[0] == (f"data/raw/big.gz: the IDX header declares {shown}, more than prepare.max_input_mib = 2048 MiB "
                       "allows: if the file is right, raise prepare.max_input_mib; otherwise export or download it again")
    assert peak < 16 << 20


def test_an_npz_member_declaring_too_much_is_refused_before_reading(workdir):
    """A hand-made .npy header declaring 10^12 bytes over a few bytes of body, inside a zip."""
    import zipfile

    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000, 1000, 1000), }"
    header += " " * (63 - len(header) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(100)
    with zipfile.ZipFile(workdir / RAW / "d.npz", "w") as zf:
        zf.writestr("images.npy", npy)
    msgs: list[str] = []
    peak = _peak_of(lambda: msgs.append(fails(workdir, {"source": "npz", "path": "data/raw/d.npz",
                                                        "max_input_mib": 64})))  # fmt: skip
    assert msgs[0].startswith("data/raw/d.npz: images declares shape (1000000, 1000, 1000) of uint8 (1000000000000 "
                              "bytes), more than prepare.max_input_mib = 64 MiB allows")
    assert peak < 16 << 20
    (workdir / RAW / "one.npy").write_bytes(npy)
    assert fails(workdir, {"source": "npz", "path": "data/raw/one.npy"}).startswith(
        "data/raw/one.npy: a single array (.npy), not an .npz archive")


def test_max_input_mib_is_a_real_bound(workdir):
    np.savez(workdir / RAW / "d.npz", images=pattern_images(2048, 32, 32))  # 2 MiB
    msg = fails(workdir, {"source": "npz", "path": "data/raw/d.npz", "max_input_mib": 1})
    assert "declares shape (2048, 32, 32) of uint8 (2097152 bytes), more than prepare.max_input_mib = 1 MiB" in msg
    _, card = succeeds(workdir, {"source": "npz", "path": "data/raw/d.npz", "max_input_mib": 2})
    assert card["num_images"] == 2048


# ---------------------------------------------------------------- item 5: one line, not a traceback
@pytest.mark.parametrize("shape", [(300, 0, 12), (300, 12, 0), (300, 0, 0, 3)])
def test_zero_sized_images_are_one_line(workdir, shape):
    np.savez(workdir / RAW / "z.npz", images=np.zeros(shape, np.uint8))
    msg = fails(workdir, {"source": "npz", "path": "data/raw/z.npz"})
    assert msg.startswith("data/raw/z.npz: images: images of ") and " pixels (shape (300, " in msg
    write_idx(workdir / RAW / "z.idx", np.zeros(shape, np.uint8))
    assert "save images at least one pixel high and wide" in fails(workdir, {"source": "idx", "path": "data/raw/z.idx"})


def test_a_read_only_data_prepared_is_one_line_and_untouched(workdir, locked):
    locked(workdir / "data" / "prepared", 0o555)
    msg = fails(workdir, {"source": "digits"})
    assert msg == "data/prepared: cannot write dataset.npz there (Permission denied): make the folder writable " \
                  "(chmod u+w data/prepared)"
    assert not [p for p in (workdir / "data" / "prepared").iterdir() if p.name.startswith(".")]


def test_a_folder_of_other_things_is_refused_not_skipped_to_nothing(workdir):
    (workdir / RAW / "odd").mkdir()
    os.mkfifo(workdir / RAW / "odd" / "pipe.png")  # an image name on a FIFO: never opened (it would block)
    (workdir / RAW / "odd" / "loop.png").symlink_to(workdir / RAW / "odd" / "loop.png")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/odd"})
    assert msg.startswith("prepare.path: data/raw/odd has no image file (png, jpg, jpeg, bmp, webp)")


def test_labels_given_as_one_value_are_one_line(workdir):
    """Found by the property test (tests/test_prepare_property.py): a 0-d labels array was a TypeError."""
    np.savez(workdir / RAW / "d.npz", images=pattern_images(40, 8, 8), labels=np.array(3))
    assert fails(workdir, {"source": "npz", "path": "data/raw/d.npz"}) == \
        "data/raw/d.npz: labels: one value (shape ()), expected one label per image (N,): save a 1-d array"
