"""Datasets as in-memory tensors, split the same way for every job.

Every dataset is held as one tensor of images and one int64 tensor of labels, so a job
slices batches out of memory (on its device) instead of waiting on a DataLoader. The
images are normalized float32, except where a job asks for `keep_uint8`: then images
stored as uint8 (CIFAR, image folders, synthetic, uint8 npz) stay uint8, a quarter of the
memory (CIFAR-10: 0.18 GB instead of 0.74 GB), and each batch is normalized when it is
taken, with the same float32 operations, so it is bit for bit the batch of the float32
tensors.

Splits:
  * test: fixed and independent of the run's seed. CIFAR uses its official test set; the
    other datasets (synthetic included: its images come from `synthetic_seed`) hold out
    `test_fraction` with a permutation from a constant seed.
  * train/val: the remaining ("pool") data split by `val_fraction` with a permutation
    from the run's seed; `max_train` caps the train split.
  * normalization: per-channel mean/std over the whole pool (train + val), so the
    statistics, and hence the test tensors, are the same whatever the seed.

Nothing is ever downloaded: a missing dataset is a `DataError` naming what is missing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from petrinas import dots
from petrinas.config import DATASETS, Config, DatasetConfig
from petrinas.errors import DataError
from petrinas.synthetic import synthetic_images

# The test split must never depend on the run's seed, so it gets its own constant one.
TEST_SPLIT_SEED = 12345
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm",
                            ".tif", ".tiff", ".webp"})
_CIFAR = {  # name -> (torchvision class, display name, folder torchvision expects, classes)
    "cifar10": ("CIFAR10", "CIFAR-10", "cifar-10-batches-py", 10),
    "cifar100": ("CIFAR100", "CIFAR-100", "cifar-100-python", 100),
}
_STATS_CHUNK = 4096  # samples per chunk when computing channel statistics


# --------------------------------------------------------------------------- data types

@dataclass(eq=False)  # eq=False: comparing tensors with == is not a bool
class TensorData(torch.utils.data.Dataset):
    """One split: images `x` (N×C×H×W) and labels `y` (N int64).

    `x` holds normalized float32 images, unless `mean` and `std` (C float32 each) are
    set: then it holds raw pixels (uint8), and `batch` normalizes what it takes.
    `indices` (optional, int64, on the CPU) are the examples' positions in the source
    data they were drawn from: the whole dataset for digits/imagefolder/npz/synthetic,
    the official train set (train/val) or test set (test) for CIFAR.
    """
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    indices: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() != 4 or self.y.dim() != 1 or len(self.x) != len(self.y):
            raise ValueError(f"TensorData needs x N×C×H×W and y N, got {tuple(self.x.shape)} "
                             f"and {tuple(self.y.shape)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("TensorData needs both mean and std, or neither")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(i), self.y[i]

    def subset(self, index: torch.Tensor) -> "TensorData":
        """The examples at `index` (a tensor of positions), as a split of their own."""
        return dataclasses.replace(
            self, x=self.x[index], y=self.y[index],
            indices=None if self.indices is None else self.indices[index.cpu()])

    def batch(self, index: int | slice | torch.Tensor) -> torch.Tensor:
        """The normalized float32 images at `index` (an int, a slice or index tensor)."""
        x = self.x[index]
        return normalize_pixels(x, self.mean, self.std) if self.mean is not None else x

    def normalized(self) -> "TensorData":
        """This split with normalized float32 images (itself if it has them already)."""
        if self.mean is None:
            return self
        return dataclasses.replace(self, x=self.batch(slice(None)), mean=None, std=None)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: str | torch.device) -> "TensorData":
        """A new TensorData with x, y (and mean, std) on `device` (tensors already there
        are shared; indices stay on the CPU: they are bookkeeping)."""
        stats = {} if self.mean is None else {"mean": self.mean.to(device),
                                               "std": self.std.to(device)}
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device), **stats)


def normalize_pixels(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel, in float32: the one normalization of every split, so
    a batch normalized when it is taken equals the same rows normalized in advance."""
    shape = (-1, 1, 1)  # C×1×1 broadcasts over N×C×H×W and C×H×W alike
    # copy=True: one new float32 tensor, then in place; never writes into `x` itself.
    return x.to(torch.float32, copy=True).sub_(mean.view(shape)).div_(std.view(shape))


