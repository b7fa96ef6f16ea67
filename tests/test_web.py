"""The web app through Flask's test client: the page, the synchronous contract, the job API, files."""

from __future__ import annotations

import io
import os
import re
import stat
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import crop_of, get, job_finished, png_bytes
from web.jobs.storage import FileStore


def upload(client, data: bytes, name="photo.png", url="/upscale", **fields):
    form = {"scale": "2", "anime": "false", **fields, "file": (io.BytesIO(data), name)}
    return client.post(url, data=form, content_type="multipart/form-data")


def coffee(size=(24, 20)) -> bytes:
    return png_bytes(crop_of("coffee.png", (90, 90, 90 + size[0], 90 + size[1])))


def test_page_is_self_contained_and_has_the_controls(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for control in ('type="file"', 'name="scale" value="2"', 'value="8"', 'name="anime"', 'name="format"'):
        assert control in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, everything served locally
    assert get(client, "/static/app.js").status_code == 200


def test_synchronous_upscale_keeps_the_seed_contract(client):
    response = upload(client, coffee(), name="My Holiday.png", scale="2")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["original_width"], body["original_height"]) == (24, 20)
    assert (body["output_width"], body["output_height"]) == (48, 40)
    assert body["model"] == "realesrgan-x4plus" and body["resample"] == "Lanczos 4x -> 2x"
    output = get(client, body["output_path"])
    assert output.status_code == 200 and output.mimetype == "image/png"
    assert output.headers["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(output.data)).size == (48, 40)
    download = get(client, body["download_path"])
    assert 'attachment; filename=My_Holiday_x2.png' in download.headers["Content-Disposition"]
    # The result says the file its download saves: name, format and bytes, as served.
    assert (body["download_name"], body["output_format"]) == ("My_Holiday_x2.png", "png")
    assert body["output_bytes"] == len(download.data) == int(download.headers["Content-Length"])
    original = get(client, body["original_path"])
    assert original.data == coffee()


@pytest.mark.parametrize(("fmt", "mime"), [("jpg", "image/jpeg"), ("webp", "image/webp")])
def test_output_format_and_quality(client, fmt, mime):
    body = upload(client, coffee(), format=fmt, quality="80", model="realesr-animevideov3").get_json()
    served = get(client, body["output_path"])
    assert served.mimetype == mime and body["output_path"].endswith(f".{fmt}")
    assert body["download_name"] == f"photo_x2.{fmt}" and body["output_format"] == fmt
    assert body["output_bytes"] == len(served.data)


def test_anime_toggle_picks_the_anime_model(client):
    body = upload(client, coffee(), anime="true", scale="4").get_json()
    assert body["model"] == "realesrgan-x4plus-anime" and body["resample"] is None


def test_job_api_submit_poll_result(client):
    response = upload(client, coffee(), url="/api/jobs", scale="4")
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/api/jobs/{job['id']}")
    finished = job_finished(client, job["id"])
    assert finished["status"] == "done"
    assert finished["progress"]["done"] == finished["progress"]["total"] >= 1
    result = get(client, f"/api/jobs/{job['id']}/result")
    assert result.status_code == 200 and Image.open(io.BytesIO(result.data)).size == (96, 80)


def test_cancel_a_running_and_a_queued_job_leaves_no_output(make_app):
    app = make_app(TILE=32, WORKERS=1, PREVIEW_MIN_SECONDS=1e9)  # no preview: on a slow machine it comes first
    client = app.test_client()
    big = png_bytes(crop_of("astronaut.png", (0, 0, 160, 160)))
    running = upload(client, big, url="/api/jobs", scale="4").get_json()
    queued = upload(client, coffee(), url="/api/jobs").get_json()
    deadline = time.time() + 60
    while (state := client.get(f"/api/jobs/{running['id']}").get_json())["progress"]["done"] < 1:
        assert time.time() < deadline, {key: state.get(key) for key in ("status", "stage", "progress")}
        time.sleep(0.05)
    assert client.delete(f"/api/jobs/{queued['id']}").get_json()["status"] == "cancelled"
    client.delete(f"/api/jobs/{running['id']}")
    stopped = job_finished(client, running["id"])
    assert stopped["status"] == "cancelled" and stopped["progress"]["done"] < stopped["progress"]["total"]
    assert client.get(f"/api/jobs/{running['id']}/result").status_code == 409
    folder = app.extensions["remaster"].files.root
    assert not list(folder.glob("*_out.*")) and not list(folder.glob(".*part"))


def test_full_queue_answers_503_with_retry_after_and_keeps_nothing(make_app):
    app = make_app(TILE=32, WORKERS=1, MAX_QUEUE=1)
    client = app.test_client()
    big = png_bytes(crop_of("astronaut.png", (0, 0, 128, 128)))
    first = upload(client, big, url="/api/jobs", scale="4").get_json()
    upload(client, coffee(), url="/api/jobs")  # waits in the queue (or runs, if the first is quick)
    refused = [upload(client, coffee(), url="/api/jobs") for _ in range(2)]
    assert any(r.status_code == 503 for r in refused)
    busy = next(r for r in refused if r.status_code == 503)
    assert busy.headers["Retry-After"].isdigit() and "queue is full" in busy.get_json()["error"]
    files = app.extensions["remaster"].files.root
    assert len(list(files.glob("*_in.*"))) == 2
    client.delete(f"/api/jobs/{first['id']}")


def test_batch_zip_holds_every_result(client):
    ids = [upload(client, coffee(), url="/api/jobs", name=f"shot{i}.png",
                  model="realesr-animevideov3").get_json()["id"] for i in range(2)]
    for job_id in ids:
        assert job_finished(client, job_id)["status"] == "done"
    response = get(client, f"/api/jobs.zip?ids={','.join(ids)}")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(response.data)).namelist()
    assert sorted(names) == ["shot0_x2.png", "shot1_x2.png"]


