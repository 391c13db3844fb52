"""The generation API: encode an input once, then extract meshes at any threshold or resolution.

    reconstructor = Reconstructor(weights, device="auto")
    shape = reconstructor.encode(prepare_pointcloud("scan.ply"))
    mesh = shape.extract(ExtractionSettings(threshold=0.2, resolution=128))
    again = shape.extract(ExtractionSettings(threshold=0.4, resolution=128))  # evaluates only what is new

An EncodedShape keeps every logit it has evaluated (a MISE value store on a 512-cell lattice over the
1.1 box), so a later extraction at another threshold or resolution reuses them. Progress callbacks
(stage, fraction) run between batches, and so does the cancel check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..common.errors import Cancelled, GenerationError, InputError
from ..common.policy import BOX_SIZE, RESOLUTIONS, coarse_resolution, ensemble_size
from ..common.settings import EXTRACTION
from .checkpoints import Weights
from .colours import ColourSource, vertex_colours
from .fitting import FitRefused, FitSettings, Observation, fit_features, project_onto_points, should_fit
from .frames import orient
from .image_colours import image_colour_source
from .meshing import extract_mesh, taubin_smooth
from .mise import MISE, ValueStore
from .model import ConvolutionalOccupancyNetwork, encoding_is_finite, fixed_decoder
from .preprocess import PreparedInput
from .shifts import averaged, check_ensemble, shift_offsets
from .support import drop_unsupported_pieces, trim_unseen
from .winding import guide_by_points

STORE_RESOLUTION = 512
DEFAULT_BATCH = 100_000

ProgressFn = Callable[[str, float], None]
CancelFn = Callable[[], bool]
DecodeFn = Callable[[torch.Tensor], torch.Tensor]  # box points (N, 3) -> logits (N,)


@dataclass(frozen=True)
class ExtractionSettings:
    """How to turn the occupancy function into a mesh: the `extraction` settings of common/settings.py, each
    checked by its declaration there (tests/core/test_settings.py holds the fields and defaults to them)."""

    threshold: float = 0.2  # occupancy probability of the surface (the declaration's unset: the weights' own)
    resolution: int = 128  # cells per axis of the final grid
    resolution_0: int | None = None  # MISE's coarse grid; None: policy.coarse_resolution; `resolution`: dense
    refine_steps: int = 0  # at most this many refinement steps (the reference's demo used 30)
    refine_method: str = "project"  # one of REFINE_METHODS
    simplify_faces: int = 0  # quadric simplification target; 0 keeps every face
    normals: bool = False  # vertex normals from the network's gradient
    seed: int = 0  # for refinement's random face samples
    colours: bool = True  # vertex colours from the input's, when it has them (colours.py)
    trim_unseen: float = 0.0  # point clouds: remove the surface farther than this from every point (support.py)

    def __post_init__(self) -> None:
        for setting in EXTRACTION:
            refused = setting.refusal(getattr(self, setting.name))
            if refused:
                raise InputError(refused)
        if self.resolution_0 is None:
            object.__setattr__(self, "resolution_0", coarse_resolution(self.resolution))
        r0 = self.resolution_0
        if not (isinstance(r0, int) and r0 >= 1 and r0 <= self.resolution and r0 & (r0 - 1) == 0):
            raise InputError(f"resolution_0 must be a power of two no larger than resolution "
                             f"({self.resolution}), got {r0!r}; resolution must be resolution_0 times 2**k")

    @property
    def threshold_logit(self) -> float:
        return math.log(self.threshold) - math.log1p(-self.threshold)

    @property
    def upsampling_steps(self) -> int:
        return int(math.log2(self.resolution // self.coarse))

    @property
    def coarse(self) -> int:
        """MISE's first grid: resolution_0, or the policy's for the resolution when it was not given."""
        assert self.resolution_0 is not None  # set in __post_init__
        return self.resolution_0


@dataclass
class MeshResult:
    """A mesh in the source's frame with what it took to make it."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int32, wound counter-clockwise seen from outside
    normals: np.ndarray | None  # (V, 3) float32 or None
    stats: dict[str, float | int] = field(default_factory=dict)
    colours: np.ndarray | None = None  # (V, 3) uint8, sRGB red green blue: the input's colours where it had them


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str) -> torch.device:
    """'auto' -> a CUDA GPU, else Apple's GPU (MPS), else the CPU; a named device that is not there is an
    error that says what is."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} is not available here (torch {torch.__version__} sees no CUDA "
                         "GPU); use cpu or auto")
    if device == "mps" and not mps_available():
        raise InputError(f"device 'mps' is not available here (torch {torch.__version__} sees no Apple GPU); "
                         "use cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None


# Bytes per lattice point an extraction holds at its peak: float32 values, the MISE bookkeeping bits and
# marching cubes' temporaries (measured: 1.36 GB at 512 cells, 0.40 GB at 256, with ~0.25 GB of base).
BYTES_PER_LATTICE_POINT = 9


def extraction_bytes(resolution: int) -> int:
    return BYTES_PER_LATTICE_POINT * (resolution + 1) ** 3


def available_memory() -> int | None:
    """Bytes the kernel says a new allocation can get (MemAvailable), where it says (Linux); else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(resolution: int, available: int | None = None) -> None:
    """Refuse, with the figures, an extraction that would not fit in the memory left on this machine
    (rather than swap for minutes or be killed); `available` defaults to what the kernel reports."""
    free = available_memory() if available is None else available
    need = extraction_bytes(resolution)
    if free is not None and need > 0.9 * free:
        smaller = [r for r in RESOLUTIONS if r < resolution and extraction_bytes(r) <= 0.9 * free]
        hint = f"choose {max(smaller)} cells or fewer, or " if smaller else ""
        raise InputError(f"a {resolution}-cell extraction needs about {need / 2**30:.1f} GB and this machine has "
                         f"{free / 2**30:.1f} GB free; {hint}close other programs")


