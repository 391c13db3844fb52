"""The reconstruction backend: a process with torch that serves requests from Blender (never imports bpy)."""

from ..common import EXIT_MISSING_PACKAGE as EXIT_MISSING_PACKAGE  # __main__'s, with the client's meaning
