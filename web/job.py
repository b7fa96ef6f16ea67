"""A job: one upscaling request and everything known about it, as plain data (its record)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from web import figures

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
    output_file: str | None = None
    preview_file: str | None = None
    provenance: dict | None = None
    error: str | None = None
    error_kind: str | None = None  # `web.errors.ErrorKind`: what went wrong, when it failed
    cancel_requested: bool = False
    attempts: int = 0
    worker: str | None = None

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
        """Seconds since it started running (frozen when it ended); None while queued."""
        if self.started_at is None:
            return None
        return round(max(0.0, (self.finished_at or now or time.time()) - self.started_at), 1)

    def eta_seconds(self, now: float | None = None, ahead: float = 0.0, calibration: float | None = None
                    ) -> float | None:
        """Seconds left: the prediction from this machine's measured rate at first, then the pace
        this job actually achieves once enough of it is done to tell.

        Args:
            now: The time (default: now).
            ahead: Seconds of work before this queued job starts (jobs ahead of it).
            calibration: Seconds the one-time CPU measurement takes, when it is still to come.
        """
        if self.finished or self.cancel_requested:
            return None
        now = now or time.time()
        if self.status == "running" and self.stage in ("upscaling", "encoding") and self.upscale_started_at:
            spent = now - self.upscale_started_at
            fraction = self.fraction
            if fraction >= 0.1 and spent > 1.0:
                return figures.seconds(spent * (1 - fraction) / fraction)
            if self.estimate_seconds is not None:
                return figures.seconds(max(self.estimate_seconds - spent, 1.0))
            return None
        if self.estimate_seconds is None:
            return None
        before = ahead if self.status == "queued" else 0.0
        if calibration is not None and self.stage in ("queued", "calibrating"):
            spent = now - self.stage_started_at if self.stage == "calibrating" and self.stage_started_at else 0.0
            before += max(calibration - spent, 1.0)
        return figures.seconds(before + self.estimate_seconds)

    def stage_text(self, calibration: float | None = None) -> str:
        """The stage in a few words a person understands."""
        stage = self.display_stage
        text = STAGE_TEXT.get(stage, stage)
        if stage == "calibrating" and calibration is not None:
            return f"{text} (about {max(1, round(calibration))} s)"
        if stage == "queued" and calibration is not None:
            return f"{text}; this CPU is measured once first (about {max(1, round(calibration))} s)"
        return text
