"""The rules every front end shares (the CLI, the backend, the add-on through messages.py, the evaluator):
which extraction settings exist and their bounds. Standard library only: the add-on reads it too."""

from __future__ import annotations

MODALITIES = ("image", "pointcloud", "voxels")  # the kinds of input, named alike everywhere

# Fewest usable points a point-cloud input may hold (the add-on checks before sending, the core again).
MIN_POINTS = 8
# Clouds of fewer points are reconstructed with a warning: the networks learned from 300 to 20,000 points, and
# from fewer than this their meshes break into pieces (a sphere: 8 points 26 pieces, 30 points 16, 100 points 2).
FEW_POINTS = 200

BOX_SIZE = 1.1  # the unit cube plus the reference's 0.1 padding: where the networks are evaluated

# Cells per axis of the final grid. All share the value store's 512-cell lattice, so a threshold or
# resolution change reuses every value evaluated before.
RESOLUTIONS = (32, 64, 128, 256, 512)
COARSE_RESOLUTION = 32  # MISE's first grid (the reference's resolution_0)
GPU_ONLY_RESOLUTION = 512  # from here on the add-on says a GPU is needed (or minutes on a CPU)


def coarse_resolution(resolution: int) -> int:
    """MISE's first grid for a final grid of `resolution` cells (dense evaluation below 32)."""
    return min(COARSE_RESOLUTION, resolution)


# Bounds on what one extraction may ask for (a request of 10**9 refinement steps would hold the backend for
# days): well beyond any use, small enough that no request can monopolise the machine.
MAX_REFINE_STEPS = 1_000
MAX_SIMPLIFY_FACES = 50_000_000
MAX_SEED = 2 ** 63 - 1
MAX_INPUT_POINTS = 5_000_000  # the most points a request's cloud may hold, and so the most the encoder can be given

# How refinement moves the vertices: "project" takes Newton steps along the logit's gradient onto the
# iso-surface (each vertex stops once it is there: 30 steps cost about one extraction); "optimise" is the
# paper's optimiser (RMSprop on face samples and face normals: each step one pass over the mesh).
REFINE_METHODS = ("project", "optimise")

# Test-time fitting (occnet/fitting.py): "auto" fits a local-feature network's planes to the observed points
# when there are at least FIT_AUTO_MIN_POINTS of them (it helped from 300 points up on every shape measured:
# BENCHMARKS.md, "Fitting"); "on" always (an error where it cannot be done), "off" never.
FIT_MODES = ("auto", "on", "off")
FIT_AUTO_MIN_POINTS = 200
MAX_FIT_STEPS = 1_000
# Shifted encodings (occnet/shifts.py): a local network reading a point cloud is run on copies of it, each moved
# by a quarter of a feature cell, and their fields averaged. Without a fit every cloud gets ENSEMBLE_NETWORK copies
# (the encoder and decoder are cheap); with one, each copy is fitted, so clouds of fewer than ENSEMBLE_FIT_BELOW
# points get ENSEMBLE_FITTED copies and denser ones one, where the fit's data term irons the creases out by itself.
# Measured (BENCHMARKS.md, "Shifted encodings"; bench_quality's 20 shapes, Chamfer-L1 x10, median time a shape):
# 300 points 1 copy 0.0972 (2.1 s), 2 copies 0.0934 (3.0 s), 4 copies 0.0920 (4.7 s; with 20 fit steps a copy
# instead of 40, 0.0939 in 3.6 s); 1,000 points 0.0658 -> 0.0637 -> 0.0635; 3,000 points 0.0375 -> 0.0369 (1.7x
# the time for 1.6%). The network alone, test split from 3,000 points: IoU 0.826 -> 0.855 with 4 copies.
ENSEMBLE_SIZES = (1, 2, 4)
ENSEMBLE_NETWORK = 4
ENSEMBLE_FITTED = 2
ENSEMBLE_FIT_BELOW = 3_000


def ensemble_size(modality: str, local: bool, observed_points: int, fitted: bool) -> int:
    """How many shifted encodings a reconstruction averages by default (see above)."""
    if modality != "pointcloud" or not local:
        return 1
    if not fitted:
        return ENSEMBLE_NETWORK
    return ENSEMBLE_FITTED if observed_points < ENSEMBLE_FIT_BELOW else 1


# Observed points a fit keeps (a random subset beyond: 24 MB of float32; each step draws a few thousand).
MAX_FIT_POINTS = 2_000_000
