"""The job lifecycle as a user meets it: progress that moves, cancel that frees the CPU at once, a
quick preview while a heavy model works, the one-time CPU measurement said as such, and jobs an
earlier process left behind recovered (a server killed mid-job: tests/test_restart.py)."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from dataclasses import asdict

import pytest
from PIL import Image

from esrgan.models.store import ModelStore
from esrgan.pipeline import Upscaler
from esrgan.runtime import choose as runtime
from esrgan.runtime.recheck import RECHECK_STREAK
from esrgan.settings import Settings
from tests.conftest import FINISHED, crop_of, job_finished, png_bytes, record_figures
from web.jobs.lifecycle import JobResources, persist, run_job
from web.jobs.record import Job
from web.jobs.storage import FileStore, new_id
from web.runners.in_process import InProcessRunner


def submit(client, data: bytes, **fields):
    form = {"scale": "4", "anime": "false", **fields, "file": (io.BytesIO(data), "photo.png")}
    return client.post("/api/jobs", data=form, content_type="multipart/form-data")


@pytest.fixture
def client(make_app):
    """The CPU measurement has its own test: the others take fp32 as it is."""
    return make_app(PRECISION="fp32").test_client()


def test_a_one_tile_job_reports_progress_many_times(make_app, engine_hooks):
    """Each of the first steps waits until the test has asked for the job once, so the test sees
    every one of them whatever the machine's speed."""
    watched = 4
    reported, asked = threading.Semaphore(0), threading.Semaphore(0)

    def wait_to_be_seen(done: int, total: int) -> None:  # in the runner's thread, after the step was recorded
        if done <= watched:
            reported.release()
            assert asked.acquire(timeout=300), "the test never asked"

    engine_hooks(after_step=wait_to_be_seen)
    client = make_app(PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9).test_client()
    photo = png_bytes(crop_of("coffee.png", (100, 100, 164, 164)))  # one tile
    job_id = submit(client, photo, model="realesrgan-x4plus").get_json()["id"]
    seen, stages = [], []
    for _ in range(watched):
        assert reported.acquire(timeout=300), client.get(f"/api/jobs/{job_id}").get_json()
        state = client.get(f"/api/jobs/{job_id}").get_json()
        stages.append(state["stage"])
        seen.append((state["progress"]["done"], state["progress"]["total"], state["progress"]["fraction"]))
        asked.release()
    assert [done for done, _, _ in seen] == [1, 2, 3, 4] and {total for _, total, _ in seen} == {24}, seen
    assert all(0 < fraction < 1 for _, _, fraction in seen), seen  # the bar moves inside the one tile
    state = job_finished(client, job_id, 300)
    stages.append(state["stage"])
    assert state["status"] == "done", state
    assert state["result"]["provenance"]["tiles"] == 1
    assert state["progress"]["fraction"] == 1 and state["eta_seconds"] is None
    assert state["elapsed_seconds"] > 0
    order = ["queued", "calibrating", "loading", "previewing", "loading", "upscaling", "encoding", "done"]
    life = iter(order)  # the stages seen are a subsequence of life's order (a preview may come first)
    stages = list(dict.fromkeys(stages))
    assert "upscaling" in stages and all(stage in life for stage in stages), stages


