"""Bad input to `aegan prepare`: one line naming the file or key and the fix, exit code 2, no traceback,
and an earlier data/prepared/ left exactly as it was. Every input is a small file written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from aegan.cli import app
from test_data_sources import pattern_images, write_folder, write_idx
from params_file import complete, validated, write_params

RAW = Path("data/raw")
SMALL_BATCHES = {"train": {"batch_size": 8}, "pretrain_ae": {"batch_size": 8}, "train_scorer": {"batch_size": 8},
                 "evaluate": {"num_samples": 16, "kid_subset_size": 8}}  # fmt: skip


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A working directory holding an earlier data/prepared/ that a failed prepare must not touch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    (tmp_path / RAW).mkdir()  # the user's data lives under data/raw/ (the folder dvc.yaml tracks)
    (prepared / "dataset.npz").write_bytes(b"earlier packed file")
    (prepared / "card.json").write_text('{"earlier": true}\n')
    return tmp_path


def fails(workdir: Path, prepare: dict, extra: dict | None = None) -> str:
    """Run `aegan prepare` with these params; assert the error contract; return the message."""
    before = {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()}
    write_params(workdir, {"prepare": prepare, **SMALL_BATCHES, **(extra or {})})
    result = CliRunner().invoke(app, ["prepare", "--params", "params.yaml"])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    after = {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()}
    assert after == before  # untouched, and no temp file left behind
    return lines[0].removeprefix("error: ")


# ---------------------------------------------------------------- params
def test_unknown_source(workdir):
    msg = fails(workdir, {"source": "imagenet"})
    assert msg.startswith("params.yaml: prepare.source = 'imagenet' is not allowed: Input should be 'digits', ")
    assert "'folder'" in msg


@pytest.mark.parametrize("size", [20, 128, 0])
def test_size_not_a_supported_power_of_two(workdir, size):
    msg = fails(workdir, {"image_size": size})
    assert msg == f"params.yaml: prepare.image_size = {size} is not allowed: Input should be 16, 32 or 64"


def test_channels_other_than_one_or_three(workdir):
    assert "prepare.channels = 4 is not allowed: Input should be 1 or 3" in fails(workdir, {"channels": 4})


@pytest.mark.parametrize("source", ["idx", "npz", "folder"])
def test_file_source_without_path(workdir, source):
    msg = fails(workdir, {"source": source})
    assert msg.startswith(f"params.yaml: prepare: source '{source}' needs path: set prepare.path to ")


def test_path_given_to_a_source_that_ignores_it(workdir):
    assert "path is read only by the idx, npz and folder sources, not 'digits': remove it" in fails(
        workdir, {"source": "digits", "path": "x.npz"})
    assert "labels_path is read only by the idx source, not 'npz'" in fails(
        workdir, {"source": "npz", "path": "x.npz", "labels_path": "y"})


# ---------------------------------------------------------------- paths and folders
@pytest.mark.parametrize("source, what", [("idx", "the IDX images file"), ("npz", "the .npz file"),
                                          ("folder", "the image folder")])  # fmt: skip
def test_path_does_not_exist(workdir, source, what):
    msg = fails(workdir, {"source": source, "path": "data/raw/no/such/thing"})
    assert msg == f"prepare.path: data/raw/no/such/thing does not exist: point prepare.path at {what}"


def test_labels_path_does_not_exist(workdir):
    write_idx(workdir / RAW / "imgs", pattern_images(40))
    msg = fails(workdir, {"source": "idx", "path": "data/raw/imgs", "labels_path": "data/raw/lbls"})
    assert msg == "prepare.labels_path: data/raw/lbls does not exist: point prepare.labels_path at the IDX labels file " \
                  "(or remove prepare.labels_path)"


def test_empty_folder(workdir):
    (workdir / RAW / "empty").mkdir()
    (workdir / RAW / "empty" / ".DS_Store").write_bytes(b"hidden files do not count")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/empty"})
    assert msg == "prepare.path: data/raw/empty is an empty folder: put image files (png, jpg, jpeg, bmp, webp) in it, " \
                  "or in class sub-folders"


def test_folder_without_image_files(workdir):
    (workdir / RAW / "docs" / "sub").mkdir(parents=True)
    (workdir / RAW / "docs" / "readme.txt").write_text("no images here")
    (workdir / RAW / "docs" / "sub" / "data.csv").write_text("1,2")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/docs"})
    assert msg.startswith("prepare.path: data/raw/docs has no image file (png, jpg, jpeg, bmp, webp) in it or its sub-folders")


def test_folder_with_no_readable_image(workdir):
    (workdir / RAW / "bad").mkdir()
    (workdir / RAW / "bad" / "a.png").write_text("not a png at all")
    (workdir / RAW / "bad" / "b.jpg").write_bytes(b"")
    msg = fails(workdir, {"source": "folder", "path": "data/raw/bad"})
    assert msg.startswith("prepare.path: none of the 2 image files in data/raw/bad could be read (first: a.png (")
    assert msg.endswith("): replace them with valid images")


def test_folder_path_is_a_file(workdir):
    (workdir / RAW / "one.png").write_bytes(b"x")
    assert fails(workdir, {"source": "folder", "path": "data/raw/one.png"}).startswith(
        "prepare.path: data/raw/one.png is a file, not a folder: point it at a folder of images")


def test_loose_images_next_to_class_folders(workdir):
    root = write_folder(workdir / RAW / "mixed", pattern_images(4, 16, 16), classes=["a", "b"])
    Image.fromarray(pattern_images(1, 16, 16)[0]).save(root / "loose.png")
    assert "holds both image files and class sub-folders (a/, ...): move the loose images" in fails(
        workdir, {"source": "folder", "path": "data/raw/mixed"})


def test_not_an_image_is_skipped_with_a_count_not_refused(workdir):
    """The documented policy (data.py): a file with an image extension that is not an image is skipped."""
    from aegan.stages.prepare import build_dataset

    root = write_folder(workdir / RAW / "imgs", pattern_images(5, 16, 16))
    (root / "fake.webp").write_text("<html>a web page saved as .webp</html>")
    card = build_dataset(validated({"prepare": {"source": "folder", "path": "data/raw/imgs"}}).prepare).card
    assert card["num_images"] == 5 and card["input"]["skipped_files"] == 1


# ---------------------------------------------------------------- IDX
def test_idx_wrong_magic_number(workdir):
    Image.fromarray(pattern_images(1)[0]).save(workdir / RAW / "digit.png")  # an image, not an IDX file
    msg = fails(workdir, {"source": "idx", "path": "data/raw/digit.png"})
    assert msg.startswith("data/raw/digit.png: not an IDX file (magic number 0x89504e47, expected 00 00 <type> <dims>")
    assert msg.endswith("point prepare.path at an IDX file, gzip-compressed or not")


def test_idx_wrong_magic_number_in_gzip_labels(workdir):
    write_idx(workdir / RAW / "imgs.gz", pattern_images(40), compress=True)
    (workdir / RAW / "lbls.gz").write_bytes(gzip.compress(b"\x00\x00\x07\x01" + b"\x00" * 44))  # type 0x07 does not exist
    msg = fails(workdir, {"source": "idx", "path": "data/raw/imgs.gz", "labels_path": "data/raw/lbls.gz"})
    assert msg.startswith("data/raw/lbls.gz: not an IDX file (magic number 0x00000701") and "prepare.labels_path" in msg


def test_idx_truncated_body(workdir):
    good = write_idx(workdir / RAW / "imgs", pattern_images(40)).read_bytes()
    (workdir / RAW / "imgs").write_bytes(good[:-100])
    msg = fails(workdir, {"source": "idx", "path": "data/raw/imgs"})
    assert msg == ("data/raw/imgs: truncated IDX file: the header declares 40 x 28 x 28 values (31360 bytes), the body has "
                   "31260 bytes: download or export it again")


def test_idx_truncated_gzip(workdir):
    good = write_idx(workdir / RAW / "imgs.gz", pattern_images(40), compress=True).read_bytes()
    (workdir / RAW / "imgs.gz").write_bytes(good[: len(good) // 2])
    assert fails(workdir, {"source": "idx", "path": "data/raw/imgs.gz"}).startswith("data/raw/imgs.gz: corrupt or truncated gzip (")


def test_idx_labels_and_images_swapped(workdir):
    write_idx(workdir / RAW / "imgs", pattern_images(40))
    write_idx(workdir / RAW / "lbls", np.zeros(40, np.uint8))
    msg = fails(workdir, {"source": "idx", "path": "data/raw/lbls", "labels_path": "data/raw/imgs"})
    assert msg.startswith("data/raw/lbls: IDX array of shape (40,), expected images")
    assert msg.endswith("check that prepare.path is the images file (and labels_path the labels)")


def test_idx_count_mismatch(workdir):
    write_idx(workdir / RAW / "imgs", pattern_images(40))
    write_idx(workdir / RAW / "lbls", np.zeros(39, np.uint8))
    msg = fails(workdir, {"source": "idx", "path": "data/raw/imgs", "labels_path": "data/raw/lbls"})
    assert msg == "data/raw/lbls: 39 labels for 40 images in data/raw/imgs: give exactly one label per image"


# ---------------------------------------------------------------- npz
def test_npz_without_images(workdir):
    np.savez(workdir / RAW / "d.npz", x=np.zeros((40, 8, 8), np.uint8), y=np.zeros(40))
    msg = fails(workdir, {"source": "npz", "path": "data/raw/d.npz"})
    assert msg == ("data/raw/d.npz: no array named 'images' (found: x, y): "
                   "save it with numpy.savez(path, images=..., labels=...)")


def test_npz_count_mismatch(workdir):
    np.savez(workdir / RAW / "d.npz", images=np.zeros((40, 8, 8), np.uint8), labels=np.zeros(41, np.int64))
    assert fails(workdir, {"source": "npz", "path": "data/raw/d.npz"}) == \
        "data/raw/d.npz: labels: 41 labels for 40 images in data/raw/d.npz: images: give exactly one label per image"


def test_npz_not_an_archive(workdir):
    (workdir / RAW / "d.npz").write_text("plain text")
    assert fails(workdir, {"source": "npz", "path": "data/raw/d.npz"}).startswith("data/raw/d.npz: not a readable .npz file (")
    np.save(workdir / RAW / "single.npy", np.zeros((40, 8, 8), np.uint8))
    assert fails(workdir, {"source": "npz", "path": "data/raw/single.npy"}).startswith(
        "data/raw/single.npy: a single array (.npy), not an .npz archive")


@pytest.mark.parametrize("images, expected", [
    (np.full((40, 8, 8), 2.0, np.float32), "data/raw/d.npz: images: float values span [2, 2], expected [0, 1]: rescale them"),
    (np.zeros((40, 8, 8), np.int64), "data/raw/d.npz: images: dtype int64, expected uint8 (0..255) or float in [0, 1]"),
    (np.zeros((40, 64), np.uint8), "data/raw/d.npz: images: shape (40, 64), expected N x H x W, N x H x W x C or N x C x H x W"),
    (np.zeros((40, 8, 8, 5), np.uint8), "data/raw/d.npz: images: shape (40, 8, 8, 5) is not N x H x W, N x H x W x C or"),
])  # fmt: skip
def test_npz_bad_images(workdir, images, expected):
    np.savez(workdir / RAW / "d.npz", images=images)
    assert fails(workdir, {"source": "npz", "path": "data/raw/d.npz"}).startswith(expected)


# ---------------------------------------------------------------- too small for the protocol
def test_smaller_than_one_batch(workdir):
    write_folder(workdir / RAW / "imgs", pattern_images(20, 16, 16))
    msg = fails(workdir, {"source": "folder", "path": "data/raw/imgs"}, {"train": {"batch_size": 64}})
    assert msg == "data/raw/imgs: 15 training / 5 held-out images, fewer training images than train.batch_size = 64: " \
                  "lower train.batch_size, lower prepare.heldout_fraction or add images"
    msg = fails(workdir, {"source": "folder", "path": "data/raw/imgs"}, {"train_scorer": {"batch_size": 16}})
    assert "fewer training images than train_scorer.batch_size = 16" in msg


def test_more_generated_samples_than_held_out_images_is_fine(workdir):
    """The generated sample count is not bounded by the data: every held-out image is the reference, whatever its size."""
    np.savez(workdir / RAW / "d.npz", images=pattern_images(100, 16, 16))
    params = {"prepare": {"source": "npz", "path": "data/raw/d.npz"}, **SMALL_BATCHES,
              "evaluate": {"num_samples": 2000, "kid_subset_size": 8}}  # fmt: skip
    write_params(workdir, params)
    result = CliRunner().invoke(app, ["prepare", "--params", "params.yaml"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- torchvision sources, offline
@pytest.mark.parametrize("source, where", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
                                           ("cifar10", "cifar-10-batches-py")])  # fmt: skip
def test_torchvision_source_not_there_and_no_download(workdir, source, where):
    msg = fails(workdir, {"source": source, "root": "data/raw/local", "download": False})
    assert msg.startswith(f"{source}: not found (or corrupt) in data/raw/local/{where}/ and prepare.download is false: "
                          "put a local copy there (")
    assert msg.endswith(f"or set prepare.root to the folder that holds {where}/")


@pytest.mark.parametrize("source, cls", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
def test_torchvision_download_fails_offline(workdir, monkeypatch, source, cls):
    import urllib.error

    import torchvision.datasets

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(getattr(torchvision.datasets, cls), "download", offline)  # never touch the network
    msg = fails(workdir, {"source": source, "root": "data/raw/cache"})
    assert "and the download failed (URLError: <urlopen error [Errno -3] Temporary failure in name resolution>): " \
           "put a local copy there" in msg
    assert msg.startswith(f"{source}: not found (or corrupt) in data/raw/cache/")


# ---------------------------------------------------------------- where the command is typed
def test_a_command_typed_in_a_subfolder_works_in_the_workspace_root(workdir, monkeypatch):
    """`aegan prepare` from <workspace>/src/deeper: the outputs, mlflow.db and logs land in the workspace, none in the
    subfolder; --params given relative is relative to where it was typed."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the default store: mlflow.db where the command runs
    write_params(workdir, SMALL_BATCHES)  # and the pipeline's dvc.yaml: the workspace root is the folder holding it
    deeper = workdir / "src" / "deeper"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    result = CliRunner().invoke(app, ["check-params", "--params", "../../params.yaml"])
    assert result.exit_code == 0 and result.stdout.strip() == "params.yaml: ok", result.output
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output
    assert (workdir / "data" / "prepared" / "dataset.npz").read_bytes() != b"earlier packed file"
    assert (workdir / "mlflow.db").is_file()
    assert sorted(p.name for p in (workdir / "src").rglob("*")) == ["deeper"]  # nothing written in the subfolder


