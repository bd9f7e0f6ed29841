"""Dataset loading: split rules, normalization, file formats, augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image

from petrinas.config import Config, DatasetConfig
from petrinas.config_loader import load_config
from petrinas.data import TensorData, dataset_info, load_dataset, load_splits
from petrinas.errors import DataError
from petrinas.data import SPLITS, augment_batch
from petrinas.train.pipeline import JobContext, run_seed
from petrinas.synthetic import synthetic_images
from support import write_tiny_cifar10

DIGITS = 1797


@pytest.fixture(scope="module")
def digits_seed0():
    return load_splits(DatasetConfig(name="digits"), seed=0)


@pytest.fixture(scope="module")
def digits_seed1():
    return load_splits(DatasetConfig(name="digits"), seed=1)


# ----------------------------------------------------------------------------- digits

def test_digits_splits_cover_everything_once(digits_seed0):
    ids = {name: set(split.indices.tolist()) for name, split in digits_seed0.items()}
    assert sum(len(split) for split in digits_seed0.values()) == DIGITS
    assert set().union(*ids.values()) == set(range(DIGITS))
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert len(digits_seed0["test"]) == round(DIGITS * 0.2)


def test_digits_tensors(digits_seed0):
    train = digits_seed0["train"]
    assert isinstance(train, TensorData) and isinstance(train, torch.utils.data.Dataset)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    x, y = train[3]
    assert x.shape == (1, 8, 8) and y.dim() == 0
    assert dataset_info(DatasetConfig(name="digits")).input_shape == train.input_shape


def test_test_split_fixed_train_val_follow_seed(digits_seed0, digits_seed1):
    assert torch.equal(digits_seed0["test"].x, digits_seed1["test"].x)
    assert torch.equal(digits_seed0["test"].y, digits_seed1["test"].y)
    assert not torch.equal(digits_seed0["val"].indices, digits_seed1["val"].indices)
    assert not torch.equal(digits_seed0["train"].indices, digits_seed1["train"].indices)


def test_normalization_over_train_and_val(digits_seed0):
    pool = torch.cat([digits_seed0["train"].x, digits_seed0["val"].x])
    assert abs(pool.mean().item()) < 1e-4
    assert abs(pool.std().item() - 1.0) < 1e-2


def test_rows_are_raw_digits_normalized_with_pool_stats(digits_seed0):
    from sklearn.datasets import load_digits
    digits = load_digits()
    raw = torch.from_numpy(digits.images).unsqueeze(1)
    pool_ids = torch.cat([digits_seed0["train"].indices, digits_seed0["val"].indices])
    mean, std = raw[pool_ids].mean(), raw[pool_ids].std(unbiased=False)
    for split in digits_seed0.values():
        expected = ((raw[split.indices] - mean) / std).float()
        assert torch.allclose(split.x, expected, atol=1e-5)
        assert torch.equal(split.y, torch.from_numpy(digits.target)[split.indices])


@pytest.mark.parametrize("source", ["the file scikit-learn ships", "its loader"])
def test_digits_are_scikit_learns_whichever_way_they_are_read(source, monkeypatch):
    """Fails if the file read directly (or the fallback where it has moved) gives other
    images, labels or dtypes than scikit-learn's own load_digits."""
    from sklearn.datasets import load_digits
    from petrinas import data
    if source == "its loader":
        monkeypatch.setattr(data, "_sklearn_file", lambda *parts: None)
    x, y, classes = data._load_digits()
    digits = load_digits()
    assert classes == 10 and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(x, digits.images[:, None]) and np.array_equal(y, digits.target)


def test_digits_load_without_importing_scikit_learn():
    """Fails if loading digits imports scikit-learn (1.8 s of every search's start and
    of every Ray worker's first trial). In a fresh interpreter: this one has it."""
    import subprocess
    import sys
    code = ("import sys; from petrinas.config import DatasetConfig; "
            "from petrinas.data import load_splits; "
            "load_splits(DatasetConfig(name='digits'), seed=0); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_load_dataset_equals_load_splits(digits_seed0):
    test = load_dataset("digits", split="test")
    assert torch.equal(test.x, digits_seed0["test"].x)
    assert torch.equal(test.y, digits_seed0["test"].y)
    val = load_dataset(Config(seed=1), split="val")
    reference = load_splits(DatasetConfig(name="digits"), seed=1)["val"]
    assert torch.equal(val.x, reference.x)
    train = load_dataset(DatasetConfig(name="digits", max_train=100), split="train", seed=0)
    assert len(train) == 100
    assert set(train.indices.tolist()) <= set(digits_seed0["train"].indices.tolist())


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="mnist"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="bogus"):
        load_dataset("digits", split="bogus")