@dataclass(frozen=True)
class DatasetInfo:
    input_shape: tuple[int, int, int]
    num_classes: int


@dataclass
class _Source:
    """Raw (unnormalized) N×C×H×W arrays: the non-test pool and the fixed test split."""
    pool_x: np.ndarray
    pool_y: np.ndarray
    pool_ids: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_ids: np.ndarray
    num_classes: int


# ------------------------------------------------------------------------- public API

def dataset_info(cfg: DatasetConfig) -> DatasetInfo:
    """Input shape and class count without loading the data."""
    if cfg.name in _CIFAR:
        return DatasetInfo((3, 32, 32), _CIFAR[cfg.name][3])
    if cfg.name == "digits":
        return DatasetInfo((1, 8, 8), 10)
    if cfg.name == "imagefolder":
        return _imagefolder_info(cfg)
    if cfg.name == "npz":
        return _npz_info(cfg)
    if cfg.name == "synthetic":
        return DatasetInfo(tuple(cfg.synthetic_shape), cfg.synthetic_classes)
    if cfg.name == "dots":
        return DatasetInfo((1, dots.SIZE, dots.SIZE), dots.CLASSES)
    raise _unknown_dataset(cfg.name)


def load_splits(cfg: DatasetConfig, seed: int, *,
                keep_uint8: bool = False) -> dict[str, TensorData]:
    """The "train", "val" and "test" splits of a dataset, normalized; with `keep_uint8`,
    images stored as uint8 stay so, with their normalization statistics attached."""
    source = _load_source(cfg)
    mean, std = _channel_stats(source.pool_x)
    return {split: _make_split(source, cfg, seed, split, mean, std, keep_uint8)
            for split in SPLITS}


def load_dataset(name_or_config: str | DatasetConfig | Config, split: str = "test", *,
                 root: str = "", seed: int | None = None,
                 **dataset_kwargs) -> TensorData:
    """One split, exactly as training saw it.

    `name_or_config` is a dataset name (with `root` and other DatasetConfig fields as
    keywords), a DatasetConfig, or a whole Config (its dataset section and its seed).
    `seed` only matters for "train" and "val"; it defaults to the Config's seed, else 0.
    """
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if isinstance(name_or_config, Config):
        cfg, default_seed = name_or_config.dataset, name_or_config.seed
    elif isinstance(name_or_config, DatasetConfig):
        cfg, default_seed = name_or_config, 0
    else:
        cfg, default_seed = DatasetConfig(name=name_or_config), 0
    overrides = dict(dataset_kwargs, **({"root": root} if root else {}))
    cfg = dataclasses.replace(cfg, **overrides)
    source = _load_source(cfg)
    mean, std = _channel_stats(source.pool_x)
    return _make_split(source, cfg, default_seed if seed is None else seed, split, mean, std)


# -------------------------------------------------------------------------- splitting

def _load_source(cfg: DatasetConfig) -> _Source:
    if cfg.name in _CIFAR:
        return _load_cifar(cfg)
    if cfg.name == "digits":
        x, y, num_classes = _load_digits()
    elif cfg.name == "imagefolder":
        x, y, num_classes = _load_imagefolder(cfg)
    elif cfg.name == "npz":
        x, y, num_classes = _load_npz(cfg)
    elif cfg.name == "synthetic":
        x, y = synthetic_images(tuple(cfg.synthetic_shape), cfg.synthetic_classes,
                                cfg.synthetic_size, cfg.synthetic_seed)
        num_classes = cfg.synthetic_classes
    elif cfg.name == "dots":
        x, y = dots.dots_images(cfg.synthetic_size, cfg.synthetic_seed)
        num_classes = dots.CLASSES
    else:
        raise _unknown_dataset(cfg.name)
    return _hold_out_test(x, y, num_classes, cfg.test_fraction)


