"""Load sample: each bundled input becomes a source in one click and reconstructs."""

from __future__ import annotations

import bpy
import pytest

from tests.blender.blender_helpers import edge_use_counts

pytestmark = pytest.mark.usefixtures("installed")


@pytest.mark.parametrize("modality, source_type", [("pointcloud", "POINTCLOUD"), ("voxels", "MESH"),
                                                  ("image", "EMPTY")])
def test_each_sample_loads_and_reconstructs(modality: str, source_type: str) -> None:
    settings = bpy.context.scene.occnet
    settings.source_kind = "VOXELIZE"  # a leftover choice that does not suit a point cloud
    assert bpy.ops.occnet.load_sample(modality=modality) == {"FINISHED"}
    [source] = bpy.data.objects
    assert source.type == source_type
    if modality == "image":
        assert settings.source_kind == "IMAGE" and settings.image is not None
        assert source.data == settings.image and tuple(settings.image.size) == (224, 224)
    else:
        assert bpy.context.view_layer.objects.active == source
        assert (source.occnet.kind == "VOXELS") == (modality == "voxels")
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}, bpy.context.window_manager.occnet_job.last_error
    # An image's result is named after it without its file suffix: sofa_image.png -> sofa_image.occnet.
    name = f"{settings.image.name.rsplit('.', 1)[0] if modality == 'image' else source.name}.occnet"
    result = bpy.data.objects[name]
    assert (edge_use_counts(result.data) == 2).all()


def test_reconstruct_follows_the_selection_after_the_image_sample(addon) -> None:  # type: ignore[no-untyped-def]
    """Load the image sample, then the voxel sample: Reconstruct uses the selected voxels (not the image
    chosen before), and the panel's line says so before the click."""
    settings = bpy.context.scene.occnet
    assert bpy.ops.occnet.load_sample(modality="image") == {"FINISHED"}
    assert addon.scene_io.describe_source(settings, bpy.context.active_object).startswith("image 'sofa_image")
    assert bpy.ops.occnet.load_sample(modality="voxels") == {"FINISHED"}
    car = bpy.context.active_object
    assert settings.source_kind == "IMAGE"  # left as the image sample set it
    assert addon.scene_io.describe_source(settings, car) == f"'{car.name}', its voxels"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert f"{car.name}.occnet" in bpy.data.objects and "sofa_image.occnet" not in bpy.data.objects
    # With nothing selected the chosen image is what Reconstruct uses.
    bpy.context.view_layer.objects.active = None
    assert addon.scene_io.chosen_source(settings, None) == "IMAGE"
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"} and "sofa_image.occnet" in bpy.data.objects


def test_the_image_sample_is_the_source_after_an_earlier_reconstruct() -> None:
    """A new user doing the samples in order: the chair's result is still active when the image sample is loaded;
    Reconstruct then uses the image (its empty selected and active), not the chair's result again."""
    assert bpy.ops.occnet.load_sample(modality="pointcloud") == {"FINISHED"}
    chair = bpy.context.active_object
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}
    assert bpy.context.active_object.name == f"{chair.name}.occnet"
    assert bpy.ops.occnet.load_sample(modality="image") == {"FINISHED"}
    empty = bpy.context.active_object
    assert empty is not None and empty.type == "EMPTY" and list(bpy.context.selected_objects) == [empty]
    assert bpy.ops.occnet.reconstruct() == {"FINISHED"}, bpy.context.window_manager.occnet_job.last_error
    assert "sofa_image.occnet" in bpy.data.objects
    assert not [o for o in bpy.data.objects if o.name.startswith(f"{chair.name}.occnet.")]