def test_estimate_and_models(client):
    estimate = client.get("/api/estimate?width=100&height=50&scale=8&anime=false").get_json()
    assert (estimate["output_width"], estimate["output_height"]) == (800, 400)
    assert estimate["resample"] == "Lanczos 4x -> 8x" and estimate["seconds"] > 0
    models = client.get("/api/models").get_json()
    assert {m["name"] for m in models["models"]} >= {"realesrgan-x4plus", "realesr-animevideov3"}
    # Every (scale, content, noise) route is listed, each with its model or the reason it has none.
    routes = {(r["scale"], r["anime"], r["noise"]): r for r in models["routes"]}
    assert routes[(4, False, "none")]["model"] == "realesrgan-x4plus"
    assert routes[(4, False, "high")]["model"] == "waifu2x-cunet-x1-noise3"  # photos: the measured route
    assert routes[(4, True, "medium")]["model"] is None and routes[(4, True, "medium")]["error"]


def test_files_expire_and_then_are_gone(app, client):
    body = upload(client, coffee(), model="realesr-animevideov3").get_json()
    files: FileStore = app.extensions["remaster"].files
    assert files.sweep(now=time.time() + files.ttl_seconds + 1) >= 3  # input, output, record
    assert get(client, body["output_path"]).status_code == 404
    assert not [p for p in files.root.iterdir() if not p.name.startswith(".")]


# --- bad input: a clear 4xx, nothing left behind, the server keeps answering -------------------

def gif_animation() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def header_only_png(width: int, height: int) -> bytes:
    from tests.test_imageio import png_header_only

    return png_header_only(width, height)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


