"""The architectures this project ships, by name: what the add-on offers for an original checkpoint, and what
the torch side's families (occnet/onet.py, occnet/convonet.py) declare. Names, inputs and labels only; each
family adds its released model's config and how its networks are built (occnet/families.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchitectureName:
    """One shipped architecture as a person choosing it sees it."""

    name: str
    modality: str  # the input it takes: 'image', 'pointcloud' or 'voxels'
    label: str  # one line for a person choosing it
    title: str = ""  # how a menu shows it where not by its name

    @property
    def shown(self) -> str:
        return self.title or self.name


_SHIPPED = (
    # ONet: the four released conditional models of the original project.
    ArchitectureName("onet-img", "image", "The original's image model"),
    ArchitectureName("onet-img-legacy", "image", "The paper's image model (Linear conditional batch norm)",
                     title="onet-img (paper)"),
    ArchitectureName("onet-pointcloud", "pointcloud", "The original's point-cloud model"),
    ArchitectureName("onet-voxels", "voxels", "The original's voxel model"),
    # ConvONet: the released ShapeNet object models.
    ArchitectureName("convonet-pointcloud-3plane", "pointcloud",
                     "ConvONet's point-cloud model on three planes (pointcloud/shapenet_3plane.pt)"),
    ArchitectureName("convonet-pointcloud-1plane", "pointcloud",
                     "ConvONet's one-plane point-cloud model (shapenet_1plane.pt: not told from its keys)"),
    ArchitectureName("convonet-pointcloud-grid", "pointcloud",
                     "ConvONet's point-cloud model on a 32³ grid (pointcloud/shapenet_grid32.pt)"),
    ArchitectureName("convonet-voxels-3plane", "voxels",
                     "ConvONet's voxel model on three planes (voxel/voxel_shapenet_3plane.pt)"),
    ArchitectureName("convonet-voxels-1plane", "voxels",
                     "ConvONet's one-plane voxel model (voxel_shapenet_1plane.pt: not told from its keys)"),
    ArchitectureName("convonet-voxels-grid", "voxels",
                     "ConvONet's voxel model on a 32³ grid (voxel/voxel_shapenet_grid32.pt)"),
)
SHIPPED: dict[str, ArchitectureName] = {a.name: a for a in _SHIPPED}  # in the order menus list them
