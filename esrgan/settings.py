"""The engine's settings: one frozen dataclass, built once by the caller and passed into the engine.

The engine reads none of them from the environment. Its callers build them: the CLI from its
defaults, then the environment, then its flags (`esrgan.cli.main`); the web app and its workers from the
Flask config, which has read the environment already (`web.service.engine_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_WEIGHTS_FOLDER = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MAX_OUTPUT_PIXELS = 16384 * 16384  # the CLI's documented limit; the web app sets its own


@dataclass(frozen=True)
class Settings:
    """How to run the engine.

    Attributes:
        weights_folder: User checkpoints and the converted cache (``weights/``).
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"vulkan[:N]"`` (`esrgan.runtime.devices`).
        precision: ``"auto"`` (measured: see `esrgan.runtime.choose`), ``"fp32"``, ``"fp16"`` (CUDA), ``"bf16"``.
        backend: ``"auto"``/``"torch-cl"`` (channels-last), ``"torch"`` (NCHW, the official path) or
            ``"compiled"`` (`esrgan.runtime.compiled`).
        tile: Tile side in input pixels; None picks by device, 0 runs the whole image.
        tile_pad: Context pixels around each tile (32: tiled results within 50 dB of the whole image).
        pre_pad: Reflect padding around the image; 0, the official semantics, by default.
        max_output_pixels: Refuse results larger than this.
        se_sync: Tiles of models with squeeze-excitation blocks (Real-CUGAN): ``"exact"`` (the whole
            image's means; tiled output equals the whole image) or ``"tile"`` (each tile its own
            means: faster, drifts; see `esrgan.tiling.plan.TileOptions.se_sync`).
    """

    weights_folder: Path = DEFAULT_WEIGHTS_FOLDER
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    tile: int | None = None
    tile_pad: int = 32
    pre_pad: int = 0
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    se_sync: str = "exact"

    def updated(self, values: Mapping[str, object]) -> Settings:
        """These settings with ``values`` (field name -> value, text or typed) laid over them; None
        and "" leave a field as it is, except ``tile``, where "" means "chosen by device".

        Raises:
            TypeError: A name that is no setting.
            ValueError: A value that does not convert (e.g. a tile of "big").
        """
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"no such engine setting: {', '.join(sorted(unknown))}")
        changes: dict[str, object] = {}
        for name, value in values.items():
            if name == "tile" and value == "":
                changes[name] = None
            elif value is not None and value != "":
                changes[name] = _convert(name, value)
        return replace(self, **changes)


def _convert(name: str, value: object) -> object:
    if name == "weights_folder":
        return Path(str(value))
    if name in ("tile", "tile_pad", "pre_pad", "max_output_pixels"):
        return int(str(value))
    return str(value)