NEITHER = r"not an image or a video we can read: images may be JPEG.*, videos and animations MP4"  # both kinds
BAD_UPLOADS = {
    "zero-byte": (b"", {}, 400, "empty"),
    "truncated png": (coffee((64, 64))[:300], {}, 400, "damaged|truncated"),
    "truncated jpeg": (jpeg(crop_of("coffee.png", (0, 0, 64, 64)))[:400], {}, 400, "damaged|truncated"),
    "text as png": (b"just some words\n", {}, 415, NEITHER),
    "html as png": (b"<html><script>alert(1)</script></html>", {}, 415, "not an image"),
    "svg as png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"></svg>', {}, 415, "not an image"),
    "50000x50000 png": (header_only_png(50000, 50000), {}, 413, "50000x50000"),
    "animated gif": (gif_animation(), {}, 415, "/api/jobs"),  # a job of its own (tests/test_video_web.py)
    "scale 9": (None, {"scale": "9"}, 400, "from 1 to 8"),
    "scale 0.5": (None, {"scale": "0.5"}, 400, "from 1 to 8"),
    "scale abc": (None, {"scale": "abc"}, 400, "from 1 to 8"),
    "noise no model has": (None, {"noise": "medium", "anime": "true", "scale": "4"}, 400, "noise"),
    "noise word": (None, {"noise": "loud"}, 400, "noise"),
    "anime maybe": (None, {"anime": "maybe"}, 400, "anime"),
    "unknown model": (None, {"model": "nope"}, 400, "nope"),
    "model by path": (None, {"model": "/etc/hostname.pth"}, 400, "no model named"),
    "format gif": (None, {"format": "gif"}, 400, "format"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_a_clear_4xx_and_leave_nothing(app, client, case):
    data, fields, status, message = BAD_UPLOADS[case]
    response = upload(client, coffee() if data is None else data, **fields)
    assert response.status_code == status, response.get_json()
    assert re.search(message, response.get_json()["error"])
    assert not [p for p in app.extensions["remaster"].files.root.iterdir() if not p.name.startswith(".")]
    assert client.get("/healthz").status_code == 200


def test_missing_file_empty_name_and_missing_scale(client):
    no_file = client.post("/upscale", data={"scale": "2"}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and "file" in no_file.get_json()["error"]
    nameless = upload(client, coffee(), name="")
    assert nameless.status_code == 400
    missing_scale = client.post("/upscale", data={"file": (io.BytesIO(coffee()), "a.png")},
                                content_type="multipart/form-data")
    assert missing_scale.status_code == 400 and "from 1 to 8" in missing_scale.get_json()["error"]


def test_body_over_the_limit_is_413(make_app):
    client = make_app(MAX_CONTENT_LENGTH=10_000).test_client()
    response = upload(client, coffee((200, 200)) + b"\0" * 20_000)
    assert response.status_code == 413 and "larger than" in response.get_json()["error"]


@pytest.mark.parametrize("path", ["/uploads/../app.py", "/uploads/..%2fapp.py", "/uploads/%2e%2e%2fapp.py",
                                  "/uploads/app.py", "/uploads/" + "0" * 32 + "_out.png", "/uploads/.gitkeep"])
def test_uploads_serves_only_files_the_app_stored(client, path):
    response = get(client, path)
    assert response.status_code == 404
    assert b"import" not in response.data


@pytest.mark.parametrize(
    ("name", "image", "scale", "size"),
    [
        ("1x1", Image.new("RGB", (1, 1), "red"), "2", (2, 2)),
        ("1x10000", Image.new("RGB", (1, 10000), "gray"), "2", (2, 20000)),
        ("cmyk", crop_of("coffee.png", (0, 0, 16, 16)).convert("CMYK"), "2", (32, 32)),
        ("rgba", crop_of("coffee.png", (0, 0, 16, 16), "RGBA"), "2", (32, 32)),
    ],
)
def test_odd_but_valid_images_work(client, name, image, scale, size):
    data = jpeg(image) if image.mode == "CMYK" else png_bytes(image)
    response = upload(client, data, scale=scale, model="realesr-animevideov3")
    assert response.status_code == 200, response.get_json()
    served = Image.open(io.BytesIO(get(client, response.get_json()["output_path"]).data))
    assert served.size == size
    if name == "rgba":
        assert served.mode == "RGBA"


def test_16bit_png_comes_back_16bit(client):
    array = (np.asarray(crop_of("chelsea_head.png", (60, 60, 76, 72)), np.uint16) * 257)[..., ::-1]
    data = cv2.imencode(".png", np.ascontiguousarray(array))[1].tobytes()
    body = upload(client, data, model="realesr-animevideov3").get_json()
    out = cv2.imdecode(np.frombuffer(get(client, body["output_path"]).data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and out.shape == (24, 32, 3)


def test_any_scale_and_a_noise_level_through_the_api(client):
    """The API takes a float scale (model at its native scale, then a resample) and, for anime, a
    noise level that picks the Real-CUGAN model for it."""
    odd = upload(client, coffee((24, 20)), scale="2.5", model="realesr-animevideov3")
    assert odd.status_code == 200, odd.get_json()
    body = odd.get_json()
    assert (body["output_width"], body["output_height"]) == (60, 50)
    assert body["resample"] == "Lanczos 4x -> 2.5x"  # the fast model is 4x only
    with Image.open(io.BytesIO(get(client, body["output_path"]).data)) as image:
        assert image.size == (60, 50)
    clean = upload(client, coffee((40, 36)), scale="2", anime="true", noise="high").get_json()
    assert clean["model"].startswith("realcugan") and "denoise3x" in clean["model"], clean
    assert (clean["output_width"], clean["output_height"]) == (80, 72) and clean["resample"] is None


def test_stored_uploads_and_results_take_the_umask_of_the_server(make_app):
    """The job files are made as any new file of the server's process is: 0666 less its umask
    (0640 under 027), not the private 0600 of a temporary file."""
    app = make_app()
    previous = os.umask(0o027)
    try:
        response = upload(app.test_client(), coffee(), scale="2")
    finally:
        os.umask(previous)
    assert response.status_code == 200, response.get_json()
    stored = [p for p in app.extensions["remaster"].files.root.iterdir() if not p.name.startswith(".")]
    assert stored and {stat.S_IMODE(p.stat().st_mode) for p in stored if p.is_file()} == {0o640}
