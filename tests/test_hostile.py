"""Hostile input against the real app: every bad request gets a clean 4xx (or 507), nothing is left
behind, and the server keeps answering. Server-side behaviour (body limits, idle clients, a full
disk) is tested against a real waitress server on loopback."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from esrgan.errors import FormatSizeError, InvalidImageError
from esrgan.io.imageio import check_encodable, decode
from web.http.serving import body_cap

ROOT = Path(__file__).resolve().parent.parent
FAST_MODEL = "realesr-animevideov3"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: its size on disk is about its pixel bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return png(Image.fromarray(pixels))


def upload(client, data: bytes, name="photo.png", url="/upscale", **fields):
    form = {"scale": "2", "model": FAST_MODEL, **fields, "file": (io.BytesIO(data), name)}
    return client.post(url, data=form, content_type="multipart/form-data")


def stored(app) -> list[str]:
    return sorted(p.name for p in app.extensions["remaster"].files.root.iterdir() if p.name != ".gitkeep")


def assert_clean_refusal(app, client, response, status: int, message: str) -> None:
    assert response.status_code == status, response.get_data()
    assert response.is_json and message in response.get_json()["error"], response.get_json()
    assert stored(app) == []
    assert client.get("/healthz").status_code == 200


# --- images the decoder must refuse --------------------------------------------------------------

def tiff_with_next_ifd(offset: int) -> bytes:
    """A valid 8x8 TIFF whose next-IFD pointer is rewritten to ``offset``."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "TIFF")
    data = buffer.getvalue()
    assert data[:2] == b"II"
    ifd = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[ifd : ifd + 2])[0]
    pointer = ifd + 2 + 12 * entries
    return data[:pointer] + struct.pack("<I", offset) + data[pointer + 4 :]


def float_tiff(value: float) -> bytes:
    pixels = np.full((6, 6), 0.5, np.float32)
    pixels[2, 3] = value
    buffer = io.BytesIO()
    Image.fromarray(pixels, "F").save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("where", ["past the end", "into the header", "far away"])
def test_tiff_whose_ifd_chain_points_nowhere_is_400(app, client, where):
    size = len(tiff_with_next_ifd(0))
    data = tiff_with_next_ifd({"past the end": size + 1000, "into the header": 4, "far away": 0xFFFFFFF0}[where])
    with pytest.raises(InvalidImageError, match="damaged"):
        decode(data)
    assert_clean_refusal(app, client, upload(client, data, name="scan.tiff"), 400, "damaged")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_float_tiff_with_non_finite_pixels_is_400(app, client, value):
    with pytest.raises(InvalidImageError, match="not numbers"):
        decode(float_tiff(value))
    assert decode(float_tiff(0.25)).pixels.shape == (6, 6, 1)  # the finite one is fine
    assert_clean_refusal(app, client, upload(client, float_tiff(value), name="hdr.tiff"), 400, "NaN")


def test_header_only_and_polyglot_files(app, client):
    header_only = png(Image.new("RGB", (16, 16)))[:33] + b"\0\0\0\0IEND\xaeB`\x82"
    assert_clean_refusal(app, client, upload(client, header_only), 400, "damaged")
    gif_html = b"GIF89a/*<html><script>alert(1)</script></html>*/"
    assert_clean_refusal(app, client, upload(client, gif_html, name="x.png"), 415, "not")


# --- results the format cannot hold: refused before any work ------------------------------------

def test_check_encodable_names_the_limit():
    check_encodable("webp", 16383, 16383)
    check_encodable("jpg", 65500, 1)
    check_encodable("png", 10**6, 1)
    with pytest.raises(FormatSizeError, match="16383"):
        check_encodable("webp", 16384, 8)
    with pytest.raises(FormatSizeError, match="65500"):
        check_encodable("jpg", 1, 65501)


@pytest.mark.parametrize(("size", "fmt", "limit"), [((2048, 1), "webp", "16383"), ((8192, 1), "jpg", "65500")])
def test_result_too_large_for_its_format_is_refused_before_any_work(app, client, size, fmt, limit, engine_hooks):
    ran = []  # every network step of every tiled run in this process
    engine_hooks(after_step=lambda done, total: ran.append(done))
    data = png(Image.new("RGB", size, "gray"))
    response = upload(client, data, url="/api/jobs", scale="8", format=fmt)
    assert_clean_refusal(app, client, response, 413, limit)
    health = client.get("/healthz").get_json()
    assert ran == [] and health["running"] == health["queued"] == 0, health  # no job, no inference
    estimate = client.get(f"/api/estimate?width={size[0]}&height={size[1]}&scale=8&format={fmt}"
                          f"&model={FAST_MODEL}").get_json()
    assert any(limit in error for error in estimate["errors"])


