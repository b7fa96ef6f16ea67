"""The web app with real Celery workers and a real Redis: jobs spread, a worker dies, nothing is lost."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time

import pytest
from PIL import Image

from tests.conftest import FINISHED, ROOT, crop_of, free_port, job_finished, png_bytes, wait_until
from tests.hooks import Hooks
from tests.launch import command

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs Debian's redis-server (.ci/run installs it)")
VISIBILITY_TIMEOUT = 5  # seconds before a dead worker's job goes back to the queue


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "yes", "--dir", str(data)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.time() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(10)


def start_workers(redis_url, tmp_path, weights_dir, names, hooks: Hooks | None = None, **settings):
    """Real worker processes (``python -m web.worker`` through the tests' launcher, with ``hooks``),
    configured only through REMASTER_* variables."""
    uploads = tmp_path / "uploads"
    env = {**os.environ, "REMASTER_BROKER_URL": redis_url, "REMASTER_UPLOAD_FOLDER": str(uploads),
           "REMASTER_WEIGHTS_FOLDER": str(weights_dir), "REMASTER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
           "REMASTER_DEVICE": "cpu", "REMASTER_PRECISION": "fp32", "OMP_NUM_THREADS": "1",
           **{f"REMASTER_{key}": str(value) for key, value in settings.items()}, **(hooks or Hooks()).environment()}
    workers, logs = {}, []
    for name in names:
        log = (tmp_path / f"{name}.log").open("w")
        logs.append(log)
        workers[name] = subprocess.Popen(command("-m", "web.worker", "--name", f"{name}@test"),
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return uploads, workers, logs


def stop_workers(workers, logs):
    for process in workers.values():
        if process.poll() is None:
            process.terminate()
            process.wait(20)
    for log in logs:
        log.close()


@pytest.fixture
def cluster(redis_url, tmp_path, weights_dir, make_app):
    # Jobs slow on purpose (7 steps of at least 0.3 s): both workers are seen at work on any CPU.
    uploads, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("alpha", "beta"), Hooks(delay=0.3))
    app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(uploads))
    yield app, workers, tmp_path
    stop_workers(workers, logs)


def submit(client, data: bytes, **fields):
    # The anime 6B model: an RRDBNet like x4plus (the same code paths), a third of its cost.
    form = {"scale": "4", "anime": "false", "model": "realesrgan-x4plus-anime", **fields,
            "file": (io.BytesIO(data), "photo.png")}
    return client.post("/api/jobs", data=form, content_type="multipart/form-data")


def records(client, ids):
    return {i: client.get(f"/api/jobs/{i}").get_json() for i in ids}


def test_jobs_spread_over_two_workers_and_survive_one_being_killed(cluster):
    app, workers, tmp_path = cluster
    client = app.test_client()
    photo = png_bytes(crop_of("chelsea_fur.png", (100, 100, 164, 164)))  # 64x64: seconds per job
    ids = [submit(client, photo).get_json()["id"] for _ in range(6)]
    files = app.extensions["remaster"].files

    seen_workers, victim = set(), None
    deadline = time.time() + 120
    while victim is None:
        assert time.time() < deadline, f"workers never started: {(tmp_path / 'alpha.log').read_text()[-2000:]}"
        for job_id in ids:
            record = files.load_record(job_id)
            if record["status"] == "running" and record.get("worker"):
                seen_workers.add(record["worker"])
                if record["steps_done"] == 0 and victim is None and len(seen_workers) == 2:
                    victim = record
        time.sleep(0.05)
    os.kill(workers[victim["worker"].split("@")[0]].pid, signal.SIGKILL)  # mid-job, no chance to clean up

    states = wait_until(lambda: (lambda s: s if all(v["status"] in FINISHED for v in s.values()) else None)(
        records(client, ids)), 180, "the jobs did not finish")

    assert all(s["status"] == "done" for s in states.values()), states
    assert len(seen_workers) == 2  # both workers took jobs
    rerun = files.load_record(victim["id"])
    assert rerun["worker"] != victim["worker"]  # the killed worker's job was finished by the other
    for job_id in ids:
        response = client.get(f"/api/jobs/{job_id}/result")
        assert Image.open(io.BytesIO(response.data)).size == (256, 256)
        response.close()
    leftovers = sorted(p.name for p in files.root.iterdir())
    expected = sorted(f"{i}{suffix}" for i in ids for suffix in ("_in.png", "_out.png", ".json"))
    assert leftovers == expected  # no partial outputs, no temp files

    health = client.get("/healthz").get_json()
    assert health["runner"] == "celery" and health["queued"] == 0
    assert "beta@test" in health["workers_seen"]  # the names the workers were given


def test_bad_input_fails_once_and_cancel_works_across_processes(cluster):
    from web.jobs.storage import new_id
    from web.runners.in_process import Job

    app, _, _ = cluster
    client = app.test_client()
    service = app.extensions["remaster"]
    photo = png_bytes(crop_of("chelsea_fur.png", (0, 0, 64, 64)))
    busy = [submit(client, photo).get_json()["id"] for _ in range(2)]  # both workers at work
    waiting = submit(client, photo).get_json()["id"]
    assert client.delete(f"/api/jobs/{waiting}").get_json()["status"] == "cancelled"

    # An input that went bad in storage fails in the worker: once, with its reason, no retries.
    job_id = new_id()
    truncated = photo[: len(photo) // 2]
    job = Job(id=job_id, scale=4, anime=False, model="realesrgan-x4plus-anime", output_format="png", quality=90,
              original_name="bad.png", input_file=service.files.write(job_id, "in", "png", truncated),
              input_width=64, input_height=64, output_width=256, output_height=256)
    service.runner.submit(job)

    deadline = time.time() + 120
    while True:
        states = records(client, [*busy, waiting, job_id])
        if all(s["status"] in ("done", "failed", "cancelled") for s in states.values()):
            break
        assert time.time() < deadline, states
        time.sleep(0.3)
    assert [states[i]["status"] for i in busy] == ["done", "done"]
    assert states[waiting]["status"] == "cancelled"
    assert not service.files.root.joinpath(f"{waiting}_out.png").exists()
    failed = states[job_id]
    assert failed["status"] == "failed" and ("truncated" in failed["error"] or "damaged" in failed["error"])
    finished_at = service.files.load_record(job_id)["finished_at"]
    time.sleep(VISIBILITY_TIMEOUT + 2)  # past the time a lost job would be redelivered
    assert service.files.load_record(job_id)["finished_at"] == finished_at
    assert client.get("/healthz").get_json()["queued"] == 0


def test_a_worker_honours_the_engine_settings_of_its_environment(redis_url, tmp_path, weights_dir, make_app):
    """REMASTER_TILE, REMASTER_BACKEND and REMASTER_MAX_OUTPUT_PIXELS reach the worker's engine, as
    they reach the in-process one; the web node itself loads no model."""
    uploads, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("tiny",), TILE=32, BACKEND="torch",
                                           MAX_OUTPUT_PIXELS=300 * 300)
    try:
        app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(uploads), PRELOAD_MODELS=True)
        client = app.test_client()
        photo = png_bytes(crop_of("chelsea_fur.png", (0, 0, 64, 64)))
        job_id = submit(client, photo, model="realesr-animevideov3").get_json()["id"]
        state = job_finished(client, job_id)
        assert state["status"] == "done", state
        provenance = state["result"]["provenance"]
        assert provenance["tiles"] == 4  # 64x64 in tiles of 32: the worker's setting, not the default
        assert provenance["backend"] == "torch"
        # The web node's own limit (64 MP) lets a 400x400 result through; the worker's does not.
        larger = png_bytes(crop_of("chelsea_fur.png", (0, 0, 100, 100)))
        state = job_finished(client, submit(client, larger, model="realesr-animevideov3").get_json()["id"])
        assert state["status"] == "failed" and "result of this 100x100 image" in state["error"], state
        assert "tiny@test" in client.get("/healthz").get_json()["workers_seen"]
        service = app.extensions["remaster"]
        # The web node loaded no model and measured no CPU: the workers do both.
        assert not service.store.modules._loaded
        assert service._upscaler is None or service._upscaler._runtime is None
    finally:
        stop_workers(workers, logs)


def test_queued_jobs_know_their_place_and_the_time_left_never_grows_between_polls(redis_url, tmp_path, weights_dir,
                                                                                    make_app):
    """Every poll reads a Celery job afresh from its record; the queue position comes from the broker
    and the time left shown is remembered in Redis, so it never goes up while the job runs."""
    uploads = tmp_path / "uploads"
    app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(uploads))
    client = app.test_client()
    photo = png_bytes(crop_of("chelsea_fur.png", (7, 3, 50, 34)))  # 43x31, tiled in 16 px steps below
    ids = [submit(client, photo, model="realesr-animevideov3").get_json()["id"] for _ in range(3)]
    assert [records(client, ids)[i]["queue_position"] for i in ids] == [1, 2, 3]  # no worker yet

    _, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("solo",), Hooks(delay=0.05), TILE=16)
    try:
        shown, positions = {i: [] for i in ids}, {i: [] for i in ids}
        deadline = time.time() + 180
        while True:
            states = records(client, ids)
            if all(s["status"] == "done" for s in states.values()):
                break
            assert time.time() < deadline and not any(s["status"] == "failed" for s in states.values()), states
            for i, state in states.items():
                if state["status"] == "running" and state["eta_seconds"] is not None:
                    shown[i].append(state["eta_seconds"])
                if state["status"] == "queued":
                    positions[i].append(state["queue_position"])
            time.sleep(0.1)
    finally:
        stop_workers(workers, logs)
    for i in ids:
        assert len(shown[i]) >= 3, shown  # 6 tiles of several steps, 0.05 s a step: seen running many times
        assert shown[i] == sorted(shown[i], reverse=True), shown[i]
    for i in ids[1:]:  # None only in the hand-over: the worker took it from the queue, its record says "running" next
        numbered = [p for p in positions[i] if p is not None]
        assert None not in positions[i][: len(numbered)], positions[i]
        assert set(numbered) <= {1, 2, 3} and numbered[-1] == 1, positions[i]  # it moved up to first
        assert all(p == 1 for p in numbered[numbered.index(1):])


def test_a_job_redelivered_while_its_worker_still_runs_it_is_not_run_twice(redis_url, tmp_path, weights_dir,
                                                                          make_app):
    """Redis hands an unacknowledged job to another worker once the visibility timeout passes, even
    while the first still runs it: the copy waits for the live worker, and the job runs once."""
    _, workers, logs = start_workers(redis_url, tmp_path, weights_dir, ("first", "second"), Hooks(delay=0.5),
                                     TILE=16, VISIBILITY_TIMEOUT=1)
    try:
        app = make_app(BROKER_URL=redis_url, UPLOAD_FOLDER=str(tmp_path / "uploads"), VISIBILITY_TIMEOUT=1)
        client = app.test_client()
        photo = png_bytes(crop_of("chelsea_fur.png", (5, 9, 52, 40)))  # 47x31: 6 tiles, >= 3 s of work
        job_id = submit(client, photo, model="realesr-animevideov3").get_json()["id"]
        state = job_finished(client, job_id, seconds=180)
    finally:
        stop_workers(workers, logs)
    waited = [name for name in ("first", "second") if "this copy waits" in (tmp_path / f"{name}.log").read_text()]
    record = app.extensions["remaster"].files.load_record(job_id)
    assert state["status"] == "done", state
    assert waited and record["worker"] != f"{waited[0]}@test"  # a copy came, and waited for the live worker
    assert (record["attempts"], record["restarts"]) == (1, 0)  # run once, never sent back to the queue