def _hold_out_test(x: np.ndarray, y: np.ndarray, num_classes: int,
                   test_fraction: float) -> _Source:
    pool_ids, test_ids = _fixed_test_indices(len(y), test_fraction)
    return _Source(x[pool_ids], y[pool_ids], pool_ids, x[test_ids], y[test_ids], test_ids,
                   num_classes)


def _fixed_test_indices(n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 2:
        raise DataError(f"dataset: {n} examples are too few for test_fraction {test_fraction}")
    perm = np.random.default_rng(TEST_SPLIT_SEED).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _train_val_positions(n: int, cfg: DatasetConfig, seed: int) -> dict[str, np.ndarray]:
    """Positions in the pool of the train and val examples, from the run's seed."""
    n_val = int(round(n * cfg.val_fraction))
    if n_val < 1 or n_val >= n:
        raise DataError(f"dataset: {n} non-test examples are too few for "
                        f"val_fraction {cfg.val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    train = perm[n_val:]
    if cfg.max_train > 0:
        train = train[:cfg.max_train]
    return {"train": np.sort(train), "val": np.sort(perm[:n_val])}


def _make_split(source: _Source, cfg: DatasetConfig, seed: int, split: str,
                mean: np.ndarray, std: np.ndarray, keep_uint8: bool = False) -> TensorData:
    if split == "test":
        x, y, ids = source.test_x, source.test_y, source.test_ids
    else:
        positions = _train_val_positions(len(source.pool_y), cfg, seed)[split]
        x, y, ids = source.pool_x[positions], source.pool_y[positions], \
            source.pool_ids[positions]
    pixels = torch.from_numpy(np.ascontiguousarray(x))
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    labels, ids = torch.from_numpy(y.astype(np.int64)), torch.from_numpy(ids.astype(np.int64))
    if keep_uint8 and pixels.dtype == torch.uint8:
        return TensorData(pixels, labels, source.num_classes, ids, mean_t, std_t)
    return TensorData(normalize_pixels(pixels, mean_t, std_t), labels, source.num_classes, ids)


# ---------------------------------------------------------------------- normalization

def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over N, H, W, in chunks so CIFAR needs no float64 copy."""
    channels = x.shape[1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(x), _STATS_CHUNK):
        chunk = x[start:start + _STATS_CHUNK].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += np.square(chunk).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    # A constant channel carries no information; leave it at zero rather than divide by 0.
    std[std < 1e-8] = 1.0
    return mean, std


# ---------------------------------------------------------------------------- loaders

def _unknown_dataset(name: str) -> DataError:
    return DataError(f"dataset.name: unknown dataset {name!r} (known: {', '.join(DATASETS)})")


def _require_root(cfg: DatasetConfig) -> Path:
    if not cfg.root:
        raise DataError(f"dataset.root: required for dataset {cfg.name}")
    return Path(cfg.root).expanduser()


def _load_digits() -> tuple[np.ndarray, np.ndarray, int]:
    """scikit-learn's 8x8 digits, from the file it ships (no download). Read directly:
    importing scikit-learn for it takes 1.8 s, paid by the driver and again by every Ray
    worker's first trial; its loader stays the fallback where the file has moved."""
    csv = _sklearn_file("datasets", "data", "digits.csv.gz")
    if csv is None:
        from sklearn.datasets import load_digits
        digits = load_digits()
        return digits.images[:, None].astype(np.float32), digits.target.astype(np.int64), 10
    # load_digits's own reading: 64 pixel columns then the label, one row per image
    rows = np.loadtxt(csv, delimiter=",")
    return (rows[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32),
            rows[:, -1].astype(np.int64), 10)


def _sklearn_file(*parts: str) -> Path | None:
    """A data file inside the installed scikit-learn, found without importing it."""
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*parts)
        if path.is_file():
            return path
    return None


def _load_cifar(cfg: DatasetConfig) -> _Source:
    import torchvision  # lazy: slow to import and only CIFAR needs it

    class_name, display, folder, num_classes = _CIFAR[cfg.name]
    root = _require_root(cfg)
    dataset_cls = getattr(torchvision.datasets, class_name)
    try:
        train = dataset_cls(str(root), train=True, download=False)
        test = dataset_cls(str(root), train=False, download=False)
    except (RuntimeError, OSError):  # torchvision's "Dataset not found or corrupted"
        raise DataError(f"dataset.root: {display} not found in {root} "
                        f"(petrinas never downloads; put {folder} there)") from None
    # .data is uint8 N×H×W×C; transposing once avoids per-item transforms.
    train_x = np.ascontiguousarray(train.data.transpose(0, 3, 1, 2))
    test_x = np.ascontiguousarray(test.data.transpose(0, 3, 1, 2))
    train_y = np.asarray(train.targets, dtype=np.int64)
    test_y = np.asarray(test.targets, dtype=np.int64)
    return _Source(train_x, train_y, np.arange(len(train_y)), test_x, test_y,
                   np.arange(len(test_y)), num_classes)


# imagefolder -----------------------------------------------------------------------

def _imagefolder_classes(cfg: DatasetConfig) -> list[tuple[str, list[Path]]]:
    """(class name, sorted image files) per sub-folder of root, classes sorted by name."""
    root = _require_root(cfg)
    if not root.is_dir():
        raise DataError(f"dataset.root: image folder {root} not found")
    classes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"dataset.root: class folder {folder} has no images")
        classes.append((folder.name, files))
    if not classes:
        raise DataError(f"dataset.root: {root} has no class sub-folders (expected "
                        f"root/<class>/<image>)")
    return classes


