"""A local network's field, averaged over encodings of the input shifted by a fraction of a feature cell.

A local (ConvONet) network reads its feature planes bilinearly, so its field bends along the planes' cell
borders: from sparse points a round shape comes out in panels, creased where the cells meet. The same cloud
moved by a quarter of a cell lands in other cells and gives a field creased elsewhere; the mean of a few such
fields, each read back at the moved position, keeps what they agree on and smooths the creases away.

How many copies a reconstruction takes, and the figures that chose it: ENSEMBLE_* in common/policy.py and
BENCHMARKS.md, "Shifted encodings". Point clouds only: a voxel grid or an image cannot be moved by part of a cell
without resampling it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..common.errors import InputError
from ..common.policy import BOX_SIZE, ENSEMBLE_SIZES

DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # box points (N, 3) -> logits (N,)

# Unit offsets of each ensemble size, in quarters of a feature cell: a pair along the diagonal, four at the corners
# of a tetrahedron; each set centred on the input, so the ensemble's mean position is the input's own.
_PATTERNS: dict[int, tuple[tuple[int, int, int], ...]] = {
    1: ((0, 0, 0),),
    2: ((-1, -1, -1), (1, 1, 1)),
    4: ((-1, -1, -1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)),
}
assert tuple(sorted(_PATTERNS)) == ENSEMBLE_SIZES


class EnsembleRefused(InputError):
    """An ensemble size that cannot be used for this input or network (the backend names the field)."""


def _unknown_size(size: object) -> EnsembleRefused:
    return EnsembleRefused(f"ensemble must be 0 (automatic) or one of {', '.join(map(str, ENSEMBLE_SIZES))}, "
                           f"got {size!r}")


def check_ensemble(size: object, modality: str, local: bool) -> int:
    """A requested ensemble size, refused with a one-line reason where it cannot be done."""
    if not isinstance(size, int) or isinstance(size, bool) or size not in ENSEMBLE_SIZES:
        raise _unknown_size(size)
    if size > 1 and (modality != "pointcloud" or not local):
        raise EnsembleRefused("shifted encodings need a point cloud and a local-feature network; use ensemble 1 "
                              "(or 0, automatic)")
    return size


def shift_offsets(size: int, feature_resolution: int) -> np.ndarray:
    """(size, 3) float32 offsets in the network's box frame: quarter cells of a feature plane with
    `feature_resolution` samples along each side (align_corners=True: resolution - 1 cells over the box)."""
    if size not in _PATTERNS:
        raise _unknown_size(size)
    quarter = BOX_SIZE / (feature_resolution - 1) / 4.0
    return (np.asarray(_PATTERNS[size], np.float32) * quarter).astype(np.float32)


def averaged(decodes: Sequence[DecodeFn], offsets: np.ndarray) -> DecodeFn:
    """The mean logit of the members, each read where its shifted input put the point. One member is itself."""
    if len(decodes) != len(offsets):
        raise ValueError(f"{len(decodes)} decoders for {len(offsets)} offsets")
    if len(decodes) == 1 and not offsets.any():
        return decodes[0]
    moves = [torch.from_numpy(offset) for offset in offsets]

    def decode(points: torch.Tensor) -> torch.Tensor:
        total = None
        for member, move in zip(decodes, moves):
            logits = member(points + move.to(points.device, points.dtype))
            total = logits if total is None else total + logits
        assert total is not None
        return total / len(decodes)

    return decode
