#!/usr/bin/env python
"""Mesh extraction benchmark (issue "Mesh extraction", speed section).

    .venv/bin/python bench/bench_extraction.py            # the full run (a few minutes on 2 cores)
    .venv/bin/python bench/bench_extraction.py --quick    # a smoke run: fewer, shorter measurements

Three parts, all measured in the same run so that their ratios hold on a noisy machine:

1. analytic occupancy functions (sphere, torus, thin plate) through the public generation API:
   dense evaluation against MISE, points evaluated, seconds and whether the meshes agree;
2. decoder throughput of the full-size point-cloud architecture: the plain forward (Conv1d on
   (1, C, T), as the original) against FoldedDecoder, plus what else might pay on this CPU
   (threads, slice size, torch.compile, matmul precision, a fused oneDNN linear);
3. a whole point-cloud reconstruction at 128 and 256 cells with a network fitted to a sphere:
   an emulation of the original generator against Reconstructor.encode(...).extract(...).

Tables are printed as Markdown. Timings are medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from blender_occnet.occnet.checkpoints import Weights  # noqa: E402
from blender_occnet.occnet.config import default_config  # noqa: E402
from blender_occnet.occnet.generation import BOX_SIZE, EncodedShape, ExtractionSettings, Reconstructor  # noqa: E402
from blender_occnet.occnet.inference import FoldedDecoder  # noqa: E402
from blender_occnet.occnet.meshing import extract_mesh  # noqa: E402
from blender_occnet.occnet.mise import MISE  # noqa: E402
from blender_occnet.occnet.model import OccupancyNetwork, build_model  # noqa: E402
from blender_occnet.occnet.preprocess import PreparedInput, prepare_pointcloud  # noqa: E402
from tests.mesh_checks import is_watertight, mesh_volume, mesh_volume_iou  # noqa: E402

# The original's published figures (2 cores, torch CPU, point-cloud model, threshold 0.2, resolution_0 32).
ORIGINAL = {
    "seconds_per_mesh": {128: 8.8, 256: 33.7},
    "decoder_points_per_s": {100_000: 19_500, 10_000: 26_700},
    "sphere_mise_points": {128: 163_261, 256: 571_839},
}
THRESHOLD = 0.2
SPHERE_RADIUS = 0.4


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


# -- output -----------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[object]]) -> None:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|")
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")
    print(flush=True)


def heading(text: str) -> None:
    print(f"\n## {text}\n\n(load average {os.getloadavg()[0]:.2f})\n", flush=True)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, warm_up: bool = True
                ) -> dict[str, float]:
    """Median seconds of each candidate over `rounds` rounds, run one after another in every round
    (so that a burst of load elsewhere on the machine hits all of them alike); one warm-up call each
    unless `warm_up` is False (the caller has warmed them up on a smaller input)."""
    for fn in candidates.values():
        if warm_up:
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            seconds[name].append(timed(fn)[0])
    return {name: statistics.median(v) for name, v in seconds.items()}


# -- 1. analytic functions --------------------------------------------------------------------


def sphere(p: torch.Tensor) -> torch.Tensor:
    return (SPHERE_RADIUS - p.double().norm(dim=1)) * 100


def torus(p: torch.Tensor) -> torch.Tensor:
    p = p.double()
    return (0.1 - torch.hypot(torch.hypot(p[:, 0], p[:, 1]) - 0.3, p[:, 2])) * 100


def plate(p: torch.Tensor) -> torch.Tensor:
    # 0.04 thick, 0.6 x 0.6 wide, off-centre in z
    p = p.double()
    return torch.minimum(0.02 - (p[:, 2] - 0.013).abs(), 0.3 - p[:, :2].abs().amax(dim=1)) * 100


def bench_analytic(resolutions: tuple[int, ...]) -> None:
    heading("1. Analytic occupancy functions: dense evaluation vs MISE (resolution_0 32)")
    print("sphere: (0.4 - |p|) * 100 at threshold 0.5 (logit 0, the setting of the original's published "
          "counts); torus and plate at threshold 0.2 (logit -1.386). Seconds are the whole extract() call "
          "(evaluation, MISE bookkeeping, marching cubes).\n")
    rows = []
    functions = (("sphere", sphere, 0.5), ("torus", torus, THRESHOLD), ("plate", plate, THRESHOLD))
    for name, fn, threshold in functions:
        for resolution in resolutions:
            dense = EncodedShape(fn).extract(ExtractionSettings(threshold, resolution, resolution_0=resolution))
            mise = EncodedShape(fn).extract(ExtractionSettings(threshold, resolution, resolution_0=32))
            same = (np.array_equal(dense.vertices, mise.vertices) and np.array_equal(dense.faces, mise.faces))
            iou = mesh_volume_iou((dense.vertices, dense.faces), (mise.vertices, mise.faces))
            d, m = dense.stats, mise.stats
            expected = ORIGINAL["sphere_mise_points"].get(resolution) if name == "sphere" else None
            rows.append([name, resolution, d["points_evaluated"], m["points_evaluated"],
                         "-" if expected is None else ("yes" if expected == m["points_evaluated"] else
                                                        f"no ({expected:,})"),
                         f"{d['points_evaluated'] / m['points_evaluated']:.1f}x",
                         d["seconds_total"], m["seconds_total"],
                         f"{d['seconds_total'] / m['seconds_total']:.1f}x",
                         "yes" if same else "no", f"{iou:.5f}",
                         "yes" if is_watertight(mise.faces) else "no"])
    table(["function", "cells", "dense points", "MISE points", "= original's count", "fewer points",
           "dense s", "MISE s", "speed-up", "same mesh", "volume IoU", "watertight"], rows)


# -- the fitted network -----------------------------------------------------------------------


def sphere_cloud(rng: np.random.Generator, n: int = 300, noise: float = 0.005) -> np.ndarray:
    d = rng.standard_normal((n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return SPHERE_RADIUS * d + noise * rng.standard_normal((n, 3))


def training_batch(rng: np.random.Generator, batch: int, n_query: int) -> tuple[torch.Tensor, ...]:
    """Clouds as prepare_pointcloud makes them (unit cube frame), query points and exact occupancy."""
    clouds, queries, labels = [], [], []
    for _ in range(batch):
        prepared = prepare_pointcloud(sphere_cloud(rng), seed=int(rng.integers(1 << 31)))
        clouds.append(prepared.array)
        centre, radius = -prepared.loc / prepared.scale, SPHERE_RADIUS / prepared.scale
        uniform = rng.uniform(-BOX_SIZE / 2, BOX_SIZE / 2, (n_query // 2, 3))
        d = rng.standard_normal((n_query - n_query // 2, 3))
        near = centre + d / np.linalg.norm(d, axis=1, keepdims=True) * radius
        near += 0.03 * rng.standard_normal(near.shape)
        q = np.concatenate([uniform, near])
        queries.append(q)
        labels.append(np.linalg.norm(q - centre, axis=1) < radius)
    as_t = lambda a: torch.from_numpy(np.stack(a).astype(np.float32))  # noqa: E731
    return as_t(clouds), as_t(queries), as_t(labels)


def fit_network(steps: int, seed: int = 0) -> tuple[OccupancyNetwork, float, bool]:
    """The full-size point-cloud network fitted to spheres (cached); (model in eval mode, seconds, cached)."""
    config = default_config("onet-pointcloud")
    key = hashlib.sha256(f"v1 {config} {steps} {seed} {torch.__version__}".encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "blender-occnet-bench" / f"fitted-sphere-{key}.pt"
    torch.manual_seed(seed)
    model = build_model(config)
    if cache.is_file():
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model.eval(), 0.0, True
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        clouds, queries, labels = training_batch(rng, 2, 2048)
        loss = F.binary_cross_entropy_with_logits(model(queries, clouds), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"  fit step {step:4d}  loss {loss.item():.4f}", flush=True)
    seconds = time.perf_counter() - started
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval(), seconds, False


def test_input(seed: int = 12345) -> tuple[PreparedInput, np.ndarray, float]:
    """A sphere cloud never seen in fitting; (prepared, sphere centre and radius in the unit frame)."""
    prepared = prepare_pointcloud(sphere_cloud(np.random.default_rng(seed)), seed=seed)
    return prepared, -prepared.loc / prepared.scale, SPHERE_RADIUS / prepared.scale


# -- 2. decoder throughput --------------------------------------------------------------------


class LinearDecoder:
    """FoldedDecoder's function with F.linear on (out, in) weights (the other GEMM layout)."""

    def __init__(self, fd: FoldedDecoder, fused_relu: bool = False):
        self.fd = fd
        self.fused = fused_relu
        self.wp = fd.wp.t().contiguous()
        self.blocks = [(b.scale0, b.shift0, b.w0.t().contiguous(), b.b0, b.w1.t().contiguous(), b.b1)
                       for b in fd.blocks]
        self.w_out = fd.w_out.t().contiguous()

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        fd, rows = self.fd, self.fd.slice_rows
        out = torch.empty(len(points))
        for start in range(0, len(points), rows):
            net = F.linear(points[start:start + rows], self.wp, fd.bp)
            for s0, h0, w0, b0, w1, b1 in self.blocks:
                t = torch.addcmul(h0, net, s0).relu_()
                if self.fused:
                    t = torch.ops.mkldnn._linear_pointwise(t, w0, b0, "relu", [], "")
                else:
                    t = F.linear(t, w0, b0).relu_()
                net = net.add_(F.linear(t, w1, b1))
            t = torch.addcmul(fd.shift_out, net, fd.scale_out).relu_()
            out[start:start + len(t)] = F.linear(t, self.w_out, fd.b_out).squeeze(1)
        return out


