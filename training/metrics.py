"""The paper's metrics: volumetric IoU, Chamfer-L1, normal consistency, and F-score at 1%.

IoU needs an inside test of the predicted mesh at arbitrary points (occnet.inside: ray parity with a
2D hash of the triangles; the extracted meshes are closed, so one ray per point suffices).
Distances use a KD-tree between area-weighted surface samples of the two surfaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from blender_occnet.common.geometry import face_normals, sample_surface
from blender_occnet.occnet.inside import contains

F_SCORE_THRESHOLD = 0.01  # 1% of the unit cube's side


@dataclass
class SurfaceSample:
    points: np.ndarray  # (N, 3)
    normals: np.ndarray  # (N, 3), unit length


def inside_mesh(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each point lies inside a closed mesh (the extracted meshes are closed: one ray suffices)."""
    return contains(vertices, faces, points, robust=False)


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> SurfaceSample:
    """Area-weighted surface samples with their face normals."""
    vertices, faces = np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    points, face = sample_surface(vertices, faces, n, seed)
    return SurfaceSample(points, face_normals(vertices, faces[face]))


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