def test_tensor_data_to_device(digits_seed0):
    moved = digits_seed0["val"].to("cpu")
    assert moved is not digits_seed0["val"] and torch.equal(moved.x, digits_seed0["val"].x)


# -------------------------------------------------------------------------------- npz

@pytest.mark.parametrize("shape", [(60, 5, 6), (60, 2, 5, 6)])
def test_npz_round_trip(tmp_path, shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=shape).astype(np.uint8)
    y = np.arange(60) % 3
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    cfg = DatasetConfig(name="npz", root=str(path))
    channels = 1 if len(shape) == 3 else shape[1]
    info = dataset_info(cfg)
    assert info.input_shape == (channels, 5, 6) and info.num_classes == 3
    splits = load_splits(cfg, seed=0)
    assert sum(len(s) for s in splits.values()) == 60
    test = splits["test"]
    assert test.input_shape == (channels, 5, 6) and test.num_classes == 3
    assert torch.equal(test.y, torch.from_numpy(y)[test.indices])
    # Normalization must be affine per channel: correlation with the raw pixels is 1.
    raw = torch.from_numpy(x.reshape(60, channels, 5, 6)[test.indices.numpy()]).float()
    corr = np.corrcoef(raw[:, 0].flatten().numpy(), test.x[:, 0].flatten().numpy())[0, 1]
    assert corr > 0.9999


def _bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("case", ["missing_file", "missing_y", "bad_rank", "length",
                                  "not_npz"])
def test_npz_errors_name_the_file(tmp_path, case):
    x = np.zeros((10, 4, 4), np.float32)
    y = np.zeros(10, np.int64)
    if case == "missing_file":
        path = tmp_path / "nothing.npz"
    elif case == "missing_y":
        path = _bad_npz(tmp_path, x=x)
    elif case == "bad_rank":
        path = _bad_npz(tmp_path, x=np.zeros((10, 16)), y=y)
    elif case == "length":
        path = _bad_npz(tmp_path, x=x, y=y[:7])
    else:
        path = tmp_path / "garbage.npz"
        path.write_bytes(b"not a zip file")
    cfg = DatasetConfig(name="npz", root=str(path))
    for call in (lambda: load_splits(cfg, seed=0), lambda: dataset_info(cfg)):
        with pytest.raises(DataError) as info:
            call()
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)


# ------------------------------------------------------------------------ imagefolder

def _write_images(root, sizes):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")


