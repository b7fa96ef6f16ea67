"""The job lifecycle as a user meets it: progress that moves, cancel that frees the CPU at once,
and jobs that survive a server killed mid-job (a real ``python app.py`` process, killed with SIGKILL)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
from PIL import Image

from tests.conftest import ROOT, crop_of, png_bytes
from web.lifecycle import Job, persist
from web.storage import FileStore, new_id

FINISHED = ("done", "failed", "cancelled")


def submit(client, data: bytes, **fields):
    form = {"scale": "4", "anime": "false", **fields, "file": (io.BytesIO(data), "photo.png")}
    return client.post("/api/jobs", data=form, content_type="multipart/form-data")


def test_a_one_tile_job_reports_progress_many_times(client):
    photo = png_bytes(crop_of("Set5/bird.png", (100, 100, 164, 164)))  # one tile
    job_id = submit(client, photo, model="realesrgan-x4plus").get_json()["id"]
    seen, stages = set(), []
    deadline = time.time() + 300
    while True:
        state = client.get(f"/api/jobs/{job_id}").get_json()
        if state["stage"] not in stages:
            stages.append(state["stage"])
        if state["stage"] == "upscaling":
            seen.add(state["progress"]["done"])
            assert 0 <= state["progress"]["fraction"] <= 1
        if state["status"] in FINISHED:
            break
        assert time.time() < deadline
        time.sleep(0.01)
    assert state["status"] == "done", state
    assert state["result"]["provenance"]["tiles"] == 1
    assert len(seen) >= 4, seen  # the bar moves inside the one tile
    assert state["progress"]["fraction"] == 1 and state["eta_seconds"] is None
    assert state["elapsed_seconds"] > 0
    assert stages.index("upscaling") > stages.index("loading")


def test_cancel_frees_the_server_within_a_second(client):
    photo = png_bytes(crop_of("Set5/bird.png", (60, 60, 140, 140)))  # 80x80, one tile of x4plus
    job_id = submit(client, photo, model="realesrgan-x4plus").get_json()["id"]
    deadline = time.time() + 300
    while True:
        state = client.get(f"/api/jobs/{job_id}").get_json()
        if state["stage"] == "upscaling" and state["progress"]["done"] >= 2:
            break
        assert state["status"] not in FINISHED and time.time() < deadline, state
        time.sleep(0.02)
    asked = time.monotonic()
    answer = client.delete(f"/api/jobs/{job_id}")
    assert answer.status_code == 200
    assert answer.get_json()["stage"] in ("cancelling", "cancelled")
    assert answer.get_json()["cancel_requested"] is True
    while client.get("/healthz").get_json()["running"]:
        assert time.monotonic() - asked < 5, "the inference went on after the cancel"
        time.sleep(0.01)
    idle_after = time.monotonic() - asked
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert state["status"] == "cancelled" and "result" not in state
    assert idle_after < 1.0, f"the server was busy {idle_after:.2f} s after the cancel"
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409


def test_adoption_reruns_what_it_can_and_explains_what_it_cannot(make_app, tmp_path):
    """Records an earlier process left: queued and running jobs with their input run again; one whose
    input is gone, one cancelled mid-run and one interrupted too often end with a reason."""
    folder = tmp_path / "uploads"
    files = FileStore(folder)
    photo = png_bytes(crop_of("Set5/bird.png", (0, 0, 32, 32)))

    def left_behind(status: str, with_input: bool = True, **extra) -> str:
        job_id = new_id()
        if with_input:
            files.write(job_id, "in", "png", photo)
        job = Job(id=job_id, scale=2, anime=False, model="realesr-animevideov3", output_format="png", quality=90,
                  original_name="bird.png", input_file=f"{job_id}_in.png", input_width=32, input_height=32,
                  output_width=64, output_height=64, status=status, **extra)
        persist(files, job)
        return job_id

    queued, running = left_behind("queued"), left_behind("running", attempts=1, stage="upscaling")
    lost = left_behind("running", with_input=False, attempts=1)
    stopping = left_behind("running", attempts=1, cancel_requested=True)
    doomed = left_behind("running", attempts=2)
    done = left_behind("done", finished_at=time.time(), output_file=files.write(new_id(), "out", "png", photo))

    client = make_app(UPLOAD_FOLDER=str(folder)).test_client()
    states = {}
    deadline = time.time() + 120
    while True:
        states = {i: client.get(f"/api/jobs/{i}").get_json() for i in (queued, running, lost, stopping, doomed)}
        if all(s["status"] in FINISHED for s in states.values()):
            break
        assert time.time() < deadline, states
        time.sleep(0.1)
    assert states[queued]["status"] == states[running]["status"] == "done"
    assert states[lost]["status"] == "failed" and "upload it again" in states[lost]["error"]
    assert states[stopping]["status"] == "cancelled"
    assert states[doomed]["status"] == "failed" and "2 times" in states[doomed]["error"]
    for job_id in (queued, running, lost, stopping, doomed, done):
        answer = client.delete(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["status"] in FINISHED
    assert client.delete(f"/api/jobs/{uuid.uuid4().hex}").status_code == 404


# --- a real server, killed mid-job ------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder, weights_dir, log_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REMASTER_UPLOAD_FOLDER": str(folder),
           "REMASTER_WEIGHTS_FOLDER": str(weights_dir), "REMASTER_PRELOAD_MODELS": "false",
           "REMASTER_DEVICE": "cpu", "REMASTER_PRECISION": "fp32"}
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
            return process, base
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, open(log_path).read()[-3000:]
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.2)


def call(base: str, path: str, method: str = "GET", body: bytes | None = None, headers=None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_job(base: str, data: bytes, model: str) -> str:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in {"scale": "4", "model": model}.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.png"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode())
    status, body = call(base, "/api/jobs", "POST", b"".join(parts),
                        {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 202, body
    return body["id"]


def test_a_server_killed_mid_job_finishes_its_jobs_after_a_restart(tmp_path, weights_dir):
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    quick = png_bytes(crop_of("Set5/bird.png", (0, 0, 32, 32)))
    slow = png_bytes(crop_of("Set5/bird.png", (40, 40, 136, 136)))  # 96x96 with x4plus: long enough
    server, base = start_server(folder, weights_dir, log)
    try:
        early = post_job(base, quick, "realesr-animevideov3")
        deadline = time.time() + 120
        while call(base, f"/api/jobs/{early}")[1]["status"] != "done":
            assert time.time() < deadline
            time.sleep(0.1)
        victim = post_job(base, slow, "realesrgan-x4plus")
        waiting = post_job(base, quick, "realesr-animevideov3")
        deadline = time.time() + 300
        while True:
            state = call(base, f"/api/jobs/{victim}")[1]
            if state["stage"] == "upscaling" and state["progress"]["done"] >= 1:
                break
            assert time.time() < deadline, state
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # no chance to clean up
        server.wait(10)

        server, base = start_server(folder, weights_dir, log)
        deadline = time.time() + 300
        while True:
            states = {i: call(base, f"/api/jobs/{i}")[1] for i in (victim, waiting)}
            if all(s["status"] in FINISHED for s in states.values()):
                break
            assert time.time() < deadline, states
            time.sleep(0.2)
        assert states[victim]["status"] == "done" and states[waiting]["status"] == "done", states
        with urllib.request.urlopen(base + states[victim]["result"]["output_path"]) as response:
            assert Image.open(io.BytesIO(response.read())).size == (384, 384)
        for job_id in (early, victim, waiting):
            status, body = call(base, f"/api/jobs/{job_id}", "DELETE")
            assert status == 200 and body["status"] == "done", body
        health = call(base, "/healthz")[1]
        assert health["running"] == 0 and health["queued"] == 0
    finally:
        server.kill()
        server.wait(10)
    left = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert not [name for name in left if "preview" in name or name.endswith(".part")], left


@pytest.mark.parametrize("suffix", ["tiff", "png16"])
def test_before_image_is_a_png_a_browser_can_show(client, suffix):
    image = crop_of("Set5/bird.png", (0, 0, 24, 20))
    buffer = io.BytesIO()
    if suffix == "tiff":
        image.save(buffer, "TIFF")
    else:
        import numpy as np

        wide = (np.asarray(image.convert("L"), dtype=np.uint16) * 257)
        Image.fromarray(wide).save(buffer, "PNG")
    job = submit(client, buffer.getvalue(), model="realesr-animevideov3", scale="2").get_json()
    response = client.get(job["before_url"])
    assert response.status_code == 200 and response.mimetype == "image/png"
    shown = Image.open(io.BytesIO(response.data))
    assert shown.size == (24, 20) and shown.mode in ("RGB", "L", "RGBA")
    response.close()