class Reconstructor:
    """A network loaded on a device; turns prepared inputs into EncodedShapes."""

    def __init__(self, weights: Weights, device: str = "auto", batch_size: int = DEFAULT_BATCH):
        if batch_size < 1:
            raise InputError(f"batch size must be positive, got {batch_size}")
        self.weights = weights
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.model = weights.build(self.device)

    @property
    def modality(self) -> str:
        return self.weights.modality

    def encode(self, prepared: PreparedInput, fit: str = "off", fit_settings: FitSettings | None = None,
               progress: ProgressFn | None = None, should_cancel: CancelFn | None = None,
               fit_threshold: float | None = None, ensemble: int = 0) -> EncodedShape:
        """The input encoded once; with `fit` ('auto', 'on' or 'off': policy.FIT_MODES) the local features are
        then fitted to every observed point (occnet/fitting.py), and the shape is the fitted one for every
        extraction, refinement and normal after. The fit puts the points on the surface of `fit_threshold`
        (default: the weights' own), which should be the threshold the mesh is extracted at. `ensemble`: how many
        copies of a point cloud, each moved by a quarter of a feature cell, are encoded (and fitted) and their
        fields averaged (shifts.py: 1, 2 or 4; 0, as the `ensemble` setting: policy.ensemble_size's default)."""
        if prepared.modality != self.modality:
            raise InputError(f"these weights take {self.modality} input, not {prepared.modality}; choose "
                             f"{prepared.modality} weights (see `python -m blender_occnet models`)")
        prepared = orient(prepared, self.weights.card.get("frame"))
        observed = _observation(prepared)
        if fit == "on" and prepared.modality == "image":
            raise FitRefused("fitting works on point clouds and voxel grids; an image reconstructs with fit off")
        points = 0 if observed is None else observed.count
        fits = should_fit(fit, self.weights.config.local, points, prepared.modality)
        if fits and observed is None:
            raise FitRefused("fitting needs the observed points: prepare the cloud with keep_observed=True")
        size = ensemble_size(prepared.modality, self.weights.config.local, points, fits) if ensemble == 0 \
            else check_ensemble(ensemble, prepared.modality, self.weights.config.local)
        offsets = shift_offsets(size, self.weights.config.feature_resolution)
        threshold = self.weights.threshold if fit_threshold is None else fit_threshold
        level = math.log(threshold) - math.log1p(-threshold)
        decodes: list[DecodeFn] = []
        fit_stats: dict[str, float | int] = {}
        encode_seconds = 0.0
        for member, offset in enumerate(offsets):
            if member and should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            began = time.perf_counter()
            with torch.inference_mode():
                array = prepared.array + offset if offset.any() else prepared.array  # only clouds move (shifts.py)
                inputs = torch.from_numpy(array).unsqueeze(0).to(self.device)
                encoding = self.model.encode(inputs)
            if not encoding_is_finite(encoding):
                raise GenerationError("the encoder produced NaN or infinite values; the weights are broken")
            encode_seconds += time.perf_counter() - began
            if fits:
                assert isinstance(self.model, ConvolutionalOccupancyNetwork) and isinstance(encoding, dict)
                assert observed is not None
                encoding, stats = fit_features(self.model.decoder, encoding, observed.shifted(offset), level,
                                               fit_settings or FitSettings(), _part(progress, member, len(offsets)),
                                               should_cancel)
                if not encoding_is_finite(encoding):
                    raise GenerationError("fitting produced NaN or infinite features; reconstruct with fit off")
                fit_stats.update(stats, seconds_fit=round(float(fit_stats.get("seconds_fit", 0.0))
                                                          + float(stats["seconds_fit"]), 4))
            decodes.append(fixed_decoder(self.model, encoding))
        decode = averaged(decodes, offsets)
        if fit_stats and prepared.modality == "pointcloud" and prepared.observed is not None:
            # Away from the points, what the points enclose decides over sheets the network spans (winding.py).
            decode, guide_stats = guide_by_points(decode, prepared.observed, level, self.device, should_cancel,
                                                  prepared.given_normals if prepared.normals is not None else None)
            seconds = float(fit_stats["seconds_fit"]) + guide_stats.pop("seconds_guide")  # one "fitting" stage
            fit_stats.update(guide_stats, seconds_fit=round(seconds, 4))
        shape = EncodedShape(decode, prepared, self.device, self.batch_size)
        shape.encode_seconds = encode_seconds
        shape.fit_stats = fit_stats
        shape.ensemble = len(offsets)
        return shape