def test_imagefolder(tmp_path):
    _write_images(tmp_path, [(6, 5)] * 10)
    cfg = DatasetConfig(name="imagefolder", root=str(tmp_path))
    assert dataset_info(cfg).input_shape == (3, 5, 6)
    assert dataset_info(cfg).num_classes == 2
    splits = load_splits(cfg, seed=0)
    assert sum(len(s) for s in splits.values()) == 20
    assert splits["train"].input_shape == (3, 5, 6)
    # Sorted class folders: files 0..9 are "cat" (0), 10..19 "dog" (1).
    for split in splits.values():
        assert torch.equal(split.y, (split.indices >= 10).long())
    resized = DatasetConfig(name="imagefolder", root=str(tmp_path), image_size=4)
    assert dataset_info(resized).input_shape == (3, 4, 4)
    assert load_splits(resized, seed=0)["test"].input_shape == (3, 4, 4)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_splits(DatasetConfig(name="imagefolder", root=str(tmp_path / "missing")), 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_splits(DatasetConfig(name="imagefolder", root=str(tmp_path / "empty")), 0)
    _write_images(tmp_path / "mixed", [(6, 5), (4, 4)] * 5)
    with pytest.raises(DataError, match="image_size"):
        load_splits(DatasetConfig(name="imagefolder", root=str(tmp_path / "mixed")), 0)
    assert load_dataset("imagefolder", root=str(tmp_path / "mixed"), image_size=3).x.shape[1:] \
        == (3, 3, 3)


# ------------------------------------------------------------------------------ cifar

@pytest.mark.parametrize("name,label", [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")])
def test_cifar_missing_root(tmp_path, name, label):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_splits(DatasetConfig(name=name, root=str(root)), seed=0)
    message = str(info.value)
    assert str(root) in message and label in message and "\n" not in message
    assert dataset_info(DatasetConfig(name=name)).num_classes == (10 if name == "cifar10" else 100)


@pytest.fixture
def tiny_cifar10(tmp_path, monkeypatch):
    """A 72-image CIFAR-10 folder in torchvision's format, which torchvision will read.

    torchvision reads only the genuine files: it checks each file's MD5 against the
    official ones. Those checksums are the one thing replaced here, by this folder's;
    torchvision's reader and petrinas' loader run as they would on real CIFAR-10."""
    import torchvision
    written = write_tiny_cifar10(tmp_path, per_batch=12)
    md5 = written["md5"]
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", [[name, md5[name]] for name, _ in cifar.train_list])
    monkeypatch.setattr(cifar, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5["batches.meta"]})
    return tmp_path, written


def _normalized(images: np.ndarray, pool: np.ndarray) -> torch.Tensor:
    """images normalized per channel with the statistics of `pool` (float64 reference)."""
    mean = pool.astype(np.float64).mean(axis=(0, 2, 3))[None, :, None, None]
    std = pool.astype(np.float64).std(axis=(0, 2, 3))[None, :, None, None]
    return torch.from_numpy((images - mean) / std).float()


def test_cifar10_folder_loads_through_the_cifar10_path(tiny_cifar10):
    root, written = tiny_cifar10
    cfg = DatasetConfig(name="cifar10", root=str(root))
    assert dataset_info(cfg) == dataset_info(DatasetConfig(name="cifar10"))
    splits = load_splits(cfg, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [54, 6, 12]
    # test: the official test batch, in order; train + val: the five training batches.
    assert torch.equal(splits["test"].indices, torch.arange(12))
    assert sorted(splits["train"].indices.tolist() + splits["val"].indices.tolist()) \
        == list(range(60))
    assert torch.equal(splits["test"].y, torch.from_numpy(written["test_y"]))
    assert torch.allclose(splits["test"].x, _normalized(written["test_x"], written["train_x"]),
                          atol=1e-5)
    train_ids = splits["train"].indices.numpy()
    assert torch.equal(splits["train"].y, torch.from_numpy(written["train_y"][train_ids]))
    assert torch.allclose(splits["train"].x,
                          _normalized(written["train_x"][train_ids], written["train_x"]),
                          atol=1e-5)


def test_a_seed_job_trains_on_a_cifar10_folder(tiny_cifar10):
    root, _ = tiny_cifar10
    config = load_config("petridish", [f"dataset.root={root}", "model.init_channels=4",
                                       "model.stem_multiplier=1",
                                       "search.seed_train.epochs=1",
                                       "search.seed_train.batch_size=16"])
    output = run_seed(config, (1, 0, 1), JobContext(seed=0))
    assert output.row["epochs"] == 1 and 0 <= output.row["test_top1"] <= 1
    assert output.desc["input_shape"] == [3, 32, 32] and output.desc["num_classes"] == 10


# -------------------------------------------------------------------- uint8 on device

def test_uint8_splits_normalize_per_batch_exactly_as_float_splits():
    """Bit for bit: the same float32 operations on the same pixels."""
    cfg = _synthetic()
    floats = load_splits(cfg, seed=0)
    raw = load_splits(cfg, seed=0, keep_uint8=True)
    index = torch.tensor([5, 0, 17, 3])
    for split in SPLITS:
        assert raw[split].x.dtype == torch.uint8 and raw[split].mean.dtype == torch.float32
        assert raw[split].x.element_size() * 4 == floats[split].x.element_size()
        assert torch.equal(raw[split].normalized().x, floats[split].x)
        assert torch.equal(raw[split].batch(index), floats[split].x[index])
        assert torch.equal(raw[split].batch(slice(2, 9)), floats[split].x[2:9])
        assert torch.equal(raw[split][4][0], floats[split][4][0])
        assert torch.equal(raw[split].y, floats[split].y)
    # The public loader still returns the float32 tensors that training used.
    assert torch.equal(load_dataset(cfg, split="test").x, floats["test"].x)


def test_keep_uint8_leaves_float_sources_as_they_are(digits_seed0):
    kept = load_splits(DatasetConfig(name="digits"), seed=0, keep_uint8=True)
    assert kept["train"].mean is None and kept["train"].normalized() is kept["train"]
    assert torch.equal(kept["train"].x, digits_seed0["train"].x)


# -------------------------------------------------------------------------- synthetic

def _synthetic(**overrides) -> DatasetConfig:
    return DatasetConfig(name="synthetic", **{"synthetic_shape": [3, 16, 16],
                                              "synthetic_size": 500, **overrides})


def test_synthetic_images_are_fixed_by_their_seed():
    x, y = synthetic_images((2, 5, 6), 3, 7, seed=0)
    assert x.dtype == np.uint8 and x.shape == (7, 2, 5, 6) and y.dtype == np.int64
    # Pinned: the benchmarks' data must not change silently.
    assert int(x.astype(np.int64).sum()) == 53225
    assert y.tolist() == [1, 2, 1, 2, 0, 1, 0]
    assert x[0, 0, 0].tolist() == [100, 103, 161, 164, 92, 62]
    again, _ = synthetic_images((2, 5, 6), 3, 7, seed=0)
    other, _ = synthetic_images((2, 5, 6), 3, 7, seed=1)
    assert np.array_equal(x, again) and not np.array_equal(x, other)


def test_synthetic_splits_follow_the_config():
    cfg = _synthetic(synthetic_classes=4)
    info = dataset_info(cfg)
    assert info.input_shape == (3, 16, 16) and info.num_classes == 4
    seed0, seed1 = load_splits(cfg, seed=0), load_splits(cfg, seed=1)
    assert [len(seed0[s]) for s in ("train", "val", "test")] == [360, 40, 100]
    assert seed0["train"].input_shape == (3, 16, 16) and seed0["test"].num_classes == 4
    assert set(torch.cat([s.y for s in seed0.values()]).tolist()) == {0, 1, 2, 3}
    # The run's seed picks train/val; the test split is the same in every run.
    assert torch.equal(seed0["test"].x, seed1["test"].x)
    assert not torch.equal(seed0["val"].indices, seed1["val"].indices)
    moved = load_splits(_synthetic(synthetic_classes=4, synthetic_seed=1), seed=0)
    assert not torch.equal(seed0["test"].x, moved["test"].x)


def test_synthetic_is_learnable_not_noise(one_thread):
    """A small conv net gets well above chance (0.1) within three epochs."""
    from petrinas.train.trainer import train
    from petrinas.config import TrainConfig
    splits = load_splits(_synthetic(synthetic_size=2000), seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1, stride=2, bias=False),
        torch.nn.BatchNorm2d(16), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 10))
    result = train(model, splits, TrainConfig(epochs=3, batch_size=64, lr=0.1), seed=0)
    assert result.final["test_top1"] > 0.8


# ----------------------------------------------------------------------- augmentation

def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augment_shape_and_determinism():
    x = torch.randn(32, 3, 8, 8)
    a = augment_batch(x, cutout=3, generator=_generator())
    b = augment_batch(x, cutout=3, generator=_generator())
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, cutout=3, generator=_generator(1)))