def test_params_edited_while_the_stage_runs_fail_it_in_one_line(workdir, monkeypatch):
    """DVC records a stage's params as params.yaml gives them when the command ends: an edit made while it ran
    (here `git stash` of a split seed) must fail the stage, so DVC records nothing for outputs of the old value."""
    import aegan.stages.prepare as prepare_stage

    write_params(workdir, SMALL_BATCHES)
    params = complete(SMALL_BATCHES)
    real = prepare_stage.run_prepare

    def edited_meanwhile(*args, **kwargs):
        out = real(*args, **kwargs)
        edited = complete({**SMALL_BATCHES, "prepare": {"split_seed": params["prepare"]["split_seed"] + 1}})
        (workdir / "params.yaml").write_text(yaml.safe_dump(edited))
        return out

    monkeypatch.setattr(prepare_stage, "run_prepare", edited_meanwhile)
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    seed = params["prepare"]["split_seed"]
    assert f"params.yaml changed while this stage ran (prepare.split_seed: {seed} -> {seed + 1})" in lines[0]
    assert "run the stage again" in lines[0]

    # an edit of a param the stage does not declare is no reason to fail (train.log_every: not prepare's)
    def other_edit(*args, **kwargs):
        out = real(*args, **kwargs)
        write_params(workdir, {**SMALL_BATCHES, "train": {"batch_size": 8, "log_every": 7}})
        return out

    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(prepare_stage, "run_prepare", other_edit)
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output