def test_work_limit_refuses_what_would_cost_too_much(make_app):
    app = make_app(MAX_WORK_PIXELS=10_000)
    client = app.test_client()
    response = upload(client, png(Image.new("RGB", (1, 20_000), "gray")), url="/api/jobs")
    assert_clean_refusal(app, client, response, 413, "the limit is 0.01 M")
    assert "thin" in response.get_json()["error"]
    estimate = client.get(f"/api/estimate?width=1&height=20000&scale=2&model={FAST_MODEL}").get_json()
    assert any("the limit is" in error for error in estimate["errors"])
    assert estimate["work_pixels"] >= 20_000 and estimate["seconds"] > 0


# --- jobs.zip, 405, odd requests ----------------------------------------------------------------

def test_jobs_zip_dedupes_caps_and_404s_for_expired(app, client):
    done = upload(client, png(Image.new("RGB", (8, 8), "red")))
    assert done.status_code == 200, done.get_json()
    job_id = done.get_json()["job_id"]
    repeated = client.get(f"/api/jobs.zip?ids={','.join([job_id] * 100)}")
    assert repeated.status_code == 200
    assert len(zipfile.ZipFile(io.BytesIO(repeated.data)).namelist()) == 1
    repeated.close()
    many = ",".join(f"{i:032x}" for i in range(101))
    capped = client.get(f"/api/jobs.zip?ids={many}")
    assert capped.status_code == 400 and "at most 100" in capped.get_json()["error"]
    files = app.extensions["remaster"].files
    files.sweep(now=time.time() + files.ttl_seconds + 1)  # the job expires; the runner may still know it
    expired = client.get(f"/api/jobs.zip?ids={job_id}")
    assert expired.status_code == 404 and "expire" in expired.get_json()["error"]
    assert client.get("/api/jobs.zip?ids=../../app.py,..%2fx").status_code == 404


@pytest.mark.parametrize(("method", "url", "allowed"), [
    ("POST", "/healthz", {"GET", "HEAD"}), ("PUT", "/upscale", {"POST"}), ("GET", "/api/jobs", {"POST"}),
])
def test_405_says_which_methods_are_allowed(client, method, url, allowed):
    response = client.open(url, method=method)
    assert response.status_code == 405 and response.is_json
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_odd_fields_and_names(app, client):
    huge_model = upload(client, png(Image.new("RGB", (4, 4))), url="/api/jobs", model="x" * 100_000)
    assert_clean_refusal(app, client, huge_model, 400, "no model named")
    assert len(huge_model.get_json()["error"]) < 200  # a huge value is not echoed back whole
    for path in ("/api/jobs/..%2f..%2fetc%2fpasswd", "/api/jobs/" + "f" * 32, "/uploads/%2e%2e%2fweb%2fapi.py",
                 "/uploads/" + "0" * 32 + "_in.png%00.py", "/api/jobs/" + "0" * 32 + "/result"):
        response = client.get(path)
        assert response.status_code == 404 and response.is_json, path
    assert client.post("/api/jobs", data=b"--x\r\nnot a part", content_type="multipart/form-data; boundary=x"
                       ).status_code == 400
    unicode_name = upload(client, png(Image.new("RGB", (6, 6), "blue")), name="фото 日本 ../../x.png")
    assert unicode_name.status_code == 200, unicode_name.get_json()
    download = client.get(unicode_name.get_json()["download_path"])
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    download.close()
    assert all("/" not in name and ".." not in name for name in stored(app))


# --- a real waitress server on loopback ---------------------------------------------------------

def healthz(port: int, timeout: float) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_declared_huge_body_is_refused_before_it_is_read(serve):
    # Waitress holds every body to the largest upload limit (an image's or a video's: one limit per
    # server); beyond both, it refuses from Content-Length alone.
    port = urlsplit(serve(MAX_CONTENT_LENGTH=1 * 2**20, MAX_VIDEO_BYTES=1 * 2**20)).port
    # The rest of the 100 MB is never sent: any answer at all is one given from the headers alone (a
    # server that waited for the body would answer nothing; the timeout only ends that wait).
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(b"POST /upscale HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 104857600\r\n\r\n" + b"\0" * 4096)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)  # a socket.timeout here: the server waits for the other 100 MB
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert healthz(port, timeout=5) == 200


