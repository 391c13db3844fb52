"""Test-time fitting: the encoded feature maps adapted so the surface agrees with what was observed.

A network trained for a few CPU-hours on procedural shapes draws every shape in the style of its training
set, and its encoder keeps only what 32 x 32 planes hold of the input. The observation itself says more:
after encoding, the feature maps (upsampled 2x, so they can hold finer detail than the encoder wrote) are
optimised with the decoder frozen, so that

- data (point clouds): the logit at each observed point is the surface's level, an L1 loss (a few far
  outliers pull with a bounded force); the points are drawn from the whole cloud at every step, so every
  point the user gave counts, at any density;
- labels (voxel grids): the cells the grid says are empty are outside, its filled inner cells inside;
- prior (point clouds): away from the points (beyond PRIOR_CLEARANCE of every one) the occupancy stays what
  the encoded network predicted, so parts the input does not show are completed by the network's prior;
- direction (point clouds): just outside and inside each point along its normal, the side the encoded network
  gives (so a thin part seen from one side keeps a sign change, not a field near the level all through it);
- smoothness: the change made to the maps is kept smooth (squared differences of neighbouring cells), so
  finer maps follow the shape without following each noisy point.

Designs measured and left (BENCHMARKS.md, "Fitting"): blending the network with an implicit moving-least-
squares surface of the points (as good on smooth shapes, but spurious sheets where the two disagreed); free-
space and inside labels from the points' oriented normals (2% better, twice the code); maps upsampled 4x
(no better, slower); fitting the decoder's weights too (worse in 60 steps); a 32^3 or 48^3 feature grid added
to the planes (organic shapes 15-20% better, some procedural ones 20-30% worse from 20,000 points, 1.6-2.5x the
time). What no variant removed: a sheet the network spans between thin parts (a chair's star base, a creature's
legs), which even true labels did not carve away with the decoder frozen: the three planes cannot say "empty"
between the arms and "solid" on them. The fitted field is therefore held to the points' winding number away
from them (winding.py), which takes those sheets away.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch.nn import functional as F

from ..common.errors import Cancelled, InputError
from ..common.geometry import face_normals, subsample
from ..common.policy import BOX_SIZE, FIT_AUTO_MIN_POINTS, FIT_MODES, MAX_FIT_STEPS
from .local import Features, LocalDecoder
from .meshing import neighbour_average, vertex_adjacency
from .winding import median_spacing, surrounded

ProgressFn = Callable[[str, float], None]
CancelFn = Callable[[], bool]

# No prior target within this distance of an observed point (box units: the unit cube's side is 1): there
# the data decides. About 4x the noise a scanner leaves at 0.005 of the object's size.
PRIOR_CLEARANCE = 0.02
PRIOR_CANDIDATES = 10_000  # uniform box points from which the prior's targets are kept
# A prior target the network puts inside, where the points do not surround it (winding.surrounded), counts this
# many times: there the network completes what the scan did not show (the back of a one-sided view, a scan's
# underside), and with the data term pulling the shared feature planes, the fit wore that part away (a one-sided
# sofa's IoU 0.475 -> 0.336). Measured (bench_quality's shapes, 1 a kind, Chamfer-L1 x10, 1 -> 20): one-sided
# partial views 0.1573 -> 0.1542, line scans 0.0717 -> 0.0699 (a gear 0.144 -> 0.108); 300 and 3,000 points
# unchanged (0.0979 -> 0.0980, 0.0412 both). prior_weight 2 everywhere did more for partial views (0.148) but cost
# 300-point clouds (0.098 -> 0.103).
PRIOR_UNSEEN_WEIGHT = 20.0
CLEARANCE_POINTS = 100_000
# The level at the points, given a direction: targets DIRECTION_OFFSET outside and inside each of DIRECTION_POINTS
# points along its normal (the least-spread direction of its DIRECTION_NEIGHBOURS nearest points), turned the way
# the encoded network's occupancy falls where it says so by DIRECTION_CONFIDENCE logits, each counting
# DIRECTION_WEIGHT in the prior term. With points on one face of a thin part (a one-sided view of a bench's seat),
# the data term alone was met by a field lying near the level all through the part, and marching cubes tore it
# (IoU 0.531 -> 0.307; with these targets 0.472). Measured (bench_quality's shapes, 1 a kind, Chamfer-L1 x10):
# one-sided views 0.1542 -> 0.1487, 3,000 points 0.0381 -> 0.0375, 300 points 0.0978 -> 0.0972; line scans
# 0.0697 -> 0.0703 (9 shapes better, 7 worse, most the knot 0.099 -> 0.114: between its rows the network errs).
DIRECTION_OFFSET = 0.006
DIRECTION_POINTS = 10_000
DIRECTION_NEIGHBOURS = 16
DIRECTION_CONFIDENCE = 0.5
DIRECTION_WEIGHT = 30.0


class FitRefused(InputError):
    """A fit asked for where it cannot be done (a global-code network, an input that is not a point cloud)."""


@dataclass(frozen=True)
class FitSettings:
    """How the features are fitted. The defaults are the measured ones (bench/bench_quality.py)."""

    # 40 steps of 2,048 + 1,024 points at 0.015 measured as good as 60 of 4,096 + 2,048 at 0.01 (Chamfer-L1 within
    # 1%, 24 shape-and-count pairs) in half the time; 30 steps at 0.02 lost a little.
    steps: int = 40
    learning_rate: float = 0.015
    data_points: int = 2048  # observed points drawn at each step
    prior_points: int = 1024  # prior points drawn at each step
    prior_weight: float = 0.1
    upsample: int = 2  # feature cells per encoded cell along each side
    smoothness: float = 30.0  # against 10: normal consistency 0.90 -> 0.92, Chamfer-L1 3% lower; 100 lost detail
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.steps, int) and 1 <= self.steps <= MAX_FIT_STEPS):
            raise InputError(f"fit steps must be an integer from 1 to {MAX_FIT_STEPS}, got {self.steps!r}")
        if self.upsample not in (1, 2, 4):
            raise InputError(f"fit upsample must be 1, 2 or 4, got {self.upsample!r}")


def should_fit(mode: str, local: bool, observed_points: int, modality: str = "pointcloud") -> bool:
    """Whether a reconstruction fits its features: `mode` is one of FIT_MODES. 'auto' fits local networks
    given a point cloud of at least FIT_AUTO_MIN_POINTS points; not voxel grids (their fit measured worse than
    the network alone: BENCHMARKS.md, "Fitting"). 'on' asks for it and is an error where it cannot be done."""
    if mode not in FIT_MODES:
        raise FitRefused(f"fit must be one of {', '.join(FIT_MODES)}, got {mode!r}")
    if mode == "off":
        return False
    if mode == "auto":
        return local and modality == "pointcloud" and observed_points >= FIT_AUTO_MIN_POINTS
    if not local:
        raise FitRefused("fitting adapts a local-feature network's planes; these weights hold one global code "
                         "(an ONet): use fit off, or ConvONet weights such as the bundled point-cloud ones")
    return True


@dataclass
class Observation:
    """What a fit matches: points on the surface (a cloud's), and/or points whose occupancy is known (a voxel
    grid's cell centres), in the network's box frame."""

    surface: np.ndarray | None = None  # (N, 3) float32: the logit there is the surface's level
    labelled: np.ndarray | None = None  # (M, 3) float32
    occupancy: np.ndarray | None = None  # (M,) float32 in [0, 1]
    spread: np.ndarray | None = None  # (M,) float32: a label holds in a cube this wide around its point

    @classmethod
    def of_voxels(cls, grid: np.ndarray) -> Observation:
        """A 32^3 [x, y, z] grid over the unit cube, labelled as the project's voxelisation makes it: a cell is
        filled when its centre is inside or the surface crosses it, so an empty cell lies wholly outside and
        a filled cell whose six neighbours are filled (almost always) wholly inside; both labels hold anywhere
        in the cell. A filled cell on the boundary may hold the surface anywhere in it: no label, the network
        decides there (measured: labelling its centre inside pulled the surface out to the blocks, and asking
        that the most solid of a few points drawn in it be inside grew bumps in every such cell)."""
        filled = grid > 0.5
        padded = np.pad(filled, 1)
        neighbours = [padded[1 + dx:padded.shape[0] - 1 + dx, 1 + dy:padded.shape[1] - 1 + dy,
                             1 + dz:padded.shape[2] - 1 + dz]
                      for dx, dy, dz in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))]
        known = (~filled | np.logical_and.reduce(neighbours)).reshape(-1)
        n = grid.shape[0]
        centres = ((np.indices(grid.shape).reshape(3, -1).T + 0.5) / n - 0.5).astype(np.float32)
        return cls(labelled=centres[known], occupancy=filled.reshape(-1)[known].astype(np.float32),
                   spread=np.full(int(known.sum()), 1.0 / n, np.float32))

    @property
    def count(self) -> int:
        return sum(0 if a is None else len(a) for a in (self.surface, self.labelled))

    def shifted(self, offset: np.ndarray) -> Observation:
        """The same observation moved by `offset` (3,) (an ensemble member's input: occnet/shifts.py)."""
        if not offset.any():
            return self
        return dataclasses.replace(self, **{name: None if points is None else (points + offset).astype(np.float32)
                                            for name, points in (("surface", self.surface),
                                                                 ("labelled", self.labelled))})


def fit_features(decoder: LocalDecoder, features: Features, observed: np.ndarray | Observation, level: float,
                 settings: FitSettings = FitSettings(), progress: ProgressFn | None = None,
                 should_cancel: CancelFn | None = None) -> tuple[Features, dict[str, float | int]]:
    """Feature maps fitted to an observation (surface points (N, 3) of the network's box frame, or an
    Observation); returns them (detached, upsampled by settings.upsample) and statistics. The decoder is
    not changed."""
    observation = observed if isinstance(observed, Observation) else Observation(surface=observed)
    surface = observation.surface
    if surface is not None and (surface.ndim != 2 or surface.shape[1] != 3 or len(surface) == 0):
        raise InputError(f"fitting needs observed points of shape (N, 3), got {surface.shape}")
    if observation.count == 0:
        raise InputError("fitting needs an observation: surface points or labelled points")
    report = progress or (lambda stage, fraction: None)
    started = time.perf_counter()
    report("fitting", 0.0)
    device = next(iter(features.values())).device
    generator = torch.Generator().manual_seed(settings.seed)

    with torch.no_grad():
        encoded = {name: fmap.detach().clone() for name, fmap in features.items()}  # out of inference mode
        base = {name: _upsample(fmap, settings.upsample) for name, fmap in encoded.items()}
    fitted = {name: fmap.clone().requires_grad_() for name, fmap in base.items()}
    optimiser = _Adam(list(fitted.values()), settings.learning_rate)

    if should_cancel is not None and should_cancel():
        raise Cancelled("cancelled")

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)

    points = tensor(surface) if surface is not None else None
    if surface is not None:
        # One thinned cloud and its tree for both: at most CLEARANCE_POINTS of it (a denser cloud lies closer
        # together than the clearance anyway, and a tree of 2 million points would hold a cancel for seconds).
        cloud = subsample(surface, CLEARANCE_POINTS, settings.seed)
        tree = cKDTree(cloud)
        prior_points, prior_target, prior_counts = _prior(decoder, encoded, cloud, tree, settings.seed, device)
        directed, sides = _directed(decoder, encoded, cloud, tree, settings.seed, device)
        prior_points, prior_target = torch.cat([prior_points, directed]), torch.cat([prior_target, sides])
        prior_counts = torch.cat([prior_counts, torch.full_like(sides, DIRECTION_WEIGHT)])
    else:  # labelled points say everything there is to say about the box: no prior term
        prior_points = prior_target = prior_counts = torch.zeros(0, device=device)
    labelled = None
    if observation.labelled is not None and observation.occupancy is not None:
        widths = observation.spread if observation.spread is not None else np.zeros(len(observation.labelled))
        labelled = (tensor(observation.labelled), tensor(observation.occupancy), tensor(widths))
    for parameter in decoder.parameters():  # the decoder stays as it is: gradients for the maps only
        parameter.requires_grad_(False)
    try:
        for step in range(settings.steps):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            report("fitting", step / settings.steps)
            loss = torch.zeros((), device=device)
            if points is not None:
                pick = torch.randint(len(points), (min(settings.data_points, len(points)),), generator=generator)
                loss = loss + (decoder(points[pick.to(device)][None], fitted)[0] - level).abs().mean()
            if labelled is not None:
                where, occupancy, spread = labelled
                pick = torch.randint(len(where), (min(settings.data_points, len(where)),), generator=generator)
                offset = (torch.rand(len(pick), 3, generator=generator) - 0.5).to(device)
                pick = pick.to(device)
                at = where[pick] + offset * spread[pick, None]
                logits = decoder(at[None], fitted)[0] - level  # the label's boundary is the surface
                loss = loss + F.binary_cross_entropy_with_logits(logits, occupancy[pick])
            if len(prior_points):
                pick = torch.randint(len(prior_points), (settings.prior_points,), generator=generator).to(device)
                logits = decoder(prior_points[pick][None], fitted)[0]
                misfit = F.binary_cross_entropy_with_logits(logits, prior_target[pick], reduction="none")
                loss = loss + settings.prior_weight * (misfit * prior_counts[pick]).mean()
            if settings.smoothness:
                loss = loss + settings.smoothness * sum(_roughness(fitted[k] - base[k]) for k in fitted)
            optimiser.step(torch.autograd.grad(loss, optimiser.parameters))
    finally:
        for parameter in decoder.parameters():
            parameter.requires_grad_(True)
    report("fitting", 1.0)
    stats: dict[str, float | int] = {"fit_steps": settings.steps, "fit_points": observation.count,
                                     "seconds_fit": round(time.perf_counter() - started, 4)}
    return {name: fmap.detach() for name, fmap in fitted.items()}, stats


class _Adam:
    """Adam (Kingma and Ba) on a few tensors. torch.optim's first step imports TorchDynamo, which held a
    cancel for 1.5 s in a fresh process; these few lines do the same arithmetic."""

    def __init__(self, parameters: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.parameters, self.lr, self.betas, self.eps = parameters, lr, betas, eps
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in parameters]
        self.steps = 0

    @torch.no_grad()
    def step(self, gradients: tuple[torch.Tensor, ...]) -> None:
        self.steps += 1
        b1, b2 = self.betas
        for parameter, gradient, (mean, square) in zip(self.parameters, gradients, self.moments):
            mean.mul_(b1).add_(gradient, alpha=1 - b1)
            square.mul_(b2).addcmul_(gradient, gradient, value=1 - b2)
            denominator = (square / (1 - b2 ** self.steps)).sqrt_().add_(self.eps)
            parameter.addcdiv_(mean, denominator, value=-self.lr / (1 - b1 ** self.steps))


def _upsample(fmap: torch.Tensor, factor: int) -> torch.Tensor:
    if factor == 1:
        return fmap.clone()
    mode = "trilinear" if fmap.ndim == 5 else "bilinear"
    # align_corners=True: the decoder samples with align_corners=True, so the upsampled map is the same
    # function of the point as the encoded one until the fit changes it.
    return F.interpolate(fmap, scale_factor=factor, mode=mode, align_corners=True)


def _roughness(change: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring cells along every spatial axis of a (B, C, ...) map."""
    total = change.new_zeros(())
    for axis in range(2, change.ndim):
        total = total + torch.diff(change, dim=axis).pow(2).mean()
    return total


def _prior(decoder: LocalDecoder, encoded: Features, observed: np.ndarray, tree: cKDTree, seed: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform box points farther than PRIOR_CLEARANCE from every observed point (`tree` holds them), the encoded
    network's occupancy there (the target that keeps unobserved parts as the prior drew them), and how much each
    counts (PRIOR_UNSEEN_WEIGHT where the network puts it inside and the points do not surround it, else 1)."""
    rng = np.random.default_rng(seed)
    # Half uniform in the box, half a little off the points (0.02 to 0.1 away, in random directions): the fit
    # changes the field most near the points, and without targets there it grew bubbles just off the surface.
    near = observed[rng.integers(len(observed), size=PRIOR_CANDIDATES // 2)]
    step = rng.normal(size=near.shape)
    step *= rng.uniform(PRIOR_CLEARANCE, 5 * PRIOR_CLEARANCE, (len(near), 1)) / np.linalg.norm(step, axis=1,
                                                                                                  keepdims=True)
    candidates = np.concatenate([rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (PRIOR_CANDIDATES // 2, 3)),
                                 np.clip(near + step, -BOX_SIZE / 2, BOX_SIZE / 2)]).astype(np.float32)
    distance, _ = tree.query(candidates, workers=-1)
    far = candidates[distance > PRIOR_CLEARANCE]
    kept = torch.from_numpy(far).to(device)
    with torch.no_grad():
        target = torch.sigmoid(decoder(kept[None], encoded)[0]) if len(kept) else kept.new_zeros(0)
    unseen = (target.cpu().numpy() > 0.5) & ~surrounded(far, observed, median_spacing(tree, observed))
    counts = torch.from_numpy(np.where(unseen, PRIOR_UNSEEN_WEIGHT, 1.0).astype(np.float32)).to(device)
    return kept, target, counts


def _directed(decoder: LocalDecoder, encoded: Features, observed: np.ndarray, tree: cKDTree, seed: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets just outside (0) and inside (1) the observed points (`tree` holds them) along their normals, where
    the encoded network says which side is which (DIRECTION_OFFSET above)."""
    if len(observed) < DIRECTION_NEIGHBOURS:
        empty = torch.zeros(0, device=device)
        return empty.reshape(0, 3), empty
    points = subsample(observed, DIRECTION_POINTS, seed + 3).astype(np.float64)
    around = observed[tree.query(points, k=DIRECTION_NEIGHBOURS, workers=-1)[1]] - points[:, None]
    normals = np.linalg.eigh(np.einsum("nki,nkj->nij", around, around))[1][:, :, 0]
    ahead = (points + DIRECTION_OFFSET * normals).astype(np.float32)
    behind = (points - DIRECTION_OFFSET * normals).astype(np.float32)
    with torch.no_grad():
        both = torch.from_numpy(np.concatenate([ahead, behind])).to(device)
        logits = decoder(both[None], encoded)[0].cpu().numpy()
    rise = logits[:len(points)] - logits[len(points):]  # occupancy rising along the normal: it points inside
    sure = np.abs(rise) > DIRECTION_CONFIDENCE
    outside = np.where((rise < 0)[:, None], ahead, behind)[sure]
    inside = np.where((rise < 0)[:, None], behind, ahead)[sure]
    where = torch.from_numpy(np.concatenate([outside, inside])).to(device)
    sides = torch.cat([torch.zeros(len(outside)), torch.ones(len(inside))]).to(device)
    return where, sides


# Moving the mesh onto the points (project_onto_points). Two least-squares surfaces are fitted around each vertex
# to the points on its own side of the shape (Gaussian-weighted): a near plane (the PROJECTION_NEAR_NEIGHBOURS
# nearest within PROJECTION_NEAR_RADIUS) and a wide one (the PROJECTION_NEIGHBOURS nearest within the wide radius,
# projection_radius: a quadric height field where PROJECTION_QUADRIC_POINTS are there, a plane where fewer are).
# A fit needs PROJECTION_MIN_POINTS. The vertex goes onto the wide surface where its residual is within
# WIDE_RESIDUAL_RATIO of the near plane's (or, with no near plane, of WIDE_RESIDUAL_GATE times the wide fits'
# median residual over the mesh), else onto the near plane; never further than the radius of the fit.
# Measured (BENCHMARKS.md, "Fitting", v7), against the near plane alone (the earlier projection): a plane through
# points on a curved surface lies inside it (0.003 on a knot's tube from 20,000 points, as much as the noise),
# and the wider neighbourhood that averages noise out needs the quadric to follow the curve; the wide fit alone
# rounded a chair's, a sofa's and a mug's edges from 3,000 points (where its residual is large), and without the
# side test it pulled a spring's coils towards each other (Chamfer-L1 x10 0.057 -> 0.084 from 3,000 points).
PROJECTION_RADIUS = 0.05
# Below 20,000 points 0.05 holds too few: from 3,000 points over an object about 10 in all, fewer than a fit needs
# around 43% of a knot's vertices, and there the fitted field's ripples stayed (its surface 40% larger than the
# truth's). So the wide neighbourhood grows to PROJECTION_SPACINGS median spacings (projection_radius, at most
# PROJECTION_MAX_RADIUS), but only ever for a quadric through PROJECTION_QUADRIC_POINTS points; elsewhere the
# vertex is fitted within PROJECTION_RADIUS as before. Measured (bench_quality's shapes, 1 a kind, Chamfer-L1 x10,
# before -> after): from 3,000 points all 20 0.0412 -> 0.0381 (organic 0.0343 -> 0.0299, kinds never trained on
# 0.0504 -> 0.0428, a knot 0.064 -> 0.043, as Poisson's 0.043), from 2,000 0.0520 -> 0.0472, from 1,000 0.0679 ->
# 0.0674, from 300 0.0980 -> 0.0978; 20,000 points unchanged (0.05 holds enough). Planes in the grown radius too
# cost sparse clouds: 300 points 0.0980 -> 0.1006, procedural shapes from 1,000 0.053 -> 0.056.
PROJECTION_SPACINGS = 6.0
PROJECTION_MAX_RADIUS = 0.09
PROJECTION_NEIGHBOURS = 64
PROJECTION_NEAR_RADIUS = 0.03
PROJECTION_NEAR_NEIGHBOURS = 24
PROJECTION_MIN_POINTS = 8
PROJECTION_QUADRIC_POINTS = 16
WIDE_RESIDUAL_RATIO = 2.0
WIDE_RESIDUAL_GATE = 1.5
PROJECTION_NORMAL_ROUNDS = 5  # the mesh's vertex normals averaged over neighbours: the fitted field is bumpy
PROJECTION_TREE_POINTS = 500_000
# Vertices looked at at once: a row costs about 16 KB while its fits are worked out (its 64 neighbours' arrays),
# so memory stays near 80 MB on meshes of millions of vertices.
PROJECTION_ROWS = 5_000
# A neighbourhood whose points spread in one direction only (a scan line, a ring of a mesh's vertices, one spot)
# has no surface to fit: its least-spread direction lies along the surface, not across it, and the vertex was
# pulled sideways by up to the radius (a sphere scanned in rings 0.06 apart: 29% of the faces turned over 30
# degrees, 2.9% with this guard). The second direction's variance must be at least this share of the first's.
PROJECTION_MIN_FLATNESS = 0.05
# Each fit is itself noisy, so a vertex moves only by the share of its step that stands above that noise (a
# James-Stein shrinkage): w = 1 - STEP_NOISE_SHARE * r^2 / <|step|^2>, where r is the fits' median residual over
# the mesh and <> averages over the vertex's mesh neighbourhood (STEP_NOISE_ROUNDS rounds of averaging). Where the
# fitted surface ripples (round shapes drawn by a network that learned boxes) the steps are large and coherent and
# are taken whole; where it already lies on the points (a box's faces) they are about the noise and shrink. Measured
# (BENCHMARKS.md, "Fitting": the projection's steps shrunk by their noise), Chamfer-L1 x10 from 3,000 points:
# procedural 0.0375 -> 0.0362, organic 0.0295 -> 0.0296, never trained on 0.0418 -> 0.0417; from 20,000 points
# procedural 0.0285 -> 0.0278, the others level. The whole step (share 0) had cost man-made shapes 7% against no
# projection at all.
STEP_NOISE_SHARE = 0.07
STEP_NOISE_ROUNDS = 6
# A vertex the first pass could not fit gets a second chance from where the first left the mesh: where the fitted
# surface is lumpy (a knot's tube drawn 0.008 off from 3,000 points) its normals turn, the points beneath it face
# the other way, and too few count for the vertex's side; after the first pass its neighbours lie on the points and
# the normals are right (16% of a knot's vertices unfitted after one pass, 8% after two). Only those vertices move:
# a second pass over all of them cost man-made shapes (the chair from 3,000 points 0.0502 -> 0.0511).
SECOND_PASS = True
# A step longer than PROJECTION_SIDEWAYS_STEP that runs more along the surface than across it (its cosine with the
# vertex normal under PROJECTION_SIDEWAYS_COSINE) is not taken. A projection moves a vertex across the surface; one
# that slides it along is a vertex at the edge of what the points cover pulled onto their surface's extension: in a
# one-sided view the rim and the back of a thin part (a wing, a bench's seat) slid onto the seen side, and the part
# came out torn (30% of the moved vertices of a one-sided airplane stepped over 0.01, 72% of those mostly along the
# surface). Measured: BENCHMARKS.md, "Fitting", "Sideways steps".
PROJECTION_SIDEWAYS_COSINE = 0.3
PROJECTION_SIDEWAYS_STEP = 0.015
# Where the points are far (beyond FOLD_SPACINGS median spacings, and at least FOLD_MIN_REACH), a vertex lies on
# what the network drew of a part nobody saw, and its step is dropped when one of its faces turns over (whichever
# vertex's step turned it; FOLD_ROUNDS rounds, since a vertex held back can turn its neighbours' faces in turn). In a
# one-sided view the faces at the edge of what was seen, 0.01-0.05 from the points, were pulled onto the seen side
# patch by patch: 7% of a bench's faces turned over and the unseen band's area grew 2.3x, so the projection made the
# one-sided bench, chair, table and airplane worse than no projection at all (Chamfer-L1 x10 0.093 against 0.083).
# Near the points a turned face is a wrinkle of the network's surface being flattened, and between a line scan's
# rows (a few spacings apart) the same guard kept a line-scanned knot's webs (Chamfer-L1 x10 0.089 -> 0.097 with
# the guard everywhere, 0.092-0.093 with a fixed reach of 0.01-0.02). Measured:
# BENCHMARKS.md, "Fitting", "Folds".
FOLD_SPACINGS = 6.0
FOLD_MIN_REACH = 0.01
FOLD_ROUNDS = 5


def project_onto_points(vertices: np.ndarray, faces: np.ndarray, observed: np.ndarray,
                        should_cancel: CancelFn | None = None,
                        progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, int]:
    """The fitted surface passes through the points only as closely as the feature planes can draw it; this
    puts each vertex that has enough points around it onto their local surface (a moving-least-squares
    projection: the points' noise averages out over the neighbourhood). A point counts for a vertex when the
    mesh vertex nearest the point faces the same way as this one (normals less than 90 degrees apart), so the
    two sides of a thin part or two coils close together are not blended; a vertex with too few gets a second
    pass (SECOND_PASS). Each vertex then moves by the share of its step above the fits' noise (STEP_NOISE_SHARE,
    which may be none). Returns the vertices and how many had a surface fitted; `progress` hears the share done."""
    points = subsample(observed, PROJECTION_TREE_POINTS).astype(np.float64)
    out = vertices.astype(np.float64)
    if len(out) == 0 or len(faces) == 0 or len(points) == 0:  # no faces: no normals, so no side to fit on
        if progress is not None:
            progress(1.0)
        return vertices, 0
    tree = cKDTree(points)
    spacing = median_spacing(tree, points)
    radius = projection_radius(spacing)
    fold_reach = max(FOLD_MIN_REACH, FOLD_SPACINGS * spacing)  # (FOLD_* above)

    def half(number: int) -> Callable[[float], None]:
        return lambda done: None if progress is None else progress((number + done) / 2)

    first = _project_once(out, faces, points, tree, radius, fold_reach, None, None, should_cancel, half(0))
    in_faces = np.bincount(faces.ravel(), minlength=len(out)) > 0  # a vertex no face uses has no normal to fit by
    # Too few points within the radius on either side: none after a pass either, whatever moved around it.
    again = ~first.fitted & first.enough_points & in_faces
    fitted = first.fitted
    if SECOND_PASS and again.any():
        fitted |= _project_once(out, faces, points, tree, radius, fold_reach, again, first.typical, should_cancel,
                                half(1)).fitted
    if progress is not None:
        progress(1.0)
    return out.astype(vertices.dtype), int(fitted.sum())


def _project_once(out: np.ndarray, faces: np.ndarray, points: np.ndarray, tree: cKDTree, radius: float,
                  fold_reach: float, only: np.ndarray | None, typical: float | None,
                  should_cancel: CancelFn | None, progress: Callable[[float], None]) -> _Pass:
    """One pass of project_onto_points over `out` (float64, moved in place); a vertex farther than `fold_reach`
    from the points does not move when one of its faces would turn over (_hold_folds). With `only`, just those vertices
    move, their steps judged as a pass over every vertex would judge them: their neighbours within the rings that
    _above_noise averages over are fitted too (_within_rings), and the first pass's `typical` residual is kept."""
    normals = _vertex_normals(out, faces, PROJECTION_NORMAL_ROUNDS)
    used = np.unique(faces)  # a vertex no face uses has no normal, so no side to give
    side = normals[used][cKDTree(out[used]).query(points, workers=-1)[1]]  # each point's: its nearest vertex's
    wide, grown, near = _LocalFits(len(out)), _LocalFits(len(out)), _LocalFits(len(out))
    enough_points = np.zeros(len(out), dtype=bool)  # on either side, within the radius (filled where fitted)
    to_fit = np.arange(len(out)) if only is None else np.flatnonzero(_within_rings(only, faces, STEP_NOISE_ROUNDS))
    for start in range(0, len(to_fit), PROJECTION_ROWS):
        if should_cancel is not None and should_cancel():
            raise Cancelled("cancelled")
        rows = to_fit[start:start + PROJECTION_ROWS]
        distance, index = tree.query(out[rows], k=PROJECTION_NEIGHBOURS, distance_upper_bound=radius,
                                     workers=-1)  # nearest first
        found = np.isfinite(distance)
        enough_points[rows] = found.sum(1) >= PROJECTION_MIN_POINTS
        index = np.where(found, index, 0)  # missing neighbours: point 0, with no weight in the fits
        found &= np.einsum("nkc,nc->nk", side[index], normals[rows]) > 0
        wide.fill(rows, out[rows], points[index], found & (distance < PROJECTION_RADIUS), distance, PROJECTION_RADIUS,
                  PROJECTION_QUADRIC_POINTS)
        if radius > PROJECTION_RADIUS:
            grown.fill(rows, out[rows], points[index], found, distance, radius, PROJECTION_QUADRIC_POINTS,
                       planes=False)
        # The near neighbourhood: the nearest PROJECTION_NEAR_NEIGHBOURS on this side within its radius (taking
        # the first columns before the side test left a thin plate's vertices 18 of them).
        found &= distance < PROJECTION_NEAR_RADIUS
        first = np.argsort(~found, axis=1, kind="stable")[:, :PROJECTION_NEAR_NEIGHBOURS]  # found first, in order
        distance, index, found = (np.take_along_axis(a, first, 1) for a in (distance, index, found))
        near.fill(rows, out[rows], points[index], found, distance, PROJECTION_NEAR_RADIUS, None)
        progress(min(1.0, (start + PROJECTION_ROWS) / len(to_fit)))
    wide.take(grown, grown.count > 0)  # the grown neighbourhood's quadric, where it has one
    has_wide, has_near = wide.count >= PROJECTION_MIN_POINTS, near.count >= PROJECTION_MIN_POINTS
    if typical is None:
        typical = float(np.median(wide.residual[has_wide])) if has_wide.any() else 0.0
    use_wide = has_wide & np.where(has_near, wide.residual <= WIDE_RESIDUAL_RATIO * near.residual,
                                   wide.residual <= WIDE_RESIDUAL_GATE * typical)
    use_near = has_near & ~use_wide
    step = np.zeros_like(out)
    step[use_wide] = wide.target[use_wide] - out[use_wide]
    step[use_near] = near.target[use_near] - out[use_near]
    length = np.linalg.norm(step, axis=1)
    sideways = np.abs((step * normals).sum(1)) < PROJECTION_SIDEWAYS_COSINE * length
    step[sideways & (length > PROJECTION_SIDEWAYS_STEP)] = 0.0  # (PROJECTION_SIDEWAYS_* above)
    share = _above_noise(step, faces, typical)
    fitted = use_wide | use_near
    if only is not None:
        share[~only], fitted = 0.0, fitted & only
    move = share[:, None] * step
    _hold_folds(move, out, faces, tree.query(out, distance_upper_bound=fold_reach, workers=-1)[0] == np.inf)
    out += move
    return _Pass(fitted, typical, enough_points)


def _hold_folds(move: np.ndarray, vertices: np.ndarray, faces: np.ndarray, held: np.ndarray) -> None:
    """Zero the `move` (changed in place) of each `held` vertex of a face the moves would turn over (its normal
    more than 90 degrees from where it was), whichever vertex's move turns it, for up to FOLD_ROUNDS rounds. A
    face may still turn where none of its vertices is held."""
    before = face_normals(vertices, faces)
    for _ in range(FOLD_ROUNDS):
        turned = (before * face_normals(vertices + move, faces)).sum(1) < 0.0
        stop = np.zeros(len(vertices), dtype=bool)
        stop[faces[turned].ravel()] = True
        stop &= held & move.any(1)
        if not stop.any():
            return
        move[stop] = 0.0


class _Pass(NamedTuple):
    """What a pass of the projection tells the next: which vertices it fitted (of those it might move), the fits'
    typical residual, and which vertices have enough points within the radius on either side to fit at all."""

    fitted: np.ndarray
    typical: float
    enough_points: np.ndarray


def _within_rings(start: np.ndarray, faces: np.ndarray, rings: int) -> np.ndarray:
    """The vertices at most `rings` mesh edges from one of `start` (a mask): as far as _above_noise's averaging
    reaches in as many rounds."""
    adjacency = vertex_adjacency(faces, len(start))
    reach = start.astype(np.float64)
    for _ in range(rings):
        reach = reach + adjacency @ reach
    return reach > 0


def _above_noise(step: np.ndarray, faces: np.ndarray, residual: float) -> np.ndarray:
    """Per vertex, the share of its projection step to take (STEP_NOISE_SHARE above). Its averaging reaches
    STEP_NOISE_ROUNDS rings: a second pass fits that far around its vertices (_within_rings)."""
    size = (step ** 2).sum(1)
    average = neighbour_average(faces, len(step))
    for _ in range(STEP_NOISE_ROUNDS):
        size = 0.5 * size + 0.5 * (average @ size)
    return np.clip(1.0 - STEP_NOISE_SHARE * residual ** 2 / np.maximum(size, 1e-20), 0.0, 1.0)


def projection_radius(spacing: float) -> float:
    """The wide neighbourhood's radius for a cloud of this median spacing (PROJECTION_SPACINGS above)."""
    return float(np.clip(PROJECTION_SPACINGS * spacing, PROJECTION_RADIUS, PROJECTION_MAX_RADIUS))


class _LocalFits:
    """Per vertex: where its local surface puts it, the fit's weighted RMS residual, and how many points it had."""

    def __init__(self, count: int) -> None:
        self.target = np.zeros((count, 3))
        self.residual = np.zeros(count)
        self.count = np.zeros(count, dtype=np.int64)

    def fill(self, rows: np.ndarray, vertices: np.ndarray, neighbours: np.ndarray, found: np.ndarray,
             distance: np.ndarray, radius: float, quadric_points: int | None, planes: bool = True) -> None:
        """Fit these rows' surfaces to the `found` ones of their `neighbours` (N, K, 3), which lie within
        `radius`: a quadric height field where at least `quadric_points` are found (never, with None), else a
        plane (none, with planes False: the row's count is then 0)."""
        count = found.sum(1)
        if not planes and quadric_points is not None:
            count = np.where(count >= quadric_points, count, 0)
        weight = np.where(found, np.exp(-2.0 * (np.where(found, distance, 0.0) / radius) ** 2), 0.0)
        centre = (weight[..., None] * neighbours).sum(1) / (weight.sum(1, keepdims=True) + 1e-12)
        relative = neighbours - centre[:, None]
        spread = relative * np.sqrt(weight)[..., None]
        variance, frame = np.linalg.eigh(spread.transpose(0, 2, 1) @ spread)  # columns: normal, two tangents
        count = np.where(variance[:, 1] >= PROJECTION_MIN_FLATNESS * variance[:, 2], count, 0)
        local = relative @ frame / radius  # (height, u, v), scaled for conditioning
        vertex = np.einsum("ni,nij->nj", vertices - centre, frame) / radius
        misfit = local[..., 0].copy()  # a plane's: the heights themselves
        vertex[:, 0] = 0.0  # from here on: the vertex's foot on the plane, then its height over it on the quadric
        curved = count >= quadric_points if quadric_points is not None else np.zeros(len(count), dtype=bool)
        if curved.any():
            design = _quadric_terms(local[curved][..., 1:])
            weighted = design * weight[curved][..., None]
            # torch's batched solve: numpy's took 2.5x as long for tens of thousands of 6 x 6 systems. The small
            # ridge keeps a system solvable where the points leave a term undetermined (two parallel scan lines).
            coefficients = torch.linalg.solve(
                torch.from_numpy(weighted.transpose(0, 2, 1) @ design + 1e-6 * np.eye(6)),
                torch.from_numpy(weighted.transpose(0, 2, 1) @ local[curved][..., :1]))[..., 0].numpy()
            misfit[curved] -= (design @ coefficients[..., None])[..., 0]
            vertex[curved, 0] = (_quadric_terms(vertex[curved, 1:]) * coefficients).sum(1)
        step = centre + radius * np.einsum("nj,nij->ni", vertex, frame) - vertices
        step *= np.minimum(1.0, radius / (np.linalg.norm(step, axis=1, keepdims=True) + 1e-12))
        self.target[rows] = vertices + step
        self.residual[rows] = radius * np.sqrt((weight * misfit ** 2).sum(1) / (weight.sum(1) + 1e-12))
        self.count[rows] = count

    def take(self, other: _LocalFits, where: np.ndarray) -> None:
        """`other`'s fits in the rows `where` says."""
        self.target[where], self.residual[where], self.count[where] = (other.target[where], other.residual[where],
                                                                       other.count[where])


def _quadric_terms(uv: np.ndarray) -> np.ndarray:
    """(..., 2) tangent coordinates -> (..., 6): 1, u, v, u^2, uv, v^2."""
    terms = np.empty(uv.shape[:-1] + (6,))
    u, v = uv[..., 0], uv[..., 1]
    terms[..., 0] = 1.0
    terms[..., 1], terms[..., 2] = u, v
    np.multiply(u, u, out=terms[..., 3])
    np.multiply(u, v, out=terms[..., 4])
    np.multiply(v, v, out=terms[..., 5])
    return terms


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray, rounds: int) -> np.ndarray:
    """Area-weighted vertex normals of a mesh, each then averaged with its neighbours' `rounds` times."""
    corner = vertices[faces]
    face_vectors = np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0])  # twice the area, outward
    corners = faces.reshape(-1)
    normals = np.zeros_like(vertices)
    for axis in range(3):
        normals[:, axis] = np.bincount(corners, np.repeat(face_vectors[:, axis], 3), minlength=len(vertices))
    adjacency = vertex_adjacency(faces, len(vertices))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    for _ in range(rounds):
        normals = normals + adjacency @ normals
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    return normals