def test_cancel_stops_the_inference_within_a_step(make_app, engine_hooks):
    """The job is held at its second step until the cancel has been answered, so it is running when
    cancelled on any CPU; the stop is counted in network steps, not seconds (how soon that is, is the
    CPU's business: bench/)."""
    at_second, answered = threading.Event(), threading.Event()

    def hold_at_the_second_step(done: int, total: int) -> None:
        if done == 2:
            at_second.set()
            answered.wait(300)

    engine_hooks(after_step=hold_at_the_second_step)
    client = make_app(PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9).test_client()
    photo = png_bytes(crop_of("coffee.png", (60, 60, 140, 140)))  # 80x80, one tile of x4plus
    job_id = submit(client, photo, model="realesrgan-x4plus").get_json()["id"]
    assert at_second.wait(300), client.get(f"/api/jobs/{job_id}").get_json()
    answer = client.delete(f"/api/jobs/{job_id}")
    answered.set()
    assert answer.status_code == 200
    assert answer.get_json()["stage"] == "cancelling" and answer.get_json()["status"] == "running"
    assert answer.get_json()["cancel_requested"] is True
    done_when_asked = answer.get_json()["progress"]["done"]
    assert done_when_asked == 2
    deadline = time.time() + 300
    while client.get("/healthz").get_json()["running"]:
        assert time.time() < deadline, "the inference went on after the cancel"
        time.sleep(0.01)
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert state["status"] == "cancelled" and "result" not in state
    # No step after the one under way when it was asked (the tile has 24): the next one stopped it.
    assert state["progress"]["done"] == done_when_asked < state["progress"]["total"] == 24, state["progress"]
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409


def test_recovery_reruns_what_it_can_and_explains_what_it_cannot(make_app, tmp_path):
    """Records an earlier process left: queued and running jobs with their input run again; one whose
    input is gone, one cancelled mid-run and one interrupted too often end with a reason."""
    folder = tmp_path / "uploads"
    files = FileStore(folder)
    photo = png_bytes(crop_of("coffee.png", (0, 0, 32, 32)))

    def left_behind(status: str, with_input: bool = True, **extra) -> str:
        job_id = new_id()
        if with_input:
            files.write(job_id, "in", "png", photo)
        job = Job(id=job_id, scale=2, anime=False, model="realesr-animevideov3", output_format="png", quality=90,
                  original_name="coffee.png", input_file=f"{job_id}_in.png", input_width=32, input_height=32,
                  output_width=64, output_height=64, status=status, **extra)
        persist(files, job)
        return job_id

    queued, running = left_behind("queued"), left_behind("running", attempts=1, stage="upscaling")
    lost = left_behind("running", with_input=False, attempts=1)
    stopping = left_behind("running", attempts=1, cancel_requested=True)
    doomed = left_behind("running", attempts=2)
    done = left_behind("done", finished_at=time.time(), output_file=files.write(new_id(), "out", "png", photo))
    expired = left_behind("done", finished_at=time.time())  # its record outlived its result
    # What a process killed in the middle of a write leaves (`write_atomic`'s temporary names).
    half_written = [folder / f".{running}.json.k1ll3d.part", folder / f".{running}_out.png.k1ll3d.part",
                    folder / f".{doomed}.json.k1ll3d.part"]
    for path in half_written:
        path.write_bytes(b'{"status": "runn')

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
    # The one that was under way says it started again; the one still waiting does not.
    assert states[running]["restarted"] and "restarted" in states[running]["restart_note"]
    assert not states[queued]["restarted"] and states[queued]["restart_note"] is None
    assert states[lost]["status"] == "failed" and "upload it again" in states[lost]["error"]
    assert states[stopping]["status"] == "cancelled"
    assert states[doomed]["status"] == "failed" and "2 times" in states[doomed]["error"]
    assert not [path.name for path in half_written if path.exists()]  # the recovery cleared them
    for job_id in (queued, running, lost, stopping, doomed, done, expired):
        answer = client.delete(f"/api/jobs/{job_id}")
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["status"] in FINISHED
    # "done" whose result is gone: an answer, not a crash.
    assert client.get(f"/api/jobs/{expired}").get_json()["result"]["output_path"] is None
    answer = client.get(f"/api/jobs/{expired}/result")
    assert answer.status_code == 410 and "expired" in answer.get_json()["error"]
    assert client.delete(f"/api/jobs/{uuid.uuid4().hex}").status_code == 404