def test_a_body_a_little_over_the_limit_gets_our_json_413_past_the_margin_waitress_refuses(serve):
    limit = 1 * 2**20
    port = urlsplit(serve(MAX_CONTENT_LENGTH=limit)).port
    body, content_type = multipart(b"\0" * (limit + 200 * 1024), scale="2")
    assert limit < len(body) <= body_cap(limit)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/api/jobs", body, {"Content-Type": content_type})
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        assert "larger than 1 MB" in json.loads(response.read())["error"]
    finally:
        connection.close()
    assert healthz(port, timeout=5) == 200


def test_many_idle_half_sent_connections_do_not_starve_healthz(serve):
    port = urlsplit(serve(WSGI_CHANNEL_TIMEOUT=3)).port
    idle = []
    try:
        for _ in range(150):  # more than waitress's default connection_limit (100)
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /upscale HTTP/1.1\r\nHost: localhost\r\nContent-Le")
            idle.append(sock)
        assert healthz(port, timeout=5) == 200
        # And the idle ones do not stay: each is closed by the server after the channel timeout.
        deadline = time.monotonic() + 15
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


# --- a full disk: a real, tiny tmpfs in a private mount namespace --------------------------------

SERVER = """
import sys
from waitress import create_server
from web import create_app
from web.http.serving import waitress_options
app = create_app({"UPLOAD_FOLDER": sys.argv[1], "WEIGHTS_FOLDER": sys.argv[2], "PRELOAD_MODELS": False,
                  "DEVICE": "cpu", "PRECISION": "fp32"})
server = create_server(app, host="127.0.0.1", port=0, **waitress_options(app.config))
print(server.effective_port, flush=True)
server.run()
"""
TMPFS_BYTES = 1024 * 1024


def multipart(data: bytes, **fields: str) -> tuple[bytes, str]:
    boundary = "hostile-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="n.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_upscale(port: int, data: bytes) -> tuple[int, dict]:
    body, content_type = multipart(data, scale="2", model=FAST_MODEL)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/upscale", body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def leave_free(folder: Path, free: int) -> None:
    """Fill the filesystem of ``folder`` with a dot file (the sweeper skips those) but ``free`` bytes."""
    filler = folder / ".filler"
    filler.unlink(missing_ok=True)
    capacity = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, capacity - free))


@pytest.fixture
def tiny_disk_server(tmp_path, upscaler, weights_dir):
    """A real server whose upload folder is a 1 MiB tmpfs, seen from here through /proc/<pid>/root."""
    upscaler.load(FAST_MODEL)  # convert the weights once, outside the server's clock
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    folder = tmp_path / "uploads"
    folder.mkdir()
    command = ["unshare", "--map-root-user", "--mount", "sh", "-c",
               f'mount -t tmpfs -o size={TMPFS_BYTES} tmpfs "$0" && exec "$1" -c "$2" "$0" "$3"',
               str(folder), sys.executable, SERVER, str(weights_dir)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        if not line.strip().isdigit():
            pytest.skip("cannot mount a private tmpfs here (user namespaces disabled?)")
        yield int(line), Path(f"/proc/{process.pid}/root") / folder.relative_to("/")
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()


def test_disk_full_is_507_leaves_nothing_partial_and_the_server_recovers(tiny_disk_server):
    port, folder = tiny_disk_server
    assert os.statvfs(folder).f_blocks * os.statvfs(folder).f_frsize <= 2 * TMPFS_BYTES  # really the tmpfs
    image = noise_png(160, 160)  # ~77 kB; its 320x320 result some 150 kB more
    leave_free(folder, 16 * 1024)  # the input does not fit
    status, body = post_upscale(port, image)
    assert status == 507 and "space" in body["error"], body
    assert sorted(p.name for p in folder.iterdir()) == [".filler"]
    assert healthz(port, timeout=5) == 200

    leave_free(folder, len(image) + 48 * 1024)  # the input and the job record fit, the result does not
    status, body = post_upscale(port, image)
    assert status == 507 and "space" in body["error"], body
    left = [p.name for p in folder.iterdir()]
    assert [n for n in left if "_in." in n], left  # so it was the result that did not fit
    assert not [n for n in left if "_out." in n or n.endswith(".part")], left
    assert healthz(port, timeout=5) == 200

    (folder / ".filler").unlink()
    status, body = post_upscale(port, image)
    assert status == 200 and body["output_width"] == 320, body
