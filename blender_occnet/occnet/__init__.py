"""Core library: networks, checkpoints, preprocessing and mesh extraction (torch, numpy; never bpy)."""
