"""What Blender may load: the contract between the add-on and the backend (messages, protocol, the client) and the
torch-free parts both sides share (policy, geometry, binvox, errors, file writes, user folders, the torch
environment set before torch loads).

The import rule: modules here import the standard library, numpy and each other only; never torch, safetensors,
skimage, trimesh, yaml, bpy, nor any other part of this package. The add-on (addon/) imports only from here and
from itself; the torch side (occnet/, backend/, cli.py) imports from here freely. tests/blender/test_extension.py
checks both.
"""

# The local backend's exit status when torch (or another requirement) is missing in its interpreter: the
# client tells it apart from a crash. Here (stdlib only) because backend/__main__ checks before importing numpy.
EXIT_MISSING_PACKAGE = 3
