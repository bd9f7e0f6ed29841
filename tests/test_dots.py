"""The two-dots task (dataset.name=dots): the class is where the second dot lies from the
first, which only a receptive field spanning both can see."""

import numpy as np
import pytest

from petrinas import dots
from petrinas.config_loader import load_config
from petrinas.data import dataset_info, load_splits


def _dots_of(image: np.ndarray) -> list[tuple[int, int]]:
    """The two brightest pixels (the dots: every dot is brighter than any background)."""
    flat = np.argsort(image.ravel())[-2:]
    return sorted(divmod(int(i), dots.SIZE) for i in flat)


def test_each_label_is_the_offset_between_its_two_dots():
    """Fails if a label stops naming the offset between the dots (direction and near or
    far), or a dot can leave the image or be dimmer than the background's brightest."""
    x, y = dots.dots_images(2000, seed=5)
    assert x.dtype == np.uint8 and x.shape == (2000, 1, 12, 12) and y.dtype == np.int64
    assert sorted(set(y.tolist())) == list(range(8))
    for image, label in zip(x[:, 0], y):
        (r0, c0), (r1, c1) = _dots_of(image)
        offset = (r1 - r0, c1 - c0)
        direction = dots.DIRECTIONS[label % 4]
        steps = dots.OFFSETS[label // 4]
        assert offset in [(direction[0] * s, direction[1] * s) for s in steps], \
            (label, offset)
        background = np.delete(image.ravel(), [r0 * 12 + c0, r1 * 12 + c1])
        assert background.max() < image[r0, c0] and background.max() < image[r1, c1]


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    a, b, c = dots.dots_images(50, 1), dots.dots_images(50, 1), dots.dots_images(50, 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_the_config_loads_the_task_with_its_splits():
    config = load_config("petridish_dots")
    assert config.dataset.name == "dots"
    info = dataset_info(config.dataset)
    assert (info.input_shape, info.num_classes) == ((1, 12, 12), 8)
    splits = load_splits(config.dataset, seed=0)
    # 6,000 images: 1,200 held out for test, a quarter of the rest for validation.
    assert {k: len(v) for k, v in splits.items()} == {"train": 3600, "val": 1200,
                                                        "test": 1200}
    assert splits["train"].x.shape[1:] == (1, 12, 12)
    assert abs(float(splits["train"].x.mean())) < 0.05  # normalized
