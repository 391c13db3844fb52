"""What Blender may load: the contract between the add-on and the backend (messages, protocol, the backend
client) and the torch-free parts both sides share (policy, geometry, binvox, errors, file writes, user folders,
the shipped architectures' names, where weights are looked for, the torch environment set before torch loads).

The import rule: modules here load the standard library and numpy only, and of this package only each other;
never torch, safetensors, skimage, trimesh, yaml or bpy (torch_env.apply_to_torch imports torch when the torch
side calls it). The add-on (addon/) imports only from here and from itself; the torch side (occnet/, backend/,
cli.py, batch.py) imports from here freely. tests/blender/test_extension.py checks both: by reading every
import, and by loading every module with the backend's packages blocked.
"""

# The local backend's exit status when torch (or another requirement) is missing in its interpreter: the
# client tells it apart from a crash. Here (stdlib only) because backend/__main__ checks before importing numpy.
EXIT_MISSING_PACKAGE = 3