@pytest.mark.parametrize("suffix", ["tiff", "png16"])
def test_before_image_is_a_png_a_browser_can_show(client, suffix):
    image = crop_of("coffee.png", (0, 0, 24, 20))
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
    # Rendered once, kept as the job's "before" file; no other name of the job is served.
    response, again = client.get(f"/uploads/{job['id']}_before.png"), client.get(job["before_url"])
    assert response.status_code == 200 and response.data == again.data
    response.close()
    again.close()
    assert client.get(f"/uploads/{job['id']}_thumb.png").status_code == 404


def test_a_heavy_job_shows_a_quick_preview_until_its_result_replaces_it(make_app, engine_hooks):
    engine_hooks(delay=0.1)  # the preview outlives a poll on any CPU
    client = make_app(PREVIEW_MIN_SECONDS=0).test_client()
    photo = png_bytes(crop_of("coffee.png", (60, 60, 124, 124)))
    job_id = submit(client, photo, model="realesrgan-x4plus").get_json()["id"]
    preview_url, preview_size, deadline = None, None, time.time() + 300
    while True:
        state = client.get(f"/api/jobs/{job_id}").get_json()
        if state["preview_url"] and preview_url is None:
            preview_url = state["preview_url"]
            response = client.get(preview_url)
            assert response.status_code == 200 and response.mimetype == "image/png"
            preview_size = Image.open(io.BytesIO(response.data)).size
            response.close()
        if state["status"] in FINISHED:
            break
        assert time.time() < deadline
        time.sleep(0.02)
    assert state["status"] == "done", state
    assert preview_url is not None and preview_size == (256, 256)  # a look at the whole result, early
    assert state["preview_url"] is None and client.get(preview_url).status_code == 404  # replaced, deleted
    assert state["result"]["provenance"]["model"] == "realesrgan-x4plus"


def test_a_queued_job_counts_the_work_ahead_of_it(make_app):
    """The first job is held as it starts (its run waits on an event), so the others queue behind a
    running job whose time left stands still: each one's ETA is the work ahead of it and its own."""
    app = make_app(PRECISION="fp32", PREVIEW_MIN_SECONDS=1e9)
    upscaler, client = app.extensions["remaster"].upscaler, app.test_client()
    entered, gate = threading.Event(), threading.Event()
    real_upscale = upscaler.upscale

    def held(*args, **kwargs):
        entered.set()
        gate.wait(300)
        return real_upscale(*args, **kwargs)

    upscaler.upscale = held
    photo = png_bytes(crop_of("coffee.png", (0, 0, 64, 64)))
    first = submit(client, photo, model="realesrgan-x4plus").get_json()
    own = first["eta_seconds"]  # nothing ahead of it yet
    assert entered.wait(300)
    running = client.get(f"/api/jobs/{first['id']}").get_json()
    second = submit(client, photo, model="realesrgan-x4plus").get_json()
    third = submit(client, photo, model="realesrgan-x4plus").get_json()
    gate.set()
    assert running["status"] == "running" and running["queue_position"] is None
    assert second["status"] == third["status"] == "queued" and second["stage_text"]
    assert (second["queue_position"], third["queue_position"]) == (1, 2)  # 1 for the next to start
    # The running job's time left, then each queued job's own run (the same image and model: ``own``).
    assert own > 0 and second["eta_seconds"] == pytest.approx(running["eta_seconds"] + own, abs=0.2)
    assert third["eta_seconds"] == pytest.approx(running["eta_seconds"] + 2 * own, abs=0.3)
    for job in (first, second, third):
        client.delete(f"/api/jobs/{job['id']}")


