"""Checked messages to the core's objects and back: extraction settings, the prepared input. The messages have
checked every field (messages.py); what is left here is what only the core can tell (an input its
preprocessing cannot use)."""

from __future__ import annotations

import dataclasses

from ..common.errors import InputError
from ..common.messages import SETTINGS, FieldError, Reconstruct, Settings
from ..occnet.config import ModelConfig
from ..occnet.generation import ExtractionSettings
from ..occnet.preprocess import PreparedInput, prepare_for_network, prepare_voxels_from_mesh


def extraction_settings(given: Settings, base: ExtractionSettings | None = None) -> ExtractionSettings:
    """The settings a message gives, over `base` (a finished job's, for a re-extraction) or the core's defaults
    (a reconstruction's threshold is then the weights' own, filled in once they are loaded)."""
    values = dataclasses.asdict(base) if base is not None else {}
    values.pop("resolution_0", None)  # the settings' own for their resolution
    values.update({name: getattr(given, name) for name in SETTINGS if getattr(given, name) is not None})
    return ExtractionSettings(**values)


def used_settings(settings: ExtractionSettings) -> Settings:
    """What a result reports it used."""
    return Settings(**{name: getattr(settings, name) for name in SETTINGS})


def prepare_input(request: Reconstruct, config: ModelConfig) -> PreparedInput:
    """The shared preprocessing for the request's modality (what the CLI and the trainer use too), sized for
    the network that will see it."""
    try:
        if request.faces is not None:
            return prepare_voxels_from_mesh(request.input, request.faces, "the mesh", colours=request.point_colours)
        return prepare_for_network(config, request.modality, request.input, seed=request.seed or 0,
                                   input_points=request.input_points, colours=request.point_colours)
    except InputError as exc:
        raise FieldError("input", str(exc)) from None
