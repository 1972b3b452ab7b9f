"""Every data source, on small files the tests write themselves (nothing is downloaded).

Checks shapes, dtypes, value ranges, labels, split sizes, conversions, and that
the same inputs give the same packed file byte for byte.
"""

from __future__ import annotations

import gzip
import json
import struct
import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aegan.data.packed import file_sha256, load_packed
from aegan.data.sources import SOURCES
from aegan.stages.prepare import build_dataset, write_prepared
from aegan.params import PrepareParams
from params_file import validated


# ---------------------------------------------------------------- writers the tests share
def prepare_params(**overrides) -> PrepareParams:
    """The committed prepare section with `overrides`: what a params.yaml stating them gives prepare."""
    return validated({"prepare": overrides}).prepare


def write_idx(path: Path, arr: np.ndarray, compress: bool = False) -> Path:
    """The IDX format MNIST ships in: 00 00 <type> <ndim>, big-endian dims, the raw body."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    arr = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    data = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def pattern_images(n: int, h: int = 28, w: int = 28, c: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C): smooth random blobs, so resizing has something to do."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c == 0 else (n, h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def pack(params: PrepareParams, out: Path) -> tuple[dict, Path]:
    card = write_prepared(build_dataset(params), out / "dataset.npz", out / "card.json")
    return card, out / "dataset.npz"


def write_folder(root: Path, arrays: np.ndarray, classes: list[str] | None = None, ext: str = "png") -> Path:
    """(N, H, W) or (N, H, W, C) uint8 -> image files, flat or in class sub-folders (round robin)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        folder = root / classes[i % len(classes)] if classes else root
        folder.mkdir(exist_ok=True)
        Image.fromarray(a).save(folder / f"img{i:04d}.{ext}")
    return root


# ---------------------------------------------------------------- registry
def test_every_params_source_has_a_loader():
    names = typing.get_args(PrepareParams.model_fields["source"].annotation)
    assert set(names) == set(SOURCES)


