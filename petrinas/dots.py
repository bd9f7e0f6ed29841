"""A built-in task on which a cell's receptive field decides accuracy: two dots.

Each 12x12 grey image holds two bright dots on a noisy background. The class is where
the second dot lies from the first: one of four directions (right, down-right, down,
down-left) at a near (2 or 3 pixels along the direction) or a far (5 or 6) offset, 8
classes. One dot alone says nothing, so a feature that tells the classes apart must see
both dots at once: a receptive field at least as wide as their offset. A one-cell seed
model sees 7x7 (stem 3x3, then a sep_conv_3x3 node), which holds the near pairs but
hardly the far ones; a node that reads the cell's own node through a 3x3 conv sees 11x11,
a dilated conv more for its cost, a pooling op or a skip little more. So which (input,
op) pair a cell grows decides how many far pairs it can classify: the setting the pair
scores need (benchmarks/pair_value.py measures it), where digits saturates.

The images are generated from `seed` alone (not the run's seed), so the test split is
the same in every run, as for the other built-in datasets; stored as uint8.
"""

from __future__ import annotations

import numpy as np

SIZE = 12                                           # pixels along each side
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))      # (dy, dx): right, down-right, ...
OFFSETS = ((2, 3), (5, 6))                          # near, far: steps along a direction
CLASSES = len(DIRECTIONS) * len(OFFSETS)            # class = 4 * distance + direction
BACKGROUND, NOISE_STD = 60.0, 25.0                  # uint8 pixel units
DOT = (170.0, 230.0)                                # a dot's brightness above nothing


def dots_images(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` images (uint8, N x 1 x SIZE x SIZE) and their labels (int64, N)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=size)
    images = BACKGROUND + NOISE_STD * rng.standard_normal((size, SIZE, SIZE))
    direction = np.asarray(DIRECTIONS)[labels % len(DIRECTIONS)]             # N x 2
    steps = np.asarray(OFFSETS)[labels // len(DIRECTIONS),
                                rng.integers(0, 2, size=size)]               # N
    offset = direction * steps[:, None]                                      # N x 2
    first = _first_dots(rng, offset)
    second = first + offset
    rows = np.arange(size)
    for dot in (first, second):
        images[rows, dot[:, 0], dot[:, 1]] = rng.uniform(*DOT, size=size)
    pixels = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return pixels[:, None], labels.astype(np.int64)


def _first_dots(rng: np.random.Generator, offset: np.ndarray) -> np.ndarray:
    """A first dot for every offset, uniform over the positions where both dots fit."""
    low = np.maximum(0, -offset)                    # the second dot must not leave the
    high = SIZE - np.maximum(0, offset)             # image on either side
    return low + (rng.random(offset.shape) * (high - low)).astype(int)
