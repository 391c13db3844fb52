"""One declaration per reconstruction setting: its name, type, default, bounds or choices, the add-on's label and
tooltip, the command line's flag and help. Every front end is made from these (issue 26 item 1):

- messages.Settings (the `extraction` settings) and messages.Reconstruct (the `request` ones): fields and checks;
- occnet.generation.ExtractionSettings: its checks (the engine's own dataclass, whose fields are these names);
- the add-on's scene properties (`sidebar`), the Reconstruct operator's redo properties (`redo`), and what the
  sidebar sends (addon/settings_ui.py);
- the command line's flags (`python -m blender_occnet reconstruct`), and what a `--jobs` worker is given;
- the keywords api.reconstruct accepts.

A new setting that reaches the engine is one declaration here and the engine code that uses it
(tests/blender/test_settings_everywhere.py holds every front end to these declarations).

Standard library only: Blender loads it, and so does the backend.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Any

from .policy import (
    ENSEMBLE_SIZES,
    FIT_MODES,
    GPU_ONLY_RESOLUTION,
    MAX_INPUT_POINTS,
    MAX_REFINE_STEPS,
    MAX_SEED,
    MAX_SIMPLIFY_FACES,
    REFINE_METHODS,
    RESOLUTIONS,
    coarse_resolution,
)

# Where a setting's value goes: `extraction` settings are the engine's ExtractionSettings (and may be given again
# for a re-extraction), `request` ones how the input is read and encoded (a reconstruction's only), `process`
# ones the command line's own process (never sent).
SCOPES = ("extraction", "request", "process")


class SettingError(ValueError):
    """A value a setting refuses; the text says why ("must be ..., got ...") without the setting's name."""


@dataclass(frozen=True)
class Choice:
    """One value of a setting with choices: the value itself (as sent), how the add-on names it (`ident`: an enum
    identifier saved in .blend files) and shows it."""

    value: Any
    label: str
    tooltip: str = ""
    ident: str = ""  # the add-on's enum identifier; "" = str(value)

    @property
    def identifier(self) -> str:
        return self.ident or str(self.value)