class PreviousFolded:
    """FoldedDecoder.__call__ as it was before slicing: one product over the whole batch, a new
    tensor for every layer's output."""

    def __init__(self, fd: FoldedDecoder):
        self.fd = fd

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        fd = self.fd
        net = torch.addmm(fd.bp, points, fd.wp)
        for blk in fd.blocks:
            t = torch.relu(torch.addcmul(blk.shift0, net, blk.scale0))
            t = torch.relu_(torch.addmm(blk.b0, t, blk.w0))
            net = torch.addmm(net, t, blk.w1).add_(blk.b1)
        t = torch.relu(torch.addcmul(fd.shift_out, net, fd.scale_out))
        return torch.addmm(fd.b_out, t, fd.w_out).squeeze(1)


def compiled_slices(fd: FoldedDecoder) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """torch.compile of one fixed-size slice of the folded forward; (decode, compile seconds)."""
    rows = fd.slice_rows

    def one_slice(p: torch.Tensor) -> torch.Tensor:
        net = torch.addmm(fd.bp, p, fd.wp)
        for blk in fd.blocks:
            t = torch.relu(torch.addcmul(blk.shift0, net, blk.scale0))
            t = torch.relu(torch.addmm(blk.b0, t, blk.w0))
            net = net + torch.addmm(blk.b1, t, blk.w1)
        t = torch.relu(torch.addcmul(fd.shift_out, net, fd.scale_out))
        return torch.addmm(fd.b_out, t, fd.w_out).squeeze(1)

    compiled = torch.compile(one_slice, dynamic=False)
    started = time.perf_counter()
    with torch.inference_mode():
        compiled(torch.zeros(rows, 3))
    seconds = time.perf_counter() - started

    def decode(points: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(points))
        for start in range(0, len(points), rows):
            p = points[start:start + rows]
            m = len(p)
            if m < rows:  # keep one static shape: pad the last slice
                p = torch.cat([p, p.new_zeros(rows - m, 3)])
            out[start:start + m] = compiled(p)[:m]
        return out

    return decode, seconds