def test_the_one_time_cpu_measurement_is_said_as_such(tmp_path):
    """A fresh install: the first job's stages include "calibrating", with words saying what it is."""
    upscaler = Upscaler(ModelStore(tmp_path / "weights"), Settings(device="cpu"))
    assert not upscaler.calibrated
    files = FileStore(tmp_path / "uploads")
    job_id = new_id()
    job = Job(id=job_id, scale=2, anime=False, model="realesr-animevideov3", output_format="png", quality=90,
              original_name="coffee.png", input_file=files.write(job_id, "in", "png", png_bytes(
                  crop_of("coffee.png", (0, 0, 32, 32)))), input_width=32, input_height=32,
              output_width=64, output_height=64)
    seen = []
    original_save = files.save_record

    def watch(job_id: str, record: dict) -> None:  # every persisted transition, as a poller would read it
        polled = Job.from_dict(record)
        seen.append((polled.display_stage, polled.stage_text(calibration=5.0)))
        original_save(job_id, record)

    files.save_record = watch
    run_job(job, JobResources(upscaler, files, preview_min_seconds=4))
    assert job.status == "done", job.error
    stages = [stage for stage, _ in seen]
    assert stages[stages.index("calibrating"):] == ["calibrating", "loading", "upscaling", "encoding", "done"]
    assert dict(seen)["calibrating"] == "Measuring this CPU, once (about 5 s)"
    assert upscaler.calibrated


def test_a_queued_jobs_upload_outlives_the_ttl_and_a_done_jobs_files_expire_ttl_after_its_end(make_app):
    """Files of a queued or running job never expire; a finished job's go the TTL after it ended.
    The first job is held (its run waits on an event) so the second waits behind it for as long as
    the test says: the sweeps are told the time, so nothing depends on how fast the machine is."""
    ttl = 60.0
    app = make_app(PRECISION="fp32", FILE_TTL_SECONDS=ttl)
    services = app.extensions["remaster"]
    files: FileStore = services.files
    upscaler = services.upscaler
    entered, gate = threading.Event(), threading.Event()
    real_upscale = upscaler.upscale

    def held(*args, **kwargs):  # the runner's first job stays running until the test lets it go
        entered.set()
        gate.wait(120)
        return real_upscale(*args, **kwargs)

    upscaler.upscale = held
    client = app.test_client()
    photo = png_bytes(crop_of("coffee.png", (0, 0, 21, 17)))
    first = submit(client, photo, scale="2", model="realesr-animevideov3").get_json()
    second = submit(client, photo, scale="2", model="realesr-animevideov3").get_json()
    assert entered.wait(120)
    assert client.get(f"/api/jobs/{second['id']}").get_json()["status"] == "queued"
    assert files.sweep(now=time.time() + 10 * ttl) == 0  # ten lifetimes later: both still wait or run
    for job in (first, second):
        assert files.exists(f"{job['id']}_in.png") and files.load_record(job["id"]) is not None
        assert client.get(f"/api/jobs/{job['id']}").get_json()["expires_at"] is None
    gate.set()
    ended = [services.runner.wait(job["id"], timeout=120) for job in (first, second)]
    assert [job.status for job in ended] == ["done", "done"], [job.error for job in ended]
    view = client.get(f"/api/jobs/{second['id']}").get_json()
    assert view["expires_at"] == round(ended[1].finished_at + ttl)
    last = max(job.finished_at for job in ended)
    assert files.sweep(now=min(job.finished_at for job in ended) + ttl - 1) == 0  # not yet: counted from the end
    for job in ended:
        assert files.exists(job.output_file) and files.exists(job.input_file)
    assert files.sweep(now=last + ttl + 1) >= 6  # inputs, outputs and records of both
    assert not [p for p in files.root.iterdir() if not p.name.startswith(".")]


