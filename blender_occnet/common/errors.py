"""Error types of the core library: each message says what went wrong and what to do."""


class OccNetError(Exception):
    """Base class of every error this project raises on purpose (the CLI prints it without a traceback)."""


class InputError(OccNetError, ValueError):
    """An input (image, point cloud, voxel grid, option value) that cannot be used."""


class OutputError(OccNetError):
    """A result that could not be written where it was asked for (a full disk, a folder gone)."""


class CheckpointError(OccNetError):
    """A weights file that cannot be read, is unsafe, or does not fit the architecture."""


class GenerationError(OccNetError):
    """Mesh extraction failed (for example the network produced NaN)."""


class Cancelled(OccNetError):
    """The caller asked to stop; raised between batches."""