@dataclass(frozen=True)
class Setting:
    name: str  # the field, property, keyword and ExtractionSettings name
    kind: type  # int, float, bool or str
    default: Any  # None: unset, the weights' own (see `unset`)
    label: str  # the add-on's
    tooltip: str  # the add-on's
    flag: str  # the command line's
    help: str  # the command line's
    scope: str = "extraction"  # one of SCOPES
    sidebar: bool = False  # a scene property in the sidebar (scene.occnet.<name>)
    redo: bool = False  # offered again in the Reconstruct operator's redo panel
    points_only: bool = False  # the sidebar shows it for sources read as points only
    lo: float | None = None  # numbers: the bounds, inclusive unless `strict`
    hi: float | None = None
    strict: bool = False
    what: str = ""  # numbers: what the value is, in refusals ("a probability")
    off_below: int = 0  # integers: values in (0, off_below) refused (0 means off)
    choices: tuple[Choice, ...] = ()
    pattern: str = ""  # strings: what the wire accepts, when more than the choices (the add-on offers those)
    pattern_text: str = ""  # ... said in refusals
    aliases: tuple[str, ...] = ()  # other spellings of the flag
    metavar: str = ""
    cli_choices: bool = True  # the command line refuses other values than the choices
    # Unset (default None): the add-on shows a switch `unset_name` (on: the weights' own) beside a slider whose
    # value is `fallback`; the command line leaves the flag out.
    unset_name: str = ""
    unset_label: str = ""
    unset_tooltip: str = ""
    fallback: Any = None
    ui_range: tuple[float, float] | None = None  # a slider's ends when the bounds are open (strict)
    precision: int = 3  # floats: digits the add-on shows

    def __post_init__(self) -> None:
        assert self.scope in SCOPES, self.scope
        assert (self.default is None) == bool(self.unset_name), self.name

    @property
    def values(self) -> tuple[Any, ...]:
        return tuple(choice.value for choice in self.choices)

    def check(self, value: Any) -> Any:
        """The value to keep (integers as int, numbers as float), or SettingError with the reason."""
        if self.pattern:
            if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
                raise SettingError(f"must be {self.pattern_text}, got {show(value)}")
            return value
        if self.choices:
            if _is_bool(value) or not isinstance(value, self.kind) or value not in self.values:
                raise SettingError(f"must be one of {', '.join(map(str, self.values))}, got {show(value)}")
            return self.kind(value)
        if self.kind is bool:
            if not _is_bool(value):
                raise SettingError(f"must be true or false, got {show(value)}")
            return bool(value)
        if self.kind is int:
            if _is_bool(value) or not isinstance(value, numbers.Integral):
                raise SettingError(f"must be an integer, got {show(value)}")
            number = int(value)
            if self.lo is not None and number < self.lo:
                raise SettingError(f"must be at least {self.lo:,}, got {number:,}")
            if self.hi is not None and number > self.hi:
                raise SettingError(f"must be at most {self.hi:,}, got {number:,}")
            if 0 < number < self.off_below:
                raise SettingError(f"must be 0 (off) or at least {self.off_below}, got {number}")
            return number
        if self.kind is float:
            if _is_bool(value) or not isinstance(value, numbers.Real):
                raise SettingError(f"must be a number, got {show(value)}")
            real = float(value)
            lo = -math.inf if self.lo is None else self.lo
            hi = math.inf if self.hi is None else self.hi
            what = f"{self.what} " if self.what else ""
            if not math.isfinite(real):
                raise SettingError(f"must be finite, got {real!r}")
            if self.strict and not lo < real < hi:
                raise SettingError(f"must be {what}strictly between {lo:g} and {hi:g}, got {real!r}")
            if not lo <= real <= hi:
                raise SettingError(f"must be {what}between {lo:g} and {hi:g}, got {real!r}")
            return real
        if not isinstance(value, str):
            raise SettingError(f"must be a string, got {show(value)}")
        return value

    def refusal(self, value: Any) -> str:
        """'<name> must be ..., got ...' for a value check() refuses; '' for one it keeps."""
        try:
            self.check(value)
        except SettingError as exc:
            return f"{self.name} {exc}"
        return ""

    def choice(self, identifier: str) -> Choice:
        """The choice the add-on's enum identifier names."""
        return next(c for c in self.choices if c.identifier == identifier)

    def cli_value(self, value: Any) -> list[str]:
        """The command line's arguments that give `value` (a --jobs worker is given its parent's settings so)."""
        if self.kind is bool:
            return [self.flag if value else "--no-" + self.flag.removeprefix("--")]
        return [self.flag, str(value)]


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ in ("bool_", "bool")  # numpy's too


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _resolution_tooltip(n: int) -> str:
    return (f"Extract the surface on a {n}³ grid (MISE from {coarse_resolution(n)}³): finer detail, about "
            f"{(n // RESOLUTIONS[0]) ** 2}x the time of {RESOLUTIONS[0]}³"
            + ("; needs a GPU, or minutes on a CPU" if n >= GPU_ONLY_RESOLUTION else ""))