def test_the_cpu_is_measured_again_only_between_jobs_after_several_slow_ones_on_a_quiet_machine(
        store, tmp_path):
    """A calibration record that promises an impossible rate (no CPU runs x4plus at 1e-10 s/pixel),
    so every real job is "far slower" whatever the machine's speed; the load average is the test's."""
    store.state_dict(runtime.CALIBRATION_MODEL)  # converted once for the session
    weights = tmp_path / "weights"
    (weights / "converted").mkdir(parents=True)
    for converted in (store.weights_dir / "converted").glob("*"):  # the session's converted weights, not its records
        if converted.suffix != ".json":
            (weights / "converted" / converted.name).symlink_to(converted)
    upscaler = Upscaler(ModelStore(weights), Settings(device="cpu"))
    record_figures(upscaler.store, runtime.CALIBRATION_MODEL, "fp32")  # x4plus on torch fp32, not measured first
    promised = runtime.Calibration(runtime.machine_key(), 1e-10 * runtime.CALIBRATION_SIDE**2, None, None,
                                   "fp32", 1, 0.0)
    upscaler.calibration_record.write_text(json.dumps(asdict(promised)))
    load = [2.0]  # per core: a loaded machine
    upscaler.watch.load = lambda: load[0]
    files = FileStore(tmp_path / "uploads")
    runner = InProcessRunner(JobResources(upscaler, files, preview_min_seconds=1e9), workers=1, max_queue=8)
    runner.start()
    photo = png_bytes(crop_of("coffee.png", (3, 5, 67, 69)))  # 64x64: x4plus, enough pixels to count
    ended = []
    try:
        for _ in range(RECHECK_STREAK):
            job_id = new_id()
            job = Job(id=job_id, scale=4, anime=False, model=runtime.CALIBRATION_MODEL, output_format="png",
                      quality=90, original_name="coffee.png", input_file=files.write(job_id, "in", "png", photo),
                      input_width=64, input_height=64, output_width=256, output_height=256)
            runner.submit(job)
            ended.append(runner.wait(job_id, timeout=300))
            assert ended[-1].status == "done", ended[-1].error
            assert ended[-1].provenance["precision"] == "fp32"  # the recorded choice, unchanged
            assert upscaler.watch.started_at is None  # never measured on (or right after) a job
        assert upscaler.watch.due  # three in a row: due, but the machine is loaded
        runner.on_idle()
        assert upscaler.watch.started_at is None
        assert json.loads(upscaler.calibration_record.read_text())["fp32_seconds"] == promised.fp32_seconds
        load[0] = 0.0  # the machine is quiet now: the next idle moment measures, in the background
        runner.on_idle()
        deadline = time.time() + 300
        while upscaler.watch.due or upscaler.watch.started_at is None:
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        runner.stop()
    assert upscaler.watch.started_at >= max(job.finished_at for job in ended)
    measured = json.loads(upscaler.calibration_record.read_text())
    assert measured["fp32_seconds"] > promised.fp32_seconds
    assert upscaler.runtime.seconds_per_pixel == pytest.approx(runtime.Calibration(**measured).seconds_per_pixel)


def test_the_sweep_counts_a_jobs_files_from_its_end_and_the_rest_from_their_age(tmp_path):
    files = FileStore(tmp_path / "uploads", ttl_seconds=100)
    now = time.time()
    running, finished, orphan = new_id(), new_id(), new_id()
    for job_id, status, extra in ((running, "running", {}), (finished, "done", {"finished_at": now})):
        files.write(job_id, "in", "png", b"x")
        files.save_record(job_id, {"id": job_id, "status": status, **extra})
        (files.work_dir(job_id) / "parts").mkdir(parents=True)  # the engine's checkpoint of finished tiles
        (files.work_dir(job_id) / "parts" / "tile-0.npy").write_bytes(b"t")
    files.write(orphan, "in", "png", b"x")  # an upload whose record never came
    assert files.sweep(now=now + 99) == 0
    assert files.sweep(now=now + 101) == 4  # the finished job: input, record, checkpoint; the orphan by age
    assert sorted(p.name for p in files.root.iterdir()) == sorted(
        [f"{running}_in.png", f"{running}.json", f"{running}_work"])
    assert files.sweep(now=now + 10**6) == 0  # running: never, however long
    files.delete_job(running)
    assert not list(files.root.iterdir())