def _part(progress: ProgressFn | None, member: int, members: int) -> ProgressFn | None:
    """Progress of one ensemble member's fit as a share of the whole fitting stage."""
    if progress is None or members == 1:
        return progress
    return lambda stage, fraction: progress(stage, (member + fraction) / members)


def _observation(prepared: PreparedInput) -> Observation | None:
    """What a fit can match in a prepared input (in the network's frame): a cloud's every point, a grid's cells."""
    if prepared.modality == "pointcloud":
        return None if prepared.observed is None else Observation(surface=prepared.observed)
    if prepared.modality == "voxels":
        return Observation.of_voxels(prepared.array)
    return None


class EncodedShape:
    """One observation's occupancy function, with every value evaluated so far kept for reuse."""

    def __init__(self, decode: DecodeFn, prepared: PreparedInput | None = None,
                 device: torch.device | str = "cpu", batch_size: int = DEFAULT_BATCH):
        self.decode = decode
        self.prepared = prepared
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.store = ValueStore(STORE_RESOLUTION)
        self.encode_seconds = 0.0
        self.fit_stats: dict[str, float | int] = {}  # what fitting did (fitting.fit_features); empty: no fit
        self.ensemble = 1  # how many shifted encodings the field averages (shifts.py)
        # An image's colours on the first mesh extracted from it (image_colours.py), kept for every later one.
        self._picture_source: tuple[ColourSource | None, dict[str, float]] | None = None

    # -- evaluation ---------------------------------------------------------------------------

    def logits(self, box_points: np.ndarray, progress: Callable[[int], None] | None = None,
               should_cancel: CancelFn | None = None) -> np.ndarray:
        """Logits at (N, 3) points of the box frame, in batches; checks for cancel between batches.

        The points go to the device once and the values come back once per call (a MISE round), not per
        batch: on a GPU that is one transfer each way instead of one per 100,000 points."""
        with torch.inference_mode():
            points = torch.from_numpy(box_points).to(self.device)
            values = torch.empty(len(box_points), dtype=torch.float32, device=self.device)
            for start in range(0, len(box_points), self.batch_size):
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled")
                chunk = points[start:start + self.batch_size]
                values[start:start + len(chunk)] = self.decode(chunk).float()
                if progress is not None:
                    progress(start + len(chunk))
            return values.cpu().numpy()

    # -- extraction ---------------------------------------------------------------------------

    def extract(self, settings: ExtractionSettings = ExtractionSettings(),
                progress: ProgressFn | None = None, should_cancel: CancelFn | None = None) -> MeshResult:
        """A mesh of this shape; reuses every value evaluated by earlier extractions."""
        report = progress or (lambda stage, fraction: None)
        check_memory(settings.resolution)
        stats: dict[str, float | int] = {"seconds_encode": round(self.encode_seconds, 4), "ensemble": self.ensemble,
                                         **self.fit_stats}
        if self.prepared is not None:
            stats.update(self.prepared.info)
        started = time.perf_counter()

        grid, mise = self._evaluate_grid(settings, report, should_cancel)
        stats.update(points_evaluated=mise.points_evaluated, points_reused=mise.points_reused,
                     points_total=mise.points_total, seconds_evaluate=_since(started))

        t = time.perf_counter()
        report("meshing", 0.0)
        vertices, faces = extract_mesh(grid, settings.threshold_logit, BOX_SIZE)
        observed = self.prepared.observed if self.prepared is not None else None
        if self.fit_stats and observed is not None and len(faces):
            vertices, faces, stats["pieces_unsupported"] = drop_unsupported_pieces(vertices, faces, observed)
        stats["seconds_meshing"] = _since(t)

        if settings.simplify_faces and len(faces) > settings.simplify_faces:
            t = time.perf_counter()
            report("simplifying", 0.0)
            vertices, faces = simplify(vertices, faces, settings.simplify_faces, should_cancel)
            stats["seconds_simplify"] = _since(t)

        if settings.refine_steps and len(faces):
            t = time.perf_counter()
            if settings.refine_method == "project":
                vertices, stats["refine_passes"] = self._project(vertices, settings, report, should_cancel)
            else:
                vertices = self._refine(vertices, faces, settings, report, should_cancel)
            stats["seconds_refine"] = _since(t)

        if self.fit_stats and observed is not None and len(vertices):
            # Last, after refinement (which follows the network's surface): the mesh onto the points themselves.
            t = time.perf_counter()
            report("projecting", 0.0)
            vertices, stats["vertices_projected"] = project_onto_points(
                vertices, faces, observed, should_cancel, lambda done: report("projecting", done))
            vertices = taubin_smooth(vertices, faces, FITTED_SMOOTHING_ROUNDS)  # the points' noise left in it
            stats["smoothing_rounds"] = FITTED_SMOOTHING_ROUNDS
            stats["seconds_project"] = _since(t)

        if settings.trim_unseen and len(faces):
            # After every step that moves a vertex: what is cut is the final surface's unseen part.
            t = time.perf_counter()
            points = self._points()
            if points is None:
                stats["trim_not_points"] = True
            else:
                vertices, faces, removed = trim_unseen(vertices, faces, points, settings.trim_unseen,
                                                       fitted=bool(self.fit_stats))
                stats["faces_unseen_trimmed"] = removed or 0
                if removed is None:
                    stats["trim_nothing_near"] = True
            stats["seconds_trim"] = _since(t)

        normals = None
        if settings.normals and len(vertices):
            t = time.perf_counter()
            report("normals", 0.0)
            normals = self._normals(vertices, should_cancel)
            stats["seconds_normals"] = _since(t)

        colours = None
        if self.prepared is not None:
            network_vertices = vertices
            vertices = self.prepared.to_source(vertices)
            normals = None if normals is None else self.prepared.directions_to_source(normals)
            if settings.colours and (self.prepared.colours is not None or self.prepared.picture is not None):
                # In the source's frame, where the input's colours are: after every step that moves a vertex, so
                # that a live re-extraction colours its new vertices from the same input.
                t = time.perf_counter()
                report("colouring", 0.0)
                source = self.prepared.colours or self._picture_colours(network_vertices, faces, vertices, stats)
                if source is not None:
                    colours = vertex_colours(vertices, source)
                stats["seconds_colours"] = _since(t)
        stats.update(vertices=len(vertices), faces=len(faces), seconds_total=_since(started))
        report("done", 1.0)
        return MeshResult(vertices.astype(np.float32), faces.astype(np.int32), normals, stats, colours)

    def _points(self) -> np.ndarray | None:
        """A point cloud's points in the network's frame: every point a fit kept, else the encoder's; None for
        other inputs."""
        if self.prepared is None or self.prepared.modality != "pointcloud":
            return None
        return self.prepared.observed if self.prepared.observed is not None else self.prepared.array

    def _picture_colours(self, network_vertices: np.ndarray, faces: np.ndarray, vertices: np.ndarray,
                         stats: dict[str, float | int]) -> ColourSource | None:
        """The colour source an image gives this shape: found on the first mesh with faces, then kept."""
        if self._picture_source is None:
            if self.prepared is None or self.prepared.picture is None or not len(faces):
                return None
            source, view = image_colour_source(network_vertices, faces, self.prepared.picture, vertices)
            self._picture_source = source, {"image_view_azimuth": round(math.degrees(view.azimuth) % 360, 1),
                                            "image_view_elevation": round(math.degrees(view.elevation), 1),
                                            "image_view_overlap": round(view.overlap, 3)}
        stats.update(self._picture_source[1])
        return self._picture_source[0]

    def _evaluate_grid(self, settings: ExtractionSettings, report: ProgressFn,
                       should_cancel: CancelFn | None) -> tuple[np.ndarray, MISE]:
        mise = MISE(settings.coarse, settings.upsampling_steps, settings.threshold_logit, self.store,
                    should_cancel)
        rounds = settings.upsampling_steps + 1  # usually; MISE may need a round more
        round_index = 0
        report("evaluating", 0.0)
        points = mise.query()
        while len(points):
            box = (BOX_SIZE * (points / mise.resolution - 0.5)).astype(np.float32)
            done_rounds, n = round_index, len(points)

            def batch_done(count: int, done_rounds: int = done_rounds, n: int = n) -> None:
                report("evaluating", min(0.99, (done_rounds + count / n) / rounds))

            mise.update(points, self.logits(box, batch_done, should_cancel))
            round_index += 1
            points = mise.query()
        return mise.to_dense(), mise

    # Rows per autograd pass in refinement and normals: between two passes the cancel check runs, so a
    # cancel is honoured within one pass (a fraction of a second) even on meshes of millions of faces.
    GRAD_ROWS = 50_000

    def _project(self, vertices: np.ndarray, settings: ExtractionSettings, report: ProgressFn,
                 should_cancel: CancelFn | None) -> tuple[np.ndarray, int]:
        """Newton steps that move each vertex along the logit's gradient onto the threshold's iso-surface:
        v -= (logit(v) - level) * g / |g|^2. A step is capped at half a cell and a vertex never ends more than
        a cell from where marching cubes put it (a kink of the ReLU network, or a gradient near zero, must
        not throw it across the shape). A vertex stops once its step is under 1/1000 of a cell, so later
        steps evaluate only the vertices still moving. Returns the vertices and how many passes ran.

        Against the paper's optimiser on 10 test shapes (bench/bench_refine.py): the same IoU and Chamfer-L1
        at a small fraction of its cost."""
        cell = BOX_SIZE / settings.resolution
        level = settings.threshold_logit
        start_points = torch.tensor(vertices, dtype=torch.float32)
        v = start_points.clone()
        moving = torch.arange(len(v))
        passes = 0
        for step in range(settings.refine_steps):
            if not len(moving):
                break
            report("refining", step / settings.refine_steps)
            passes += 1
            still: list[torch.Tensor] = []
            for start in range(0, len(moving), self.GRAD_ROWS):
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled")
                index = moving[start:start + self.GRAD_ROWS]
                points = v[index].to(self.device).requires_grad_()
                logit = self.decode(points)
                gradient = torch.autograd.grad(logit.sum(), points)[0]
                with torch.no_grad():
                    move = ((logit - level) / (gradient.pow(2).sum(1) + 1e-12))[:, None] * gradient
                    length = move.norm(dim=1, keepdim=True)
                    move = (move * torch.clamp(0.5 * cell / (length + 1e-12), max=1.0)).cpu()
                    moved = v[index] - move
                    offset = moved - start_points[index]
                    reach = offset.norm(dim=1, keepdim=True)
                    v[index] = start_points[index] + offset * torch.clamp(cell / (reach + 1e-12), max=1.0)
                    # Done: on the surface, or held at a cell's reach (further steps would push the same way).
                    still.append(index[(length.squeeze(1).cpu() > 1e-3 * cell) & (reach.squeeze(1) <= cell)])
            moving = torch.cat(still)
        return v.numpy(), passes

    def _refine(self, vertices: np.ndarray, faces: np.ndarray, settings: ExtractionSettings,
                report: ProgressFn, should_cancel: CancelFn | None) -> np.ndarray:
        """Move vertices so that random points on each face sit on the iso-surface and face normals
        follow the occupancy gradient (the reference's refinement: RMSprop, lr 1e-4, its loss, with the
        normal target held constant). Each step's loss is a mean over the faces, accumulated chunk by chunk
        (the same gradient as one pass)."""
        v = torch.nn.Parameter(torch.tensor(vertices, device=self.device))  # a copy: the caller's array stays
        f = torch.from_numpy(faces.astype(np.int64)).to(self.device)
        optimizer = torch.optim.RMSprop([v], lr=1e-4)
        rng = np.random.default_rng(settings.seed)
        n_faces = len(faces)
        for step in range(settings.refine_steps):
            report("refining", step / settings.refine_steps)
            optimizer.zero_grad()
            weights_all = torch.from_numpy(rng.dirichlet((0.5, 0.5, 0.5), size=n_faces).astype(np.float32))
            for start in range(0, n_faces, self.GRAD_ROWS):
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled")
                corners = v[f[start:start + self.GRAD_ROWS]]  # (F, 3, 3)
                weights = weights_all[start:start + self.GRAD_ROWS].to(self.device)
                face_points = (corners * weights[:, :, None]).sum(dim=1)
                normal = torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 1], dim=1)
                normal = normal / (normal.norm(dim=1, keepdim=True) + 1e-10)
                occupancy = torch.sigmoid(self.decode(face_points))
                # The normal target as a constant: the reference differentiates through it (a second
                # backward pass), but these decoders are piecewise linear in the points (ReLU, bilinear
                # features), so that term is almost zero: the same meshes (Chamfer-L1 within 1e-5 on
                # 10 test shapes) for one backward pass fewer (BENCHMARKS.md, "Sliders and refinement").
                target = -torch.autograd.grad(occupancy.sum(), face_points, retain_graph=True)[0]
                target = target / (target.norm(dim=1, keepdim=True) + 1e-10)
                loss = ((occupancy - settings.threshold).pow(2).sum()
                        + 0.01 * (normal - target).pow(2).sum(1).sum()) / n_faces
                loss.backward()
            optimizer.step()
        return v.detach().cpu().numpy()

    def _normals(self, vertices: np.ndarray, should_cancel: CancelFn | None) -> np.ndarray:
        """Normalised negative gradient of the logit at each vertex (pointing out of the shape)."""
        out = np.empty_like(vertices, dtype=np.float32)
        rows = min(self.batch_size, self.GRAD_ROWS)
        for start in range(0, len(vertices), rows):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            points = torch.from_numpy(vertices[start:start + rows]).to(self.device).requires_grad_()
            gradient = torch.autograd.grad(self.decode(points).sum(), points)[0]
            normal = -gradient / (gradient.norm(dim=1, keepdim=True) + 1e-10)
            out[start:start + len(points)] = normal.cpu().numpy()
        return out