def test_a_held_out_split_too_small_to_score_is_refused_by_prepare_and_check_params(workdir):
    """One held-out image passed prepare and failed in train with LinAlgError (FID of one reference image)."""
    np.savez(workdir / RAW / "d.npz", images=pattern_images(100, 16, 16))
    msg = fails(workdir, {"source": "npz", "path": "data/raw/d.npz", "heldout_fraction": 0.01})
    assert msg == ("data/raw/d.npz: 99 training / 1 held-out images, too few held-out images to score (precision "
                   "and recall compare each with its evaluate.prc_neighborhood = 3 nearest others, so at least 4): "
                   "raise prepare.heldout_fraction or add images"), msg
    # a built-in source's split is known before anything runs: check-params says so too
    write_params(workdir, {**SMALL_BATCHES, "prepare": {"heldout_fraction": 0.001}})
    result = CliRunner().invoke(app, ["check-params", "--params", "params.yaml"])
    assert result.exit_code == 2 and "1795 training / 2 held-out images, too few held-out images" in result.stderr, result.output


def test_check_params_refuses_a_model_that_cannot_fit_in_memory(workdir, monkeypatch):
    """width 1024 at 64 px passed check-params and failed in the first stage with an allocator traceback; the
    estimate builds the networks on the meta device, so it allocates nothing itself."""
    monkeypatch.setattr("aegan.fits.machine_memory", lambda: 8 * 2**30)  # the same answer on any CI machine
    big = {**SMALL_BATCHES, "prepare": {"image_size": 64}, "model": {"width": 1024}, "compute": {"device": "cpu"}}
    write_params(workdir, big)
    result = CliRunner().invoke(app, ["check-params", "--params", "params.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.splitlines()
    assert "model.width 1024 at 64 px needs about" in line and "more than this machine's 8.0 GiB" in line, line
    assert "lower model.width or the batch sizes" in line
    write_params(workdir, {**SMALL_BATCHES, "compute": {"device": "cpu"}})
    assert CliRunner().invoke(app, ["check-params", "--params", "params.yaml"]).exit_code == 0


def test_a_stage_that_runs_out_of_memory_says_so_in_one_line(workdir, monkeypatch):
    import aegan.stages.prepare as prepare_stage

    write_params(workdir, SMALL_BATCHES)

    def allocator(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] err == 0. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(prepare_stage, "run_prepare", allocator)
    result = CliRunner().invoke(app, ["prepare"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: out of memory (") and "lower model.width or the batch sizes" in line
