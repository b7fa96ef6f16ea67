"""A compare job: several models tried on one crop of an uploaded image (`esrgan.compare`: the crop
runs as a tile with its context), one PNG per candidate among the job's files.

A compare is a job of its own kind (``job.kind == "compare"``), made by `web.http.compare_forms` and
queued through the same runner as an upscale, so it keeps the same queue limits and workers,
in-process or on Celery. `web.jobs.lifecycle.run_job` moves it through its states and calls
`run_compare`. Its record keeps what it asks and what it found in ``job.media``:

    {"crop": [x, y, w, h], "models": [name, ...],
     "candidates": [{"model", "title", "note", "file", "crop_seconds", "full_seconds"}, ...]}

Its progress counts models; each candidate is recorded as soon as its PNG is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from esrgan.compare import Crop, run_crop, window
from esrgan.errors import Cancelled
from esrgan.io.imageio import DecodedImage, decode, encode
from esrgan.pipeline import Upscaler
from web.jobs.record import Job
from web.jobs.storage import FileStore

COMPARE = "compare"  # the kind of a compare job (`Job.kind`)
CANDIDATE_ROLE = "candidate{}"  # candidate N's PNG is ``<job id>_candidate<N>.png`` (`web.jobs.storage`)


def crop_of(job: Job) -> Crop:
    """The crop a compare job asks for, (x, y, w, h) in input pixels (its record keeps a list)."""
    x, y, w, h = job.media["crop"]
    return x, y, w, h


def crop_view(crop: Crop) -> dict:
    """A crop as the API shows it: ``{"x", "y", "width", "height"}`` in input pixels."""
    x, y, w, h = crop
    return {"x": x, "y": y, "width": w, "height": h}


def compare_work(job: Job) -> list[tuple[str, int, int]]:
    """(model, width, height) of each run a compare job makes: the crop's window, once per model."""
    _, _, width, height = window(crop_of(job), job.input_width, job.input_height)
    return [(model, width, height) for model in job.media["models"]]


def candidates_of(job: Job) -> list[dict]:
    """The candidates a compare job has recorded so far (none for any other kind of job)."""
    return list((job.media or {}).get("candidates", [])) if job.kind == COMPARE else []


def candidate_model(job: Job, name: str) -> str | None:
    """The model whose candidate PNG is the file ``name``; None when it is none of this job's."""
    return next((c["model"] for c in candidates_of(job) if c["file"] == name), None)


def run_compare(job: Job, upscaler: Upscaler, files: FileStore, progress: Callable[[int, int], None],
                stage: Callable[[str], None], stop_requested: Callable[[], bool]) -> None:
    """Run every model of ``job`` on its crop, storing each candidate's PNG and recording it.

    Raises:
        Cancelled: ``stop_requested`` said so (polled at every network step).
        RemasterError, OSError: as an upscale does; `run_job` ends the job by them.
    """
    image = decode(files.read(job.input_file), max_pixels=None)
    rgb = image.rgb()
    models = job.media["models"]
    if not upscaler.calibrated:
        stage("calibrating")
    upscaler.runtime  # noqa: B018  measures the CPU now if it must, as an upscale does first
    stage("upscaling")
    job.media["candidates"] = []  # a run again (after a restart) makes every candidate again
    progress(0, len(models))
    for index, model in enumerate(models):
        if stop_requested():
            raise Cancelled("stopped on request")
        found = run_crop(upscaler, rgb, crop_of(job), model, job.scale, cancelled=stop_requested)
        data = encode(DecodedImage(found.pixels, icc_profile=image.icc_profile), "png")
        name = files.write(job.id, CANDIDATE_ROLE.format(index), "png", data)
        job.media["candidates"].append({"model": found.model, "title": found.title, "note": found.note, "file": name,
                                        "crop_seconds": found.crop_seconds, "full_seconds": found.full_seconds})
        progress(index + 1, len(models))