# ---------------------------------------------------------------- digits
def test_digits_default_and_rgb_conversion(tmp_path):
    card, f = pack(prepare_params(), tmp_path / "a")
    d = load_packed(f)
    assert d.images.shape == (1797, 1, 16, 16) and d.images.dtype == np.uint8
    assert card["num_classes"] == 10 and sum(card["class_counts"].values()) == 1797
    assert card["num_heldout"] == round(1797 * 0.25) and card["num_train"] == 1797 - card["num_heldout"]
    assert json.loads((tmp_path / "a" / "card.json").read_text())["sha256"] == file_sha256(f)
    rgb = build_dataset(prepare_params(channels=3, image_size=32)).arrays["images"]
    assert rgb.shape == (1797, 3, 32, 32)
    assert (rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all()


# ---------------------------------------------------------------- idx
@pytest.mark.parametrize("compress", [False, True])
def test_idx_pair(tmp_path, compress):
    imgs = pattern_images(40)
    imgs[0] = 200  # a constant image stays constant through resizing
    labels = (np.arange(40) % 4).astype(np.uint8)
    ip = write_idx(tmp_path / "images-idx3-ubyte", imgs, compress)
    lp = write_idx(tmp_path / "labels-idx1-ubyte", labels, compress)
    card, f = pack(prepare_params(source="idx", path=str(ip), labels_path=str(lp), image_size=16), tmp_path / "out")
    d = load_packed(f)
    assert d.images.shape == (40, 1, 16, 16) and d.images.dtype == np.uint8
    assert (d.images[0] == 200).all()
    assert d.images.min() >= 0 and d.images.max() <= 255 and d.images.std() > 10
    np.testing.assert_array_equal(d.labels, labels.astype(np.int64))
    assert card["class_counts"] == {"0": 10, "1": 10, "2": 10, "3": 10}
    assert (card["num_train"], card["num_heldout"]) == (30, 10)
    assert card["input"] == {"path": str(ip), "labels_path": str(lp)}


def test_idx_gzip_and_raw_give_the_same_packed_file(tmp_path):
    imgs = pattern_images(24)
    a = pack(prepare_params(source="idx", path=str(write_idx(tmp_path / "raw", imgs))), tmp_path / "a")[1]
    b = pack(prepare_params(source="idx", path=str(write_idx(tmp_path / "gz", imgs, compress=True))), tmp_path / "b")[1]
    assert a.read_bytes() == b.read_bytes()


def test_idx_without_labels_and_with_colour(tmp_path):
    imgs = pattern_images(20, 32, 32, c=3)
    card, f = pack(prepare_params(source="idx", path=str(write_idx(tmp_path / "x", imgs)), channels=3, image_size=32), tmp_path / "o")
    d = load_packed(f)
    assert d.labels is None and card["labels"] is False and card["class_counts"] == {}
    np.testing.assert_array_equal(d.images, imgs.transpose(0, 3, 1, 2))  # right size already: untouched


# ---------------------------------------------------------------- npz
def test_npz_layouts_and_dtypes_agree(tmp_path):
    imgs = pattern_images(16, 20, 20, c=3)
    variants = {
        "nhwc": imgs,
        "nchw": imgs.transpose(0, 3, 1, 2),
        "float": imgs.astype(np.float32) / 255.0,
    }
    packed = {}
    for name, arr in variants.items():
        np.savez(tmp_path / f"{name}.npz", images=arr)
        packed[name] = build_dataset(prepare_params(source="npz", path=str(tmp_path / f"{name}.npz"), channels=3)).arrays["images"]
    assert packed["nhwc"].shape == (16, 3, 16, 16)
    np.testing.assert_array_equal(packed["nhwc"], packed["nchw"])
    np.testing.assert_array_equal(packed["nhwc"], packed["float"])


def test_npz_grey_with_string_labels(tmp_path):
    imgs = pattern_images(12, 16, 16)
    labels = np.array(["cat", "dog", "dog"] * 4)
    np.savez(tmp_path / "d.npz", images=imgs, labels=labels)
    card, f = pack(prepare_params(source="npz", path=str(tmp_path / "d.npz"), heldout_fraction=0.5), tmp_path / "o")
    d = load_packed(f)
    np.testing.assert_array_equal(d.images[:, 0], imgs)
    assert card["class_counts"] == {"cat": 4, "dog": 8}
    np.testing.assert_array_equal(d.labels, (labels == "dog").astype(np.int64))
    assert (card["num_train"], card["num_heldout"]) == (6, 6)


def test_npz_rgba_alpha_goes_onto_white(tmp_path):
    imgs = np.zeros((4, 16, 16, 4), dtype=np.uint8)  # black, fully transparent
    imgs[:, :8, :, 3] = 255  # top half opaque black
    np.savez(tmp_path / "d.npz", images=imgs)
    x = build_dataset(prepare_params(source="npz", path=str(tmp_path / "d.npz"), channels=3)).arrays["images"]
    assert (x[:, :, :8] == 0).all() and (x[:, :, 8:] == 255).all()


# ---------------------------------------------------------------- folder
def test_folder_flat_rgb_any_format_and_size(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    root.mkdir()
    sizes = [(16, 16), (40, 24), (9, 30), (64, 64)]
    for i, ext in enumerate(["png", "jpg", "bmp", "webp", "PNG", "jpeg"]):
        h, w = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"c{i}.{ext}")
    Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(root / "grey.png")  # L mode
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8), "RGBA").save(root / "alpha.png")
    (root / "notes.txt").write_text("ignored: not an image extension")
    (root / ".hidden.png").write_text("ignored: hidden")
    card, f = pack(prepare_params(source="folder", path=str(root), channels=3, image_size=16), tmp_path / "o")
    d = load_packed(f)
    assert d.images.shape == (8, 3, 16, 16) and d.images.dtype == np.uint8
    assert d.labels is None and card["labels"] is False
    assert card["input"]["skipped_files"] == 1 and card["input"]["skipped_folders"] == 0  # counted, named
    assert card["input"]["skipped"] == ["notes.txt (not png, jpg, jpeg, bmp, webp)"]
    assert (card["num_train"], card["num_heldout"]) == (6, 2)


def test_folder_class_subfolders_give_labels(tmp_path):
    imgs = pattern_images(12, 20, 20)
    root = write_folder(tmp_path / "imgs", imgs, classes=["zebra", "ant", "moth"])
    card = build_dataset(prepare_params(source="folder", path=str(root))).card
    assert card["labels"] and card["class_counts"] == {"ant": 4, "moth": 4, "zebra": 4}  # sorted folder names
    prepared = build_dataset(prepare_params(source="folder", path=str(root)))
    # files are taken class by class (sorted), then by sorted name: ant first
    np.testing.assert_array_equal(prepared.arrays["labels"], np.repeat([0, 1, 2], 4))


def test_folder_one_class_is_unlabelled(tmp_path):
    root = write_folder(tmp_path / "imgs", pattern_images(8, 16, 16), classes=["all"])
    card = build_dataset(prepare_params(source="folder", path=str(root))).card
    assert card["labels"] is False and "one class only" in card["notes"][0]


def test_folder_matches_npz_of_the_same_images(tmp_path):
    imgs = pattern_images(10, 24, 24, c=3)
    root = write_folder(tmp_path / "imgs", imgs)
    np.savez(tmp_path / "same.npz", images=imgs)
    for channels in (1, 3):
        a = build_dataset(prepare_params(source="folder", path=str(root), channels=channels)).arrays["images"]
        b = build_dataset(prepare_params(source="npz", path=str(tmp_path / "same.npz"), channels=channels)).arrays["images"]
        np.testing.assert_array_equal(a, b)