DECLARED = (
    Setting(
        "resolution", int, 128, label="Resolution",
        tooltip="Cells per side of the grid the surface is extracted on: more cells keep thinner parts and cost "
                "about four times the time per step (128³: seconds on a CPU; 256³: about four times that)",
        flag="--resolution", help="cells per axis of the final grid (default 128)",
        choices=tuple(Choice(n, f"{n}³", _resolution_tooltip(n)) for n in RESOLUTIONS), sidebar=True, redo=True),
    Setting(
        "threshold", float, None, label="Threshold",
        tooltip="Occupancy probability at the surface: lower grows the shape, higher shrinks it",
        flag="--threshold", help="occupancy probability of the surface, in (0, 1) (default: the weights' own, 0.2 "
                                 "for the originals)",
        lo=0.0, hi=1.0, strict=True, what="a probability", sidebar=True, redo=True,
        unset_name="use_weights_threshold", unset_label="Weights' threshold",
        unset_tooltip="Mesh at the threshold the weights were calibrated with (their model card's); off: the "
                      "Threshold below",
        fallback=0.2, ui_range=(0.01, 0.99)),
    Setting(
        "refine_steps", int, 0, label="Refine steps",
        tooltip="At most this many steps that move each vertex onto the network's surface (the paper used 30); a "
                "vertex stops once it is there, so 30 steps cost about as much as the extraction",
        flag="--refine", metavar="N", help="at most N vertex refinement steps (default 0; the paper used 30)",
        lo=0, hi=MAX_REFINE_STEPS, sidebar=True, redo=True),
    Setting(
        "refine_method", str, "project", label="Refine method",
        tooltip="How refinement moves the vertices: Newton steps onto the network's surface, or the paper's "
                "optimiser",
        flag="--refine-method",
        help="project: Newton steps onto the network's surface, each vertex stopping once there (default; about "
             "one extraction's time); optimise: the paper's optimiser on face samples and normals (one network pass "
             "over the mesh per step)",
        choices=(Choice("project", "Project", "Newton steps onto the network's surface, each vertex stopping once "
                                              "there (about one extraction's time)"),
                 Choice("optimise", "Optimise", "The paper's optimiser on face samples and normals (one network "
                                                "pass over the mesh per step)"))),
    Setting(
        "simplify_faces", int, 0, label="Simplify to", tooltip="Target face count (0: no simplification)",
        flag="--simplify", metavar="FACES", help="simplify to about this many faces (default: keep all)",
        lo=0, hi=MAX_SIMPLIFY_FACES, off_below=4, sidebar=True, redo=True),
    Setting(
        "normals", bool, False, label="Normals", tooltip="Vertex normals from the network's gradient",
        flag="--normals", help="write vertex normals from the network's gradient"),
    Setting(
        "seed", int, 0, label="Seed", tooltip="Seed for point subsampling and refinement",
        flag="--seed", help="seed for point subsampling and refinement", lo=0, hi=MAX_SEED),
    Setting(
        "colours", bool, True, label="Colours",
        tooltip="Give the result the source's colours (its colour attribute: a scan's vertex colours, a painted "
                "voxel object's; an image's from the view its outline matches), each vertex the colour of the "
                "source points nearest it; shown in Solid (Attribute colour) and Material Preview. Off: a plain "
                "mesh. Sources without colours are not affected",
        flag="--colours", aliases=("--colors",),
        help="vertex colours from the input's nearest points, when it has colours (a PLY's red/green/blue, XYZRGB "
             "or PTS columns, an .npz's 'colors'), or from an image (seen from the view its outline matches); "
             "written to .ply, .obj, .off and .glb (default on; --no-colours: a plain mesh)",
        sidebar=True, redo=True),
    Setting(
        "trim_unseen", float, 0.0, label="Trim unseen",
        tooltip="Point clouds: remove the surface the points do not show (the back of a scan taken from one side, "
                "the far side of a wall or a relief) where it lies farther than this from every point, as a "
                "fraction of the object's size; gaps narrower than twice this between scanned parts stay closed. "
                "0: keep the closed shape the network completes",
        flag="--trim-unseen", metavar="DISTANCE",
        help="point clouds: remove the surface farther than DISTANCE from every point (a fraction of the object's "
             "size, e.g. 0.03), leaving the part the scan shows open where it ends; gaps narrower than twice it stay "
             "closed (default 0: the closed shape the network completes)",
        lo=0.0, hi=0.5, what="a fraction of the object's size", sidebar=True, redo=True, points_only=True),
    Setting(
        "device", str, "auto", label="Device",
        tooltip="Where the network runs: a GPU is many times faster than the CPU for 256³ and refinement",
        flag="--device", help="auto (a CUDA GPU, else Apple's GPU, else the CPU), cpu, cuda or mps (default auto)",
        scope="request", sidebar=True,
        choices=(Choice("auto", "Auto", "A CUDA GPU when the backend has one, else Apple's GPU (MPS), else the CPU"),
                 Choice("cpu", "CPU"), Choice("cuda", "CUDA", "The backend's first CUDA GPU"),
                 Choice("mps", "Apple GPU", "Metal (MPS) on Apple silicon; ops it lacks run on the CPU")),
        pattern=r"auto|cpu|mps|cuda(:\d{1,3})?", pattern_text="auto, cpu, cuda, cuda:N or mps", cli_choices=False),
    Setting(
        "fit", str, "auto", label="Fit to points",
        tooltip="Point clouds: adapt the network's local features to every input point before meshing, so the "
                "surface passes through the scan and the network only completes what it does not show (a second "
                "or two on a CPU)",
        flag="--fit",
        help="point clouds: fit the network's local features to every input point before extracting (auto, the "
             "default: with local-feature weights; a second or two on a CPU)",
        scope="request", sidebar=True, redo=True, points_only=True,
        choices=(Choice("auto", "Auto", "Fit where it helps: local-feature weights (the bundled ones) on point "
                                        "clouds", ident="AUTO"),
                 Choice("on", "On", "Always fit (an error for weights or inputs that cannot be fitted)", ident="ON"),
                 Choice("off", "Off", "The network's prediction as it is (faster; the style of its training "
                                      "shapes)", ident="OFF"))),
    Setting(
        "ensemble", int, 0, label="Shifted encodings",
        tooltip="Point clouds: how many copies of the cloud, each moved by a quarter of a feature cell, the network "
                "reads; their mean has fewer creases between the network's cells, so round shapes come out round. "
                "Each copy costs one more encoding (and fit)",
        flag="--ensemble", metavar="N",
        help="point clouds: average the network over N copies of the cloud moved by a quarter of a feature cell "
             "(1, 2 or 4; default 0: automatic, 4 without a fit; with one, 2 below 3,000 points, else 1)",
        scope="request", sidebar=True, redo=True, points_only=True,
        choices=(Choice(0, "Auto", "As measured best for the time: 4 for the network alone; with a fit, 2 below "
                                   "3,000 points, else 1", ident="AUTO"),
                 Choice(1, "1", "One encoding: the network's field as it is (fastest)"),
                 Choice(2, "2", "Two copies: about twice the time"),
                 Choice(4, "4", "Four copies: about four times the time, the smoothest"))),
    Setting(
        "input_points", int, 0, label="Input points",
        tooltip="Point clouds: how many points the network is given. 0: automatic (a local-feature network takes "
                "every point up to 20,000; a global one the 300 it was trained on). More points keep more detail "
                "and cost a little more time",
        flag="--input-points", metavar="N",
        help="point clouds: points the encoder is given (default: a ConvONet model takes every point up to 20,000, "
             "an ONet model its trained count)",
        lo=0, hi=MAX_INPUT_POINTS, scope="request", sidebar=True, points_only=True),
    Setting(
        "batch_size", int, 100_000, label="Batch size", tooltip="Points per network call",
        flag="--batch-size", help="points per network call", lo=1, hi=2 ** 31 - 1, scope="process"),
)
assert {c.value for s in DECLARED for c in s.choices if s.name == "fit"} == set(FIT_MODES)
assert {c.value for s in DECLARED for c in s.choices if s.name == "refine_method"} == set(REFINE_METHODS)
assert {c.value for s in DECLARED for c in s.choices if s.name == "ensemble"} == {0, *ENSEMBLE_SIZES}

SETTINGS: dict[str, Setting] = {s.name: s for s in DECLARED}
EXTRACTION = tuple(s for s in DECLARED if s.scope == "extraction")  # messages.Settings, ExtractionSettings
REQUEST = tuple(s for s in DECLARED if s.scope == "request")  # messages.Reconstruct's
SENT = EXTRACTION + REQUEST  # what a request may carry, and api.reconstruct's keywords
SIDEBAR = tuple(s for s in DECLARED if s.sidebar)
REDO = tuple(s for s in DECLARED if s.redo)