def _imagefolder_info(cfg: DatasetConfig) -> DatasetInfo:
    classes = _imagefolder_classes(cfg)
    if cfg.image_size > 0:
        return DatasetInfo((3, cfg.image_size, cfg.image_size), len(classes))
    from PIL import Image
    first = classes[0][1][0]
    try:
        with Image.open(first) as image:  # reads the header only
            width, height = image.size
    except OSError as exc:
        raise DataError(f"dataset.root: cannot read image {first}: {exc}") from None
    return DatasetInfo((3, height, width), len(classes))


def _load_imagefolder(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray, int]:
    classes = _imagefolder_classes(cfg)
    images, labels = [], []
    for label, (_, files) in enumerate(classes):
        for path in files:
            images.append(_read_image(path, cfg.image_size))
            labels.append(label)
    first = images[0].shape
    for path, image in zip((p for _, files in classes for p in files), images):
        if image.shape != first:
            raise DataError(f"dataset.image_size: {path} is {image.shape[1]}x{image.shape[0]}, "
                            f"others are {first[1]}x{first[0]}; set image_size to resize")
    x = np.stack(images).transpose(0, 3, 1, 2)
    return x, np.asarray(labels, dtype=np.int64), len(classes)


def _read_image(path: Path, image_size: int) -> np.ndarray:
    """H×W×3 uint8, resized to image_size×image_size when image_size > 0."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image_size > 0:
                image = image.resize((image_size, image_size), Image.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"dataset.root: cannot read image {path}: {exc}") from None


# npz --------------------------------------------------------------------------------

def _npz_path(cfg: DatasetConfig) -> Path:
    path = _require_root(cfg)
    if not path.is_file():
        raise DataError(f"dataset.root: npz file {path} not found")
    return path


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        archive = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"dataset.root: cannot read {path} as .npz: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"dataset.root: {path} is a single array, not an .npz archive "
                        f"with arrays x and y")
    missing = [key for key in ("x", "y") if key not in archive.files]
    if missing:
        archive.close()
        raise DataError(f"dataset.root: {path} has no array {' or '.join(missing)} "
                        f"(has: {', '.join(archive.files) or 'nothing'})")
    return archive


def _read_npz_array(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"dataset.root: cannot read array {key} of {path}: {exc}") from None


def _npz_x_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of x.npy from its header, without reading the array.

    np.load's mmap_mode does not apply inside a zip archive, so the header is parsed
    directly; unknown header versions fall back to loading the array.
    """
    try:
        with zipfile.ZipFile(path) as zf, zf.open("x.npy") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                return shape, dtype
            if version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                return shape, dtype
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    with _open_npz(path) as archive:
        x = _read_npz_array(path, archive, "x")
        return x.shape, x.dtype


