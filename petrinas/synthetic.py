"""A synthetic image dataset: any shape and class count, the same for a given seed, and
learnable. For benchmarks and GPU smoke tests where no dataset files are present.

Each class has its own smooth colour pattern: a coarse grid of random values, upsampled
bilinearly to H×W and scaled to unit standard deviation. An example is its class's
pattern, shifted by up to MAX_SHIFT pixels in each direction (cyclically), at a random
contrast, plus pixel noise, stored as uint8 like CIFAR. The class is visible in every
pixel but no single pixel decides it, so a convolutional network learns it within a few
epochs while the noise keeps it from being trivial.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRID = 4            # cells of a class pattern along each side, before upsampling
MAX_SHIFT = 2       # pixels an example's pattern may be shifted by, in each direction
MEAN, PATTERN_STD, NOISE_STD = 128.0, 40.0, 32.0   # in uint8 pixel units
CONTRAST = (0.5, 1.0)  # range of the per-example multiplier of the pattern
CHUNK = 4096        # examples generated at once (bounds the float32 scratch memory)


def synthetic_images(shape: tuple[int, int, int], classes: int, size: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` images (uint8, N×C×H×W) and their labels (int64, N), from `seed` alone."""
    rng = np.random.default_rng(seed)
    shifted = shifted_patterns(class_patterns(rng, classes, shape))
    labels = rng.integers(0, classes, size=size)
    images = np.empty((size, *shape), dtype=np.uint8)
    for start in range(0, size, CHUNK):
        stop = min(start + CHUNK, size)
        images[start:stop] = _examples(rng, shifted, labels[start:stop])
    return images, labels.astype(np.int64)


def class_patterns(rng: np.random.Generator, classes: int,
                   shape: tuple[int, int, int]) -> np.ndarray:
    """classes×C×H×W float32 patterns, each with mean 0 and standard deviation 1."""
    channels, height, width = shape
    coarse = rng.standard_normal((classes, channels, min(GRID, height), min(GRID, width)))
    smooth = F.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bilinear",
                           align_corners=False).numpy()
    smooth -= smooth.mean(axis=(1, 2, 3), keepdims=True)
    spread = smooth.std(axis=(1, 2, 3), keepdims=True)
    return (smooth / np.where(spread > 0, spread, 1.0)).astype(np.float32)


def shifted_patterns(patterns: np.ndarray) -> np.ndarray:
    """classes×S×C×H×W: every pattern rolled by each (dy, dx) in [-MAX_SHIFT, MAX_SHIFT]².

    A table of the S = (2·MAX_SHIFT+1)² shifts is small, and picking from it is one
    gather per example instead of index arithmetic on every pixel."""
    offsets = range(-MAX_SHIFT, MAX_SHIFT + 1)
    return np.stack([np.roll(patterns, (dy, dx), axis=(2, 3))
                     for dy in offsets for dx in offsets], axis=1)


def _examples(rng: np.random.Generator, shifted: np.ndarray,
              labels: np.ndarray) -> np.ndarray:
    """One uint8 example per label: a shifted pattern at a random contrast, with noise."""
    n = len(labels)
    pixels = shifted[labels, rng.integers(0, shifted.shape[1], size=n)]
    pixels *= rng.uniform(*CONTRAST, size=(n, 1, 1, 1)).astype(np.float32) * PATTERN_STD
    pixels += NOISE_STD * rng.standard_normal(pixels.shape, dtype=np.float32)
    pixels += MEAN
    return np.clip(np.rint(pixels, out=pixels), 0, 255, out=pixels).astype(np.uint8)
