"""Procedural shapes with exact occupancy, written in the original layout: man-made ones (unions of analytic
primitives) and organic ones (smooth implicit solids: organic.py).

Every man-made shape is a union of solid primitives (boxes, cylinders and cone frustums, tubes, ellipsoids, tori),
so inside/outside is decided analytically: the labels are exact although the union's mesh (the
primitives' meshes concatenated) is not watertight. Shapes are canonical like ShapeNet: y up, the
front facing -z. Each model is drawn from np.random.default_rng([seed, category_index, index]), so a
dataset is reproducible byte for byte whatever the number of workers.

    python -m training.shapes OUT --per-category 200 --seed 0 --uniform-points 32768 --surface-points 30000
"""

from .categories import CATEGORIES, GENERATORS, MIN_THICKNESS, generate
from .cli import main
from .dataset import ALL_CATEGORIES, build_dataset, model_id, model_rng, write_metadata, write_split_lists, write_splits
from .organic import ORGANIC_CATEGORIES, OrganicShape, generate_organic
from .primitives import (
    AXIS_ROT,
    SURFACE_EPS,
    Box,
    Cylinder,
    Ellipsoid,
    Primitive,
    Shape,
    Torus,
    Tube,
    normalise,
    rot_to,
    rot_x,
    rot_y,
    rot_z,
)
from .writer import BOX_SIZE, MODEL_FILES, Settings, SolidShape, write_model

__all__ = [
    "ALL_CATEGORIES", "AXIS_ROT", "BOX_SIZE", "CATEGORIES", "GENERATORS", "MIN_THICKNESS", "MODEL_FILES",
    "ORGANIC_CATEGORIES", "SURFACE_EPS", "Box", "Cylinder", "Ellipsoid", "OrganicShape", "Primitive", "Settings",
    "Shape", "SolidShape", "Torus", "Tube", "build_dataset", "generate", "generate_organic", "main", "model_id",
    "model_rng", "normalise", "rot_to", "rot_x", "rot_y", "rot_z", "write_metadata", "write_model",
    "write_split_lists", "write_splits",
]