def _check_npz(path: Path, x_shape: tuple[int, ...], x_dtype: np.dtype,
               y: np.ndarray) -> None:
    if len(x_shape) not in (3, 4):
        raise DataError(f"dataset.root: {path}: x must be N×H×W or N×C×H×W, "
                        f"got shape {tuple(x_shape)}")
    if not (np.issubdtype(x_dtype, np.integer) or np.issubdtype(x_dtype, np.floating)):
        raise DataError(f"dataset.root: {path}: x must be numeric, got dtype {x_dtype}")
    if y.ndim != 1:
        raise DataError(f"dataset.root: {path}: y must be N labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"dataset.root: {path}: y must hold integer labels, got dtype {y.dtype}")
    if len(y) != x_shape[0]:
        raise DataError(f"dataset.root: {path}: x has {x_shape[0]} examples but y has {len(y)}")
    if len(y) == 0:
        raise DataError(f"dataset.root: {path}: no examples")
    if y.min() < 0:
        raise DataError(f"dataset.root: {path}: y has negative label {y.min()}")


def _npz_info(cfg: DatasetConfig) -> DatasetInfo:
    path = _npz_path(cfg)
    with _open_npz(path) as archive:
        y = _read_npz_array(path, archive, "y")  # labels are small; x stays on disk
    shape, dtype = _npz_x_header(path)
    _check_npz(path, shape, dtype, y)
    chw = (1, *shape[1:]) if len(shape) == 3 else shape[1:]
    return DatasetInfo(tuple(int(d) for d in chw), int(y.max()) + 1)


def _load_npz(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray, int]:
    path = _npz_path(cfg)
    with _open_npz(path) as archive:
        x = _read_npz_array(path, archive, "x")
        y = _read_npz_array(path, archive, "y")
    _check_npz(path, x.shape, x.dtype, y)
    if x.ndim == 3:
        x = x[:, None]
    return x, y.astype(np.int64), int(y.max()) + 1


# ----------------------------------------------------------------------- augmentation

def augment_batch(x: torch.Tensor, *, crop_padding: int = 4, flip: bool = True,
                  cutout: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (zero padding), horizontal flip and cutout for a whole N×C×H×W batch.

    Vectorized: crop and flip are one gather with per-sample index arithmetic and cutout is
    one mask, so there is no Python loop over samples and it runs wherever `x` lives.
    Random numbers come from `generator` (on its own device) or the global RNG.
    """
    if crop_padding > 0 or flip:
        x = _crop_and_flip(x, crop_padding, flip, generator)
    if cutout > 0:
        x = _cutout(x, cutout, generator)
    return x


def _random_ints(high: int, n: int, x: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
    """n ints in [0, high) drawn on the generator's device, then moved to x's device."""
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


def _crop_and_flip(x: torch.Tensor, padding: int, flip: bool,
                   generator: torch.Generator | None) -> torch.Tensor:
    n, _, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    top = _random_ints(2 * padding + 1, n, x, generator)
    left = _random_ints(2 * padding + 1, n, x, generator)
    flips = _random_ints(2, n, x, generator).bool() if flip else None
    rows = top[:, None] + torch.arange(h, device=x.device)        # N×H, in padded coords
    col_offsets = torch.arange(w, device=x.device).expand(n, w)  # N×W
    if flips is not None:  # a flipped sample reads its crop's columns right to left
        col_offsets = torch.where(flips[:, None], (w - 1) - col_offsets, col_offsets)
    cols = left[:, None] + col_offsets
    padded = F.pad(x, (padding, padding, padding, padding)).permute(0, 2, 3, 1)  # N×Hp×Wp×C
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # N×C×H×W
    # The gather's result is laid out channels_last already; keep the caller's layout.
    return out if channels_last else out.contiguous()


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Zero a size×size square centred on a random pixel (clipped at the border)."""
    n, _, h, w = x.shape
    top = _random_ints(h, n, x, generator) - size // 2
    left = _random_ints(w, n, x, generator) - size // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # N×H
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # N×W
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]      # N×1×H×W
    return x.masked_fill(mask, 0.0)