# Rounds of Taubin smoothing after a fitted mesh is projected onto the points (meshing.taubin_smooth).
FITTED_SMOOTHING_ROUNDS = 3

# Meshes above this many faces are simplified in a child process that a cancel can stop (the library holds
# the interpreter for the whole call); smaller ones take well under a second in place.
SIMPLIFY_IN_CHILD_FACES = 200_000


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int,
             should_cancel: CancelFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse simplification (Fast-Quadric-Mesh-Simplification, aggressiveness 5 as the
    reference's demo) down to about `target_faces` faces; cancellable on large meshes."""
    if should_cancel is not None and len(faces) > SIMPLIFY_IN_CHILD_FACES:
        return _simplify_in_child(vertices, faces, target_faces, should_cancel)
    import fast_simplification

    points, triangles = fast_simplification.simplify(
        vertices.astype(np.float64), faces.astype(np.int32), target_count=int(target_faces), agg=5.0)
    return points.astype(np.float32), triangles.astype(np.int32)


_SIMPLIFY_CHILD = """
import sys, numpy as np, fast_simplification
folder = sys.argv[1]
v = np.load(folder + "/v.npy", allow_pickle=False); f = np.load(folder + "/f.npy", allow_pickle=False)
p, t = fast_simplification.simplify(v, f, target_count=int(sys.argv[2]), agg=5.0)
np.save(folder + "/p.npy", p.astype(np.float32)); np.save(folder + "/t.npy", t.astype(np.int32))
"""


def _simplify_in_child(vertices: np.ndarray, faces: np.ndarray, target_faces: int,
                       should_cancel: CancelFn) -> tuple[np.ndarray, np.ndarray]:
    """The same simplification in a child Python (arrays through .npy files: no pickle), killed on cancel."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="occnet-simplify-") as folder:
        np.save(f"{folder}/v.npy", vertices.astype(np.float64))
        np.save(f"{folder}/f.npy", faces.astype(np.int32))
        child = subprocess.Popen([sys.executable, "-c", _SIMPLIFY_CHILD, folder, str(int(target_faces))],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while child.poll() is None:
                if should_cancel():
                    raise Cancelled("cancelled")
                time.sleep(0.02)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode != 0:
            detail = (child.stderr.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1] \
                if child.stderr else ""
            raise GenerationError(f"simplification failed ({detail})")
        return np.load(f"{folder}/p.npy"), np.load(f"{folder}/t.npy")


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 4)
