"""The reconstruction backend: a process with torch that serves requests from Blender (never imports bpy)."""
