"""Jobs outlive the process that took them: a real ``python app.py`` killed with SIGKILL mid-job, and
a runner stopped cleanly mid-job, leave nothing stranded on the same upload folder."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid

import numpy as np
from PIL import Image

from esrgan.io.imageio import DecodedImage, to_uint8
from esrgan.pipeline import Upscaler
from esrgan.settings import Settings
from tests.conftest import FINISHED, ROOT, crop_of, free_port, job_finished, png_bytes, psnr, wait_until
from tests.hooks import Hooks
from tests.launch import command

QUICK_BOX = (0, 0, 32, 32)
SLOW_BOX = (40, 40, 136, 136)  # 96x96 with x4plus: seconds, long enough to be killed mid-job


def start_server(folder, weights_dir, log_path, hooks: Hooks | None = None,
                 **extra: str) -> tuple[subprocess.Popen, str]:
    """``python app.py`` through the tests' launcher (with ``hooks``), configured by REMASTER_* variables."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "REMASTER_UPLOAD_FOLDER": str(folder),
           "REMASTER_WEIGHTS_FOLDER": str(weights_dir), "REMASTER_PRELOAD_MODELS": "false",
           "REMASTER_DEVICE": "cpu", "REMASTER_PRECISION": "fp32", **(hooks or Hooks()).environment(), **extra}
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps its own copy
    process = subprocess.Popen(command("app.py"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=10).read()
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert process.poll() is None, open(log_path).read()[-3000:]
            return False

    wait_until(answering, 300, "the server did not start")  # a guard: a start takes a minute on a loaded machine
    return process, base


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


def test_a_server_killed_mid_job_finishes_its_jobs_after_a_restart(tmp_path, weights_dir):
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    quick = png_bytes(crop_of("coffee.png", QUICK_BOX))
    slow = png_bytes(crop_of("coffee.png", SLOW_BOX))
    delay = Hooks(delay=0.1)  # the victim (24 steps) is still at work when killed, on any CPU
    server, base = start_server(folder, weights_dir, log, delay)
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

        server, base = start_server(folder, weights_dir, log, delay)
        # A job the new process recovered may be cancelled like any other. Recovered jobs run oldest
        # first, one at a time: ``dropped`` waits behind the victim's 24 slowed steps and ``waiting``'s
        # 19, so it is still queued, and a queued job is cancelled at once.
        status, body = call(base, f"/api/jobs/{dropped}", "DELETE")
        assert status == 200 and body["cancel_requested"] is True, body
        assert body["status"] == "cancelled", body
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
    on from there, and its result is an uninterrupted run's. The network is slow on purpose (the
    tests' hook sleeps at every step), never by the machine's speed."""
    folder, log = tmp_path / "uploads", tmp_path / "server.log"
    slow = {"REMASTER_TILE": "32", "REMASTER_PREVIEW_MIN_SECONDS": "1e9"}
    photo = crop_of("coffee.png", (10, 20, 106, 84))  # 96x64: 3x2 tiles of 32 px
    server, base = start_server(folder, weights_dir, log, Hooks(delay=0.05), **slow)
    try:
        job_id = post_job(base, png_bytes(photo), "realesr-animevideov3")
        wait_until(lambda: job_state(base, job_id)["progress"]["fraction"] >= 0.5, 300, "the job never got halfway")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        kept = sorted(p.name for p in (folder / f"{job_id}_work").iterdir())
        assert len([name for name in kept if name.startswith("tile")]) >= 3, kept
        server, base = start_server(folder, weights_dir, log, Hooks(delay=0.05), **slow)
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


def test_a_clean_stop_mid_job_puts_it_back_in_the_queue(make_app, tmp_path, engine_hooks):
    """Stopping the runner (a clean shutdown) interrupts the running job within a step; its record
    says queued, not cancelled, and the next process on the folder runs it to the end."""
    folder = tmp_path / "uploads"
    steps = []  # every step the job's run reported
    engine_hooks(delay=0.1, after_step=lambda done, total: steps.append(done))  # still running when stopped
    app = make_app(UPLOAD_FOLDER=str(folder), PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9)
    client = app.test_client()
    photo = png_bytes(crop_of("coffee.png", (0, 0, 64, 64)))
    form = {"scale": "4", "model": "realesrgan-x4plus", "file": (io.BytesIO(photo), "photo.png")}
    job_id = client.post("/api/jobs", data=form, content_type="multipart/form-data").get_json()["id"]
    wait_until(lambda: client.get(f"/api/jobs/{job_id}").get_json()["progress"]["done"] >= 1, 120,
               "the job never got going")
    asked = len(steps)
    app.extensions["remaster"].close()
    assert len(steps) <= asked + 1 and steps[-1] < 24, steps  # the step under way at most, of the tile's 24
    record = app.extensions["remaster"].files.load_record(job_id)
    assert record["status"] == "queued" and not record["cancel_requested"] and record["attempts"] == 0, record

    client = make_app(UPLOAD_FOLDER=str(folder), PRECISION="fp32").test_client()
    state = job_finished(client, job_id, 120)
    assert state["status"] == "done", state
    assert state["result"]["output_width"] == 256
    assert state["restarted"] and state["restart_note"]
