"""Jobs outlive the process that took them: a real ``python app.py`` killed with SIGKILL mid-job, and
a runner stopped cleanly mid-job, leave nothing stranded on the same upload folder."""

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

import numpy as np
from PIL import Image

from esrgan.io.imageio import DecodedImage, to_uint8
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from tests.conftest import ROOT, crop_of, png_bytes, psnr

FINISHED = ("done", "failed", "cancelled")
QUICK_BOX = (0, 0, 32, 32)
SLOW_BOX = (40, 40, 136, 136)  # 96x96 with x4plus: seconds, long enough to be killed mid-job


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder, weights_dir, log_path, **extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REMASTER_UPLOAD_FOLDER": str(folder),
           "REMASTER_WEIGHTS_FOLDER": str(weights_dir), "REMASTER_PRELOAD_MODELS": "false",
           "REMASTER_DEVICE": "cpu", "REMASTER_PRECISION": "fp32", **extra}
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
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


def job_state(base: str, job_id: str) -> dict:
    status, body = call(base, f"/api/jobs/{job_id}")
    assert status == 200, body  # never a 500 for a known job, whatever its state
    return body


def post_job(base: str, data: bytes, model: str, scale: str = "4", filename: str = "p.png",
             content_type: str = "image/png") -> str:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in {"scale": scale, "model": model}.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode())
    status, body = call(base, "/api/jobs", "POST", b"".join(parts),
                        {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 202, body
    return body["id"]


def wait_until(condition, seconds: float, what: str):
    deadline = time.time() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_a_server_killed_mid_job_finishes_its_jobs_after_a_restart(tmp_path, weights_dir):
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    quick = png_bytes(crop_of("coffee.png", QUICK_BOX))
    slow = png_bytes(crop_of("coffee.png", SLOW_BOX))
    delay = {"REMASTER_STEP_DELAY": "0.1"}  # the victim (24 steps) is still at work when killed, on any CPU
    server, base = start_server(folder, weights_dir, log, **delay)
    try:
        early = post_job(base, quick, "realesr-animevideov3")
        wait_until(lambda: job_state(base, early)["status"] == "done", 120, "the first job did not finish")
        victim = post_job(base, slow, "realesrgan-x4plus")
        waiting = post_job(base, quick, "realesr-animevideov3")
        dropped = post_job(base, quick, "realesr-animevideov3")
        cancelled = post_job(base, quick, "realesr-animevideov3")
        assert call(base, f"/api/jobs/{cancelled}", "DELETE")[1]["status"] == "cancelled"

        def victim_at_work() -> bool:
            state = job_state(base, victim)
            return state["stage"] == "upscaling" and state["progress"]["done"] >= 1

        wait_until(victim_at_work, 300, "the victim never got going")
        server.send_signal(signal.SIGKILL)  # mid-job, no chance to clean up
        server.wait(10)

        server, base = start_server(folder, weights_dir, log, **delay)
        # A job the new process recovered may be cancelled like any other, queued or running.
        status, body = call(base, f"/api/jobs/{dropped}", "DELETE")
        assert status == 200 and body["cancel_requested"] is True, body
        assert body["status"] == "cancelled" or body["stage"] == "cancelling", body
        ids = (early, victim, waiting, dropped, cancelled)
        states = wait_until(lambda: (lambda s: s if all(v["status"] in FINISHED for v in s.values()) else None)(
            {i: job_state(base, i) for i in ids}), 300, "the recovered jobs did not finish")
        assert [states[i]["status"] for i in ids] == ["done", "done", "done", "cancelled", "cancelled"], states
        with urllib.request.urlopen(base + states[victim]["result"]["output_path"]) as response:
            assert Image.open(io.BytesIO(response.read())).size == (384, 384)
        assert states[victim]["preview_url"] is None
        for job_id in ids:  # DELETE of a finished job answers it as it is, before or after the restart
            status, body = call(base, f"/api/jobs/{job_id}", "DELETE")
            assert status == 200 and body["status"] == states[job_id]["status"], body
        assert call(base, f"/api/jobs/{dropped}/result")[0] == 409
        health = call(base, "/healthz")[1]
        assert health["running"] == 0 and health["queued"] == 0
    finally:
        server.kill()
        server.wait(10)
    assert b"Traceback" not in log.read_bytes()
    left = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert not [name for name in left if "preview" in name or name.endswith(".part")], left


def test_a_job_killed_mid_run_resumes_at_its_first_unfinished_tile(tmp_path, weights_dir, store):
    """kill -9 with half the tiles done: the adopted job takes them from its folder, its progress goes
    on from there, and its result is an uninterrupted run's. The network is slow on purpose (a test
    hook sleeps at every step), never by the machine's speed."""
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    slow = {"REMASTER_TILE": "32", "REMASTER_STEP_DELAY": "0.05", "REMASTER_PREVIEW_MIN_SECONDS": "1e9"}
    photo = crop_of("coffee.png", (10, 20, 106, 84))  # 96x64: 3x2 tiles of 32 px
    server, base = start_server(folder, weights_dir, log, **slow)
    try:
        job_id = post_job(base, png_bytes(photo), "realesr-animevideov3")
        wait_until(lambda: job_state(base, job_id)["progress"]["fraction"] >= 0.5, 300, "the job never got halfway")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        kept = sorted(p.name for p in (folder / f"{job_id}_work").iterdir())
        assert len([name for name in kept if name.startswith("tile")]) >= 3, kept
        server, base = start_server(folder, weights_dir, log, **slow)
        seen = []

        def ended() -> dict | None:
            state = job_state(base, job_id)
            if state["stage"] == "upscaling":
                seen.append(state["progress"]["fraction"])
            return state if state["status"] in FINISHED else None

        state = wait_until(ended, 300, "the adopted job did not finish")
    finally:
        server.kill()
        server.wait(10)
    assert state["status"] == "done", state
    # Resumed: up to where the killed run had got its progress moves a whole kept tile at a time (a
    # tile run again would report several steps inside it), then on from there.
    tiles = 6
    assert seen and max(seen) > 0.5, seen
    assert not [f for f in seen if f < 0.5 and abs(f * tiles - round(f * tiles)) > 0.01], seen
    assert not (folder / f"{job_id}_work").exists()
    with Image.open(folder / f"{job_id}_out.png") as image:
        resumed = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    uninterrupted = Upscaler(store, Settings(device="cpu", precision="fp32", tile=32)).upscale(
        DecodedImage(np.asarray(photo, dtype=np.float32) / 255), 4, model="realesr-animevideov3")
    expected = to_uint8(uninterrupted.image.pixels) / 255
    assert psnr(resumed, expected) >= 50


def test_a_clean_stop_mid_job_puts_it_back_in_the_queue(make_app, tmp_path):
    """Stopping the runner (a clean shutdown) interrupts the running job within a step; its record
    says queued, not cancelled, and the next process on the folder runs it to the end."""
    folder = tmp_path / "uploads"
    app = make_app(UPLOAD_FOLDER=str(folder), PRECISION="fp32", STEP_DELAY=0.1)  # still running when stopped
    client = app.test_client()
    photo = png_bytes(crop_of("coffee.png", (0, 0, 64, 64)))
    form = {"scale": "4", "model": "realesrgan-x4plus", "file": (io.BytesIO(photo), "photo.png")}
    job_id = client.post("/api/jobs", data=form, content_type="multipart/form-data").get_json()["id"]
    wait_until(lambda: client.get(f"/api/jobs/{job_id}").get_json()["progress"]["done"] >= 1, 120,
               "the job never got going")
    asked = time.monotonic()
    app.extensions["remaster"].close()
    assert time.monotonic() - asked < 5
    record = app.extensions["remaster"].files.load_record(job_id)
    assert record["status"] == "queued" and not record["cancel_requested"] and record["attempts"] == 0, record

    client = make_app(UPLOAD_FOLDER=str(folder), PRECISION="fp32").test_client()
    state = wait_until(lambda: (lambda s: s if s["status"] in FINISHED else None)(
        client.get(f"/api/jobs/{job_id}").get_json()), 120, "the job did not run again")
    assert state["status"] == "done", state
    assert state["result"]["output_width"] == 256
    assert state["restarted"] and state["restart_note"]