def bench_decoder(model: OccupancyNetwork, c: torch.Tensor, mesh_points_128: int, quick: bool,
                  try_compile: bool) -> None:
    heading("2. Decoder throughput, full-size point-cloud architecture (fitted network)")
    rounds = 2 if quick else 3
    rng = torch.Generator().manual_seed(0)
    points = {n: torch.rand(n, 3, generator=rng) * BOX_SIZE - BOX_SIZE / 2 for n in (10_000, 100_000)}
    fd = FoldedDecoder(model.decoder, c)
    whole = FoldedDecoder(model.decoder, c, slice_rows=1 << 30)  # one product over the whole batch
    previous = PreviousFolded(fd)
    plain = lambda p: model.decode(p[None], c)[0]  # noqa: E731

    with torch.inference_mode():
        p = points[100_000]
        reference = plain(p)
        diff = (fd(p) - reference).abs().max().item()
        diff_whole = (whole(p) - reference).abs().max().item()
        print(f"fitted network: logits in [{reference.min().item():.1f}, {reference.max().item():.1f}] "
              f"on 100k uniform box points; max |folded - plain| = {diff:.2e} "
              f"(folded, one slice: {diff_whole:.2e}); target 1e-4: {'met' if diff <= 1e-4 else 'MISSED'}\n")

    # plain vs folded, batch size and threads
    rows = []
    base_threads = torch.get_num_threads()
    results: dict[tuple[int, int], dict[str, float]] = {}
    for threads in sorted({base_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for n, p in points.items():
            with torch.inference_mode():
                s = interleaved({"plain": lambda p=p: plain(p), "previous": lambda p=p: previous(p),
                                 "folded, one slice": lambda p=p: whole(p), "folded": lambda p=p: fd(p)},
                                rounds if n == 10_000 else max(1, rounds - 1), warm_up=n == 10_000)
            results[threads, n] = s
            rows.append([threads, n, n / s["plain"], n / s["previous"], n / s["folded, one slice"],
                         n / s["folded"],
                         f"{s['plain'] / s['folded']:.2f}x",
                         f"{ORIGINAL['decoder_points_per_s'][n]:,}"])
    torch.set_num_threads(base_threads)
    table(["threads", "batch", "plain pts/s", "folded before slicing pts/s", "folded, one slice, buffers pts/s",
           "folded (2048-row slices) pts/s",
           "folded / plain", "original's plain pts/s"], rows)
    if base_threads > 1:
        for n in points:
            two, one = results[base_threads, n], results[1, n]
            print(f"batch {n:,}: {base_threads} threads vs 1: plain {one['plain'] / two['plain']:.2f}x, "
                  f"folded {one['folded'] / two['folded']:.2f}x")
        print()

    # slice size; 50k points from here on, to keep the run short
    p = points[100_000][:50_000]
    reference = reference[:50_000]
    sizes = (512, 1024, 2048, 4096, 8192, 32768)
    decoders = {k: FoldedDecoder(model.decoder, c, slice_rows=k) for k in sizes}
    with torch.inference_mode():
        s = interleaved({k: (lambda d=d: d(p)) for k, d in decoders.items()}, rounds)
    print(f"Slice rows (FoldedDecoder default {fd.slice_rows}), batch 50k, {base_threads} threads:\n")
    flops = 2 * sum(m.weight.numel() for m in model.decoder.modules() if isinstance(m, torch.nn.Conv1d)
                    and m.in_channels != model.config.c_dim)
    table(["slice rows"] + [f"{k:,}" for k in sizes], [["pts/s"] + [round(len(p) / s[k]) for k in sizes],
                                                       ["GFLOP/s"] + [f"{flops * len(p) / s[k] / 1e9:.0f}"
                                                                      for k in sizes]])
    print(f"({flops / 1e6:.2f} MFLOP per point: the decoder's matrix products, conditioning excluded.)\n")

    # other layouts, fused oneDNN, matmul precision
    variants: dict[str, Callable[[], object]] = {"folded (addmm, (in, out) weights)": lambda: fd(p)}
    linear = LinearDecoder(fd)
    variants["F.linear, (out, in) weights"] = lambda: linear(p)
    accuracy = {"F.linear, (out, in) weights": linear}
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
        fused = LinearDecoder(fd, fused_relu=True)
        try:
            with torch.inference_mode():
                fused(p[:10])
            variants["oneDNN linear+relu fused (private op)"] = lambda: fused(p)
            accuracy["oneDNN linear+relu fused (private op)"] = fused
        except RuntimeError as exc:
            print(f"oneDNN fused linear unavailable: {exc}\n")
    with torch.inference_mode():
        s = interleaved(variants, rounds)
        rows = [[name, len(p) / s[name], f"{s[next(iter(variants))] / s[name]:.2f}x",
                 f"{(accuracy[name](p) - reference).abs().max().item():.1e}" if name in accuracy else f"{diff:.1e}"]
                for name in variants]
        for precision in ("high", "medium"):
            def run(precision: str) -> torch.Tensor:
                torch.set_float32_matmul_precision(precision)
                try:
                    return fd(p)
                finally:
                    torch.set_float32_matmul_precision("highest")

            s2 = interleaved({"highest": lambda: run("highest"),
                              precision: lambda precision=precision: run(precision)}, rounds)
            rows.append([f"set_float32_matmul_precision('{precision}')", len(p) / s2[precision],
                         f"{s2['highest'] / s2[precision]:.2f}x (vs 'highest', same rounds)",
                         f"{(run(precision) - reference).abs().max().item():.1e}"])
    table(["variant (batch 50k)", "pts/s", "vs folded", "max abs diff vs plain"], rows)

    # torch.compile
    if not try_compile:
        print("torch.compile: skipped (--quick or --no-compile)\n")
        return
    try:
        # cold: an empty inductor cache, as on a user's first run; warm: the cache the first one filled
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="occnet-bench-inductor-")
        torch._dynamo.reset()
        decode, cold = compiled_slices(fd)
        with torch.inference_mode():
            s = interleaved({"eager": lambda: fd(p), "compiled": lambda: decode(p)}, rounds)
            cdiff = (decode(p) - reference).abs().max().item()
        warm = float("nan")
        if s["compiled"] < s["eager"]:  # only then does the cost of a warm-cache compile matter
            torch._dynamo.reset()
            decode, warm = compiled_slices(fd)
    except Exception as exc:  # noqa: BLE001  any failure is a result here
        print(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}\n")
        return
    saved = mesh_points_128 * (s["eager"] - s["compiled"]) / len(p)
    print(f"torch.compile of one folded slice (inductor, dynamic=False, {fd.slice_rows} rows): first call "
          f"{cold:.1f} s with an empty inductor cache"
          f"{'' if math.isnan(warm) else f', {warm:.1f} s with a warm one'}; "
          f"{len(p) / s['compiled']:,.0f} pts/s compiled vs {len(p) / s['eager']:,.0f} eager "
          f"({s['eager'] / s['compiled']:.2f}x), max abs diff {cdiff:.1e}. For one 128-cell mesh "
          f"({mesh_points_128:,} points) it would save {saved:.2f} s against "
          f"{cold if math.isnan(warm) else warm:.1f} s of compiling: "
          f"{'pays' if saved > (cold if math.isnan(warm) else warm) else 'does not pay'}.\n")


# -- 3. whole reconstruction ------------------------------------------------------------------


def original_style(model: OccupancyNetwork, prepared: PreparedInput, resolution: int,
                   batch: int = 100_000) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """The reference generator (generate_from_latent + eval_points) with our modules: plain decode in
    batches of 100k under no_grad, values to float64, MISE resolution_0 32, marching cubes."""
    stats: dict[str, float] = {}
    started = time.perf_counter()
    with torch.no_grad():
        c = model.encode(torch.from_numpy(prepared.array)[None])
    stats["encode"] = time.perf_counter() - started
    threshold = logit(THRESHOLD)
    t = time.perf_counter()
    mise = MISE(32, int(math.log2(resolution // 32)), threshold)
    network = 0.0
    points = mise.query()
    while len(points):
        pointsf = BOX_SIZE * (torch.FloatTensor(points) / mise.resolution - 0.5)
        tn = time.perf_counter()
        with torch.no_grad():
            values = torch.cat([model.decode(pi[None], c).squeeze(0).detach().cpu()
                                for pi in torch.split(pointsf, batch)])
        values = values.numpy().astype(np.float64)
        network += time.perf_counter() - tn
        mise.update(points, values)
        points = mise.query()
    grid = mise.to_dense()
    stats["network"] = network
    stats["mise"] = time.perf_counter() - t - network
    t = time.perf_counter()
    mesh = extract_mesh(grid, threshold, BOX_SIZE)
    stats["meshing"] = time.perf_counter() - t
    stats["total"] = time.perf_counter() - started
    stats["points"] = mise.points_evaluated
    return stats, mesh


def ours(weights: Weights, prepared: PreparedInput, resolution: int
         ) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    started = time.perf_counter()
    reconstructor = Reconstructor(weights, device="cpu")
    build = time.perf_counter() - started
    shape = reconstructor.encode(prepared)
    network = [0.0]
    decode = shape.decode

    def timed_decode(p: torch.Tensor) -> torch.Tensor:
        t = time.perf_counter()
        out = decode(p)
        network[0] += time.perf_counter() - t
        return out

    shape.decode = timed_decode
    mesh = shape.extract(ExtractionSettings(threshold=THRESHOLD, resolution=resolution))
    total = time.perf_counter() - started
    st = mesh.stats
    stats = {"build": build, "encode": st["seconds_encode"], "network": network[0],
             "mise": st["seconds_evaluate"] - network[0], "meshing": st["seconds_meshing"],
             "total": total - build, "points": st["points_evaluated"]}
    # back to the unit-cube frame for comparison with the original-style mesh
    vertices = ((mesh.vertices.astype(np.float64) - prepared.loc) / prepared.scale).astype(np.float32)
    return stats, (vertices, mesh.faces)


def bench_reconstruction(model: OccupancyNetwork, resolutions: tuple[int, ...], quick: bool) -> int:
    heading("3. Whole point-cloud reconstruction, full-size network fitted to a sphere (threshold 0.2)")
    prepared, centre, radius = test_input()
    weights = Weights(model.config, model.state_dict(), THRESHOLD)
    # warm-up (first MKL calls, allocator) for both pipelines at 32 cells' worth of work
    original_style(model, prepared, 32)
    ours(weights, prepared, 32)
    rows, agreement = [], []
    points_128 = 0
    for resolution in resolutions:
        rounds = 1 if quick or resolution >= 256 else 2  # 256: one round, the original-style takes 30+ s
        runs: dict[str, list[dict[str, float]]] = {"original-style": [], "ours": []}
        meshes = {}
        for _ in range(rounds):
            runs["original-style"].append((r := original_style(model, prepared, resolution))[0])
            meshes["original-style"] = r[1]
            runs["ours"].append((r := ours(weights, prepared, resolution))[0])
            meshes["ours"] = r[1]
        med = {k: {f: statistics.median(run[f] for run in v) for f in v[0]} for k, v in runs.items()}
        for name, s in med.items():
            published = ORIGINAL["seconds_per_mesh"].get(resolution)
            rows.append([resolution, name, int(s["points"]), s["encode"], s["network"], s["mise"],
                         s["meshing"], s["total"], f"{s['points'] / s['network']:,.0f}",
                         f"{med['original-style']['total'] / s['total']:.2f}x",
                         f"{published} s" if name == "original-style" and published else ""])
        if resolution == 128:
            points_128 = int(med["ours"]["points"])
        a, b = meshes["original-style"], meshes["ours"]
        same_faces = np.array_equal(a[1], b[1])
        max_v = float(np.abs(a[0] - b[0]).max()) if same_faces and len(a[0]) == len(b[0]) else float("nan")
        r = np.linalg.norm(b[0].astype(np.float64) - centre, axis=1)
        true_volume = 4 / 3 * math.pi * radius**3
        agreement.append([resolution, "yes" if same_faces else "no", f"{max_v:.1e}",
                          f"{mesh_volume_iou(a, b):.5f}", len(b[1]),
                          f"{r.mean():.4f} ({radius:.4f})", f"{mesh_volume(*b) / true_volume:.3f}"])
    table(["cells", "pipeline", "points", "encode s", "network s", "MISE s", "marching cubes s", "total s",
           "network pts/s", "speed-up", "original's published"], rows)
    table(["cells", "same faces", "max vertex diff", "volume IoU", "faces",
           "mean radius (true)", "volume / true sphere"], agreement)
    return points_128


# -- 4. OpenMP wait policy --------------------------------------------------------------------


def policy_worker(fit_steps: int) -> None:
    """In a child process: plain vs folded decoding of 100k points and the 128-cell pair; one JSON line."""
    model, _, _ = fit_network(fit_steps)
    prepared, _, _ = test_input()
    weights = Weights(model.config, model.state_dict(), THRESHOLD)
    with torch.inference_mode():
        c = model.encode(torch.from_numpy(prepared.array)[None])
    fd = FoldedDecoder(model.decoder, c)
    p = torch.rand(100_000, 3, generator=torch.Generator().manual_seed(0)) * BOX_SIZE - BOX_SIZE / 2
    load = os.getloadavg()[0]
    with torch.inference_mode():
        model.decode(p[None, :10_000], c)
        fd(p[:10_000])
        s = interleaved({"plain": lambda: model.decode(p[None], c), "folded": lambda: fd(p)}, 2, warm_up=False)
    original_style(model, prepared, 32)
    ours(weights, prepared, 32)
    so, _ = original_style(model, prepared, 128)
    sn, _ = ours(weights, prepared, 128)
    print(json.dumps({"plain": len(p) / s["plain"], "folded": len(p) / s["folded"], "original_128": so["total"],
                      "ours_128": sn["total"], "load": (load + os.getloadavg()[0]) / 2}))


def bench_wait_policy(fit_steps: int) -> None:
    heading("4. OpenMP wait policy: libgomp's default (spin, then sleep) against OMP_WAIT_POLICY=PASSIVE")
    print("Each in a fresh process (libgomp reads the variable when it loads), one after the other: "
          "decoding 100k points (2 rounds) and one 128-cell reconstruction each way.\n")
    rows = []
    for policy in ("default", "PASSIVE"):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--policy-worker",
                               "--fit-steps", str(fit_steps)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{policy}: the worker failed: {proc.stderr.strip().splitlines()[-1:]}\n")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append([policy, r["plain"], r["folded"], f"{r['folded'] / r['plain']:.2f}x", r["original_128"],
                     r["ours_128"], f"{r['original_128'] / r['ours_128']:.2f}x", f"{r['load']:.1f}"])
    table(["OMP_WAIT_POLICY", "plain pts/s (100k)", "folded pts/s (100k)", "folded / plain",
           "original-style 128 s", "ours 128 s", "speed-up", "load average"], rows)


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer and shorter measurements")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--no-policy", action="store_true", help="skip the OpenMP wait policy comparison")
    parser.add_argument("--policy-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fit-steps", type=int, default=None, help="Adam steps fitting the network "
                        "(default 200, 40 with --quick); the result is cached in the temp directory")
    args = parser.parse_args()
    quick = args.quick
    fit_steps = args.fit_steps or (40 if quick else 200)
    if args.policy_worker:
        policy_worker(fit_steps)
        return
    started = time.perf_counter()

    print("# Mesh extraction benchmark\n")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"load average {os.getloadavg()[0]:.2f} at start"
          f"{'; --quick' if quick else ''}", flush=True)

    bench_analytic((64, 128) if quick else (64, 128, 256))

    heading("Fitting the full-size point-cloud network to spheres")
    model, fit_s, cached = fit_network(fit_steps)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters; {fit_steps} Adam steps (lr 1e-3, 2 clouds x 2048 query points): "
          + ("cached" if cached else f"{fit_s:.0f} s"), flush=True)

    points_128 = bench_reconstruction(model, (64, 128) if quick else (128, 256), quick)

    prepared, _, _ = test_input()
    with torch.inference_mode():
        c = model.encode(torch.from_numpy(prepared.array)[None])
    bench_decoder(model, c.clone(), points_128 or 150_000, quick, try_compile=not (quick or args.no_compile))

    if not (quick or args.no_policy):
        bench_wait_policy(fit_steps)

    print(f"load average {os.getloadavg()[0]:.2f} at the end; whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
