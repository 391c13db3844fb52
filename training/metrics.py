"""The paper's metrics: volumetric IoU, Chamfer-L1, normal consistency, and F-score at 1%.

IoU needs an inside test of the predicted mesh at arbitrary points: a vertical ray from each point,
crossings counted with a 2D hash of the triangles (parity; the extracted meshes are closed).
Distances use a KD-tree between area-weighted surface samples of the two surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from blender_occnet.occnet.meshio import MeshData, sample_surface_with_faces

F_SCORE_THRESHOLD = 0.01  # 1% of the unit cube's side
_JITTER = np.array([1.23456789e-7, 3.14159265e-7])  # keeps rays off edges shared by two triangles


@dataclass
class SurfaceSample:
    points: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3), unit length


def inside_mesh(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, cells: int = 64,
                chunk: int = 4_000_000) -> np.ndarray:
    """Whether each point lies inside a closed triangle mesh (ray parity along +z)."""
    points = np.asarray(points, dtype=np.float64)
    inside = np.zeros(len(points), dtype=bool)
    if len(faces) == 0 or len(points) == 0:
        return inside
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    ray = points[:, :2] + _JITTER
    lo = np.minimum(ray.min(axis=0), tri[:, :, :2].min(axis=(0, 1)))
    size = np.maximum(ray.max(axis=0), tri[:, :, :2].max(axis=(0, 1))) - lo + 1e-9
    to_cell = lambda xy: np.clip(((xy - lo) / size * cells).astype(np.int64), 0, cells - 1)  # noqa: E731
    # Points sorted by cell, so the points of a cell are one contiguous range.
    point_cell = to_cell(ray)
    point_key = point_cell[:, 0] * cells + point_cell[:, 1]
    order = np.argsort(point_key, kind="stable")
    starts = np.searchsorted(point_key[order], np.arange(cells * cells + 1))
    # Cells each triangle's projected bounding box covers.
    c0, c1 = to_cell(tri[:, :, :2].min(axis=1)), to_cell(tri[:, :, :2].max(axis=1))
    span = c1 - c0 + 1
    per_face = span[:, 0] * span[:, 1]
    face = np.repeat(np.arange(len(tri)), per_face)
    k = np.arange(len(face)) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    key = (c0[face, 0] + k // span[face, 1]) * cells + c0[face, 1] + k % span[face, 1]
    counts = starts[key + 1] - starts[key]
    crossings = np.zeros(len(points), dtype=np.int64)
    # (face, point) candidate pairs, a bounded number at a time.
    step = max(1, chunk // max(1, int(np.ceil(counts.mean()))))
    for begin in range(0, len(key), step):
        keys, faces_, n = key[begin:begin + step], face[begin:begin + step], counts[begin:begin + step]
        within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        p_idx = order[np.repeat(starts[keys], n) + within]
        f_idx = np.repeat(faces_, n)
        crossings += _crossings_above(tri[f_idx], points[p_idx], ray[p_idx], p_idx, len(points))
    return crossings % 2 == 1


def _crossings_above(tri: np.ndarray, points: np.ndarray, ray: np.ndarray, p_idx: np.ndarray,
                     n_points: int) -> np.ndarray:
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e1, e2 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]
    d = ray - a[:, :2]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
        hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1)
        z = a[:, 2] + u * (b[:, 2] - a[:, 2]) + v * (c[:, 2] - a[:, 2])
    above = hit & (z > points[:, 2])
    return np.bincount(p_idx[above], minlength=n_points)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> SurfaceSample:
    """Area-weighted surface samples with their face normals."""
    mesh = MeshData(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    points, face = sample_surface_with_faces(mesh, n, seed)
    tri = mesh.vertices[mesh.faces[face]]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return SurfaceSample(points, normals)


def iou(predicted_inside: np.ndarray, true_inside: np.ndarray) -> float:
    union = np.logical_or(predicted_inside, true_inside).sum()
    return float(np.logical_and(predicted_inside, true_inside).sum() / union) if union else 1.0


def surface_metrics(predicted: SurfaceSample, truth: SurfaceSample,
                    f_threshold: float = F_SCORE_THRESHOLD) -> dict[str, float]:
    """Chamfer-L1 (mean of accuracy and completeness), normal consistency and F-score."""
    dist_to_truth, nearest_truth = cKDTree(truth.points).query(predicted.points)
    dist_to_pred, nearest_pred = cKDTree(predicted.points).query(truth.points)
    accuracy, completeness = float(dist_to_truth.mean()), float(dist_to_pred.mean())
    normals_pred = np.abs((predicted.normals * truth.normals[nearest_truth]).sum(axis=1)).mean()
    normals_truth = np.abs((truth.normals * predicted.normals[nearest_pred]).sum(axis=1)).mean()
    precision = float((dist_to_truth <= f_threshold).mean())
    recall = float((dist_to_pred <= f_threshold).mean())
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    chamfer = 0.5 * (accuracy + completeness)
    return {"chamfer_l1": chamfer, "chamfer_l1_x10": 10 * chamfer, "accuracy": accuracy,
            "completeness": completeness, "normal_consistency": float(0.5 * (normals_pred + normals_truth)),
            "f_score": f_score, "precision": precision, "recall": recall}
