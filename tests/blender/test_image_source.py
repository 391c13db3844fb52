"""An image datablock as the source: pixels read top row first, the result at the 3D cursor."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from mathutils import Matrix, Vector

from tests.blender.blender_helpers import edge_use_counts, scene_snapshot

pytestmark = pytest.mark.usefixtures("installed")


def make_image(name: str = "Photo", width: int = 96, height: int = 64) -> bpy.types.Image:
    """A dark rectangle on a transparent background (alpha composited onto white by the backend)."""
    image = bpy.data.images.new(name, width, height, alpha=True)
    pixels = np.zeros((height, width, 4), np.float32)
    pixels[16:48, 30:70] = (0.2, 0.3, 0.8, 1.0)
    image.pixels.foreach_set(pixels.ravel())
    return image


def test_image_source_reconstructs_at_the_cursor() -> None:
    settings = bpy.context.scene.occnet
    settings.source_kind, settings.image, settings.weights = "IMAGE", make_image(), "img"
    bpy.context.scene.cursor.location = (1.0, -2.0, 3.0)
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}, bpy.context.window_manager.occnet_job.last_error
    result = bpy.data.objects["Photo.occnet"]
    assert np.allclose(np.array(result.matrix_world), np.array(Matrix.Translation(Vector((1.0, -2.0, 3.0)))))
    counts = edge_use_counts(result.data)
    assert len(counts) and (counts == 2).all()
    assert result.occnet.kind == "RESULT" and result.occnet.source == "Photo"


def test_image_source_errors_leave_the_scene_alone() -> None:
    settings = bpy.context.scene.occnet
    settings.source_kind, settings.weights = "IMAGE", "img"
    assert not bpy.ops.occnet.reconstruct.poll()  # no image picked: the button says why
    missing = bpy.data.images.new("Missing", 4, 4)  # an image whose file is gone has no pixels
    missing.source, missing.filepath = "FILE", "/nonexistent/photo.png"
    missing.reload()
    settings.image = missing
    before = scene_snapshot()
    with pytest.raises(RuntimeError, match="has no pixels"):
        bpy.ops.occnet.reconstruct()
    assert scene_snapshot() == before
    settings.image, settings.weights = make_image("Photo2"), "pc"  # point-cloud weights for an image
    with pytest.raises(RuntimeError, match="takes pointcloud input, not image"):
        bpy.ops.occnet.reconstruct()
    assert scene_snapshot() == before
