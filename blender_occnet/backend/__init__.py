"""The reconstruction backend: a process with torch that serves requests from Blender (never imports bpy)."""

# The local backend's exit status when torch (or another requirement) is missing in its interpreter: the
# client tells it apart from a crash. Here (stdlib only) because __main__ checks before importing numpy.
EXIT_MISSING_PACKAGE = 3