def test_folder_rgb_to_grey_is_luma_and_crop_is_central(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    a = np.zeros((16, 32, 3), dtype=np.uint8)
    a[:, 8:24] = (255, 0, 0)  # the centre square is pure red, the sides black
    for i in range(4):
        Image.fromarray(a).save(root / f"{i}.png")
    x = build_dataset(prepare_params(source="folder", path=str(root), channels=1)).arrays["images"]
    assert x.shape == (4, 1, 16, 16)
    assert (x == round(0.299 * 255)).all()


def test_folder_exif_orientation_and_16_bit_grey(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    a = pattern_images(1, 16, 32, c=3)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for i in range(4):
        Image.fromarray(a).save(root / f"{i}.png", exif=exif)
    np.savez(tmp_path / "upright.npz", images=np.repeat(np.rot90(a, k=-1)[None], 4, axis=0))
    x = build_dataset(prepare_params(source="folder", path=str(root), channels=3)).arrays["images"]
    y = build_dataset(prepare_params(source="npz", path=str(tmp_path / "upright.npz"), channels=3)).arrays["images"]
    np.testing.assert_array_equal(x, y)

    grey16 = tmp_path / "grey16"
    grey16.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 16), 257 * 200, dtype=np.uint16)).save(grey16 / f"{i}.png")
    assert (build_dataset(prepare_params(source="folder", path=str(grey16))).arrays["images"] == 200).all()


def test_unreadable_image_is_skipped_and_counted(tmp_path, capsys):
    root = write_folder(tmp_path / "imgs", pattern_images(6, 16, 16))
    (root / "broken.png").write_bytes(b"this is not a png")
    (root / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 10)
    card = build_dataset(prepare_params(source="folder", path=str(root))).card
    assert card["num_images"] == 6
    assert card["input"]["skipped_files"] == 2
    assert [n.split(" ")[0] for n in card["input"]["skipped"]] == ["broken.png", "cut.jpg"]
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {root}: skipped 2 file(s) and 0 folder(s): broken.png (") and err.count("\n") == 1
    assert "; cut.jpg (" in err


# ---------------------------------------------------------------- torchvision sources (no download)
@pytest.mark.parametrize("source, sub", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_style_from_a_local_copy(tmp_path, source, sub):
    raw = tmp_path / sub / "raw"
    train, test = pattern_images(12, seed=1), pattern_images(4, seed=2)
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", (np.arange(12) % 10).astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", test)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([9, 8, 7, 6], dtype=np.uint8))
    p = prepare_params(source=source, root=str(tmp_path), download=False, heldout_fraction=0.5)
    card, f = pack(p, tmp_path / "o")
    d = load_packed(f)
    assert d.images.shape == (16, 1, 16, 16)
    np.testing.assert_array_equal(d.labels, np.r_[np.arange(12) % 10, [9, 8, 7, 6]])
    assert card["num_classes"] == 10 and len(card["class_counts"]) == 10
    assert card["input"]["splits"] == "train+test"


def test_cifar10_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    rng = np.random.default_rng(0)

    class FakeCIFAR10:  # what torchvision.datasets.CIFAR10 exposes: data (N, 32, 32, 3), targets, classes
        def __init__(self, root, train, download):
            n = 10 if train else 6
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]
            self.classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    prepared = build_dataset(prepare_params(source="cifar10", channels=3, image_size=32))
    x = prepared.arrays["images"]
    assert x.shape == (16, 3, 32, 32) and x.dtype == np.uint8
    assert prepared.card["class_counts"]["airplane"] == 2 and prepared.card["class_counts"]["truck"] == 1


# ---------------------------------------------------------------- determinism and the split
def test_same_inputs_same_bytes_and_seeded_split(tmp_path):
    root = write_folder(tmp_path / "imgs", pattern_images(20, 20, 20, c=3), classes=["a", "b"])
    p = prepare_params(source="folder", path=str(root), channels=3)
    a = pack(p, tmp_path / "a")[1].read_bytes()
    b = pack(p, tmp_path / "b")[1].read_bytes()
    assert a == b
    other = build_dataset(p.model_copy(update={"split_seed": 1})).arrays["heldout"]
    assert (other != build_dataset(p).arrays["heldout"]).any()
    assert other.sum() == 5


def test_run_prepare_logs_the_card_to_mlflow(tmp_path, tmp_tracking, monkeypatch):
    from mlflow.tracking import MlflowClient

    from aegan.stages.prepare import run_prepare
    from aegan.tracking import EXPERIMENT

    monkeypatch.chdir(tmp_path)
    card = run_prepare(validated())
    client = MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'prepare'")
    assert run.data.params["num_images"] == "1797"
    assert run.data.params["sha256"] == card["sha256"]
    assert run.data.tags["source"] == "digits"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["card.json"]