def test_augment_identity_without_ops():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(augment_batch(x, crop_padding=0, flip=False), x)


def test_flip_flips_some_samples():
    x = torch.randn(64, 2, 5, 7)
    out = augment_batch(x, crop_padding=0, flip=True, generator=_generator())
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x)]
    kept = [torch.equal(o, s) for o, s in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 64


def test_crop_is_a_shifted_window():
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).view(1, 2, 6, 6).repeat(16, 1, 1, 1) + 1
    out = augment_batch(x, crop_padding=2, flip=False, generator=_generator())
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    for sample in out:
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(sample, padded[:, dy:dy + 6, dx:dx + 6])]
        assert windows, "every output must be some window of the padded image"
    assert not all(torch.equal(o, x[0]) for o in out)


def test_cutout_zeroes_a_square():
    x = torch.ones(64, 3, 10, 10)
    out = augment_batch(x, crop_padding=0, flip=False, cutout=4, generator=_generator())
    assert torch.equal(out[:, 0], out[:, 1])  # the same square in every channel
    full_squares = 0
    for sample in out[:, 0]:
        rows = (sample == 0).any(dim=1).nonzero().flatten()
        cols = (sample == 0).any(dim=0).nonzero().flatten()
        assert 0 < len(rows) <= 4 and 0 < len(cols) <= 4
        # Zeros fill exactly the rectangle they span (clipped at the border).
        assert (sample == 0).sum() == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows)
        full_squares += len(rows) == 4 and len(cols) == 4
    assert full_squares > 0
