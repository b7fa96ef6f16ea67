"""A job: one upscaling request and everything known about it, as plain data (its record)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from web.jobs.eta import Priors, held, running_remaining

Status = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: tuple[str, ...] = ("done", "failed", "cancelled")
STAGE_TEXT = {
    "queued": "Waiting for its turn",
    "calibrating": "Measuring this CPU, once",
    "loading": "Loading the model",
    "previewing": "Making a quick preview",
    "upscaling": "Upscaling",
    "encoding": "Saving the result",
    "cancelling": "Cancelling...",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


@dataclass
class Job:
    """One upscaling request and everything known about it; `as_dict` is its record."""

    id: str
    scale: float
    anime: bool
    model: str | None
    output_format: str
    quality: int
    original_name: str
    input_file: str
    input_width: int
    input_height: int
    output_width: int
    output_height: int
    noise: str | None = None
    status: Status = "queued"
    stage: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stage_started_at: float | None = None
    upscale_started_at: float | None = None
    upscale_seconds: float | None = None  # what the upscaling alone took
    finished_at: float | None = None
    steps_done: int = 0
    steps_total: int = 0
    estimate_seconds: float | None = None  # the upscaling alone, predicted before it starts
    preview_estimate: float = 0.0  # the quick preview, predicted (0: no preview)
    finish_estimate: float = 0.0  # the resample and the encoding after the network, predicted
    eta_shown: float | None = None  # the time left last shown (`web.jobs.eta.held`: it never goes up)
    output_file: str | None = None
    preview_file: str | None = None
    provenance: dict | None = None
    error: str | None = None
    error_kind: str | None = None  # `web.errors.ErrorKind`: what went wrong, when it failed
    cancel_requested: bool = False
    attempts: int = 0
    keep_gps: bool = False  # keep the GPS position in the result's EXIF (`esrgan.io.metadata`)
    tta: bool = False  # test-time augmentation (`esrgan.tiling.tta`): 8 passes per tile
    faces: bool = False  # restore faces after upscaling (`esrgan.faces`)
    restarts: int = 0  # times a stop or a crash sent it back to the queue after it had started
    worker: str | None = None
    kind: str = "image"  # "image", "video" or "animation" (`web.http.video_forms`), or "compare"
    # A video's or an animation's facts, options and result (`web.http.video_forms`); a compare's crop,
    # models and candidates (`web.jobs.compare`).
    media: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        """A job from its record (fields this version does not know are ignored).

        Raises:
            ValueError: The record lacks what every job has (not a record this app wrote).
        """
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"not a job record: {exc}") from None

    @property
    def frames(self) -> int:
        """Pictures to upscale: 1 for an image, every frame of a video or an animation."""
        return int((self.media or {}).get("frames", 1))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fraction(self) -> float:
        if self.status == "done":
            return 1.0
        return min(1.0, self.steps_done / self.steps_total) if self.steps_total else 0.0

    @property
    def display_stage(self) -> str:
        if self.cancel_requested and not self.finished:
            return "cancelling"
        return self.status if self.finished else self.stage

    def elapsed_seconds(self, now: float | None = None) -> float | None:
        """Seconds since it started running (frozen when it ended), in tenths and never under one
        tenth (real work never took "0.0 s"); None while queued."""
        if self.started_at is None:
            return None
        return max(0.1, round((self.finished_at or now or time.time()) - self.started_at, 1))

    def eta_seconds(self, now: float | None = None, ahead: float = 0.0, calibration: float | None = None,
                    remember: bool = True) -> float | None:
        """Seconds left (`web.jobs.eta`): the parts' predictions from this machine's rates at first, blended
        with the pace this job achieves as it goes; never more than this job showed before while it
        runs (it remembers the figure in ``eta_shown``).

        Args:
            now: The time (default: now).
            ahead: Seconds of work before this queued job starts (jobs ahead of it).
            calibration: Seconds the one-time CPU measurement takes, when it is still to come.
            remember: Keep the figure as the one shown (False for a sum of other jobs' work, whose
                arguments are not the ones their own answers use).
        """
        if self.finished or self.cancel_requested:
            return None
        now = now or time.time()
        priors = Priors(self.estimate_seconds, self.preview_estimate, self.finish_estimate)
        if self.status == "running":
            began = self.upscale_started_at if self.stage == "upscaling" else self.stage_started_at
            in_stage = max(0.0, now - (began or now))
            calibration_left = max(calibration - in_stage, 1.0) if calibration is not None else 0.0
            preview_done = self.preview_file is not None or self.stage in ("upscaling", "encoding")
            remaining = running_remaining(self.stage, priors, in_stage, self.fraction, preview_done, calibration_left)
        elif self.estimate_seconds is None:
            return None
        else:
            before = ahead + (max(calibration, 1.0) if calibration is not None else 0.0)
            remaining = before + priors.preview + self.estimate_seconds + priors.finish
        shown = held(remaining, self.eta_shown, running=self.status == "running")
        if remember:
            self.eta_shown = shown
        return shown

    def stage_text(self, calibration: float | None = None) -> str:
        """The stage in a few words a person understands."""
        stage = self.display_stage
        text = STAGE_TEXT.get(stage, stage)
        if stage == "calibrating" and calibration is not None:
            return f"{text} (about {max(1, round(calibration))} s)"
        if stage == "queued" and calibration is not None:
            return f"{text}; this CPU is measured once first (about {max(1, round(calibration))} s)"
        return text
