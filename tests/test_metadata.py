"""Metadata through the upscale (issue 20): EXIF (camera, date kept, orientation 1, GPS gone unless
kept), ICC, XMP and PNG text, read back by Pillow from real results of the API and the CLI, for
each output format as it allows. The test images are made here."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from esrgan.io.imageio import decode, encode
from esrgan.io.metadata import output_xmp
from esrgan.models import registry
from tests.conftest import ROOT, crop_of

FAST = registry.ANIMEVIDEO_V3.name
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE, MODEL, TAKEN = 0x010F, 0x0110, 0x0132
ORIENTATION, EXIF_IFD, GPS_IFD, TAKEN_ORIGINAL = 0x0112, 0x8769, 0x8825, 0x9003
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/" '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/" tiff:Orientation="6" exif:GPSLatitude="52,30.0N" '
       b'exif:GPSLongitude="13,24.0E"><dc:creator>Ada</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>')


def camera_exif() -> Image.Exif:
    """A phone's EXIF: make, model, dates, orientation 6 (turned), and a GPS position."""
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[TAKEN], exif[ORIENTATION] = "Canon", "EOS 5D", "2020:01:02 03:04:05", 6
    exif.get_ifd(EXIF_IFD)[TAKEN_ORIGINAL] = "2020:01:02 03:04:05"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 30.0, 0.0), "E", (13.0, 24.0, 0.0)
    return exif


def photo(fmt: str) -> bytes:
    """A 17x11 crop stored turned (orientation 6), with EXIF, ICC, XMP, and in PNG two text chunks."""
    image = crop_of("coffee.png", (90, 90, 107, 101))
    buffer = io.BytesIO()
    options = {"exif": camera_exif().tobytes(), "icc_profile": ICC}
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("Title", "Cup")
        info.add_itxt("Author", "Zoë 名前")
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        image.save(buffer, "PNG", pnginfo=info, **options)
    else:
        image.save(buffer, "JPEG", quality=95, xmp=XMP, **options)
    return buffer.getvalue()


def check_result(data: bytes, fmt: str, keep_gps: bool, size: tuple[int, int], texts: bool) -> None:
    with Image.open(io.BytesIO(data)) as result:
        result.load()
        assert result.size == size  # upright: 11 wide, 17 high, times the scale
        exif = result.getexif()
        assert (exif[MAKE], exif[MODEL], exif[TAKEN], exif[ORIENTATION]) == ("Canon", "EOS 5D", "2020:01:02 03:04:05", 1)
        assert exif.get_ifd(EXIF_IFD)[TAKEN_ORIGINAL] == "2020:01:02 03:04:05"
        gps = exif.get_ifd(GPS_IFD)
        assert (gps.get(2) == (52.0, 30.0, 0.0)) if keep_gps else (GPS_IFD not in exif and not gps)
        assert result.info["icc_profile"] == ICC
        xmp = result.info["xmp"]
        xmp = xmp.encode() if isinstance(xmp, str) else xmp
        assert b"<dc:creator>Ada</dc:creator>" in xmp and b'tiff:Orientation="1"' in xmp
        assert (b"GPSLatitude" in xmp) == keep_gps
        if texts:
            assert result.text["Title"] == "Cup" and result.text["Author"] == "Zoë 名前"


@pytest.mark.parametrize(("source", "fmt", "keep_gps"), [
    ("png", "png", False), ("jpg", "jpg", True), ("jpg", "webp", False), ("png", "jpg", False),
])
def test_metadata_survives_the_api(make_app, source, fmt, keep_gps):
    client = make_app(PRECISION="fp32").test_client()
    form = {"scale": "2", "model": FAST, "format": fmt, "file": (io.BytesIO(photo(source)), f"cup.{source}")}
    if keep_gps:
        form["keep_gps"] = "true"
    answer = client.post("/upscale", data=form, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    served = client.get(answer.get_json()["output_path"])
    check_result(served.get_data(), fmt, keep_gps, (22, 34), texts=(source, fmt) == ("png", "png"))
    served.close()


@pytest.mark.parametrize("keep_gps", [False, True])
def test_metadata_survives_the_cli(tmp_path, weights_dir, keep_gps):
    source = tmp_path / "cup.png"
    source.write_bytes(photo("png"))
    out = tmp_path / "cup_big.png"
    env = {"REMASTER_WEIGHTS_FOLDER": str(weights_dir), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "esrgan", "upscale", str(source), "--model", FAST, "--fp32",
                           "--height", "51", "-o", str(out), *(["--keep-gps"] if keep_gps else [])],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_result(out.read_bytes(), "png", keep_gps, (33, 51), texts=True)


def test_a_16_bit_png_keeps_its_metadata_and_its_depth():
    image = decode(photo("png"))
    deep = encode(image.__class__(image.pixels, 16, "png", image.icc_profile, image.metadata), "png")
    check_result(encode(decode(deep), "png"), "png", False, (11, 17), texts=True)
    assert decode(deep).bit_depth == 16


def test_damaged_metadata_never_costs_the_upscale():
    data = photo("jpg").replace(b"Canon", b"\xff\xff\xff\xff\xff")
    assert decode(data).width == 11
    assert output_xmp(b'<a exif:GPSAltitude="1" tiff:Orientation="8"/>', keep_gps=False) == b'<a tiff:Orientation="1"/>'


def test_a_tiff_layout_is_no_metadata():
    buffer = io.BytesIO()
    crop_of("coffee.png", (0, 0, 9, 7)).save(buffer, "TIFF", compression="tiff_lzw")
    image = decode(buffer.getvalue())
    assert image.metadata is None
    with Image.open(io.BytesIO(encode(image, "png"))) as result:
        assert not result.getexif() and not result.text
