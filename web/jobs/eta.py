"""The time a job has left, as pure functions of what is known about it (tests feed them recorded
progress; `web.jobs.record.Job.eta_seconds` feeds them the job).

A job's time is its parts: the quick preview (heavy models only), the upscaling, and the finish (the
resample to the asked scale and the encoding). Before a part starts, its prior (the machine's
measured rate, `web.jobs.estimate`) counts; while the upscaling runs, the prior is blended with the
job's own pace, the pace weighing more as more is done (all of it from `PACE_TRUST_FRACTION` on).

Shown to a person, the time left never goes up while a job runs (`held`): a prior that was too
optimistic makes the figure pause until the job's real pace catches up with it, instead of
jumping from 12 s to 31 s. At a steady pace the shown figure is therefore non-increasing, and
once the pace is trusted it is the pace's own prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

PACE_TRUST_FRACTION = 0.25  # share of the network steps done from which the job's pace alone counts
MIN_SHOWN_SECONDS = 1.0  # a running job never says it has less than this left


@dataclass(frozen=True)
class Priors:
    """Seconds predicted for each part of a job before it runs (None: unknown)."""

    upscale: float | None
    preview: float = 0.0  # 0 when the job gets no preview
    finish: float = 0.0  # resample and encoding after the network


def upscale_remaining(prior: float | None, spent: float, fraction: float) -> float | None:
    """Seconds the upscaling has left after ``spent`` seconds with ``fraction`` of its steps done.

    The total is the prior blended with the pace's total (``spent / fraction``), the pace's weight
    growing from 0 with no step done to 1 at `PACE_TRUST_FRACTION`. Without a prior, the pace
    alone (None until a step is done).
    """
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction <= 0.0:
        return None if prior is None else max(prior - spent, 0.0)
    paced_total = spent / fraction
    weight = 1.0 if prior is None else min(1.0, fraction / PACE_TRUST_FRACTION)
    total = paced_total if prior is None else (1 - weight) * prior + weight * paced_total
    return max(total - spent, 0.0)


def running_remaining(stage: str, priors: Priors, in_stage: float, fraction: float,
                      preview_done: bool, calibration_left: float = 0.0) -> float | None:
    """Seconds a running job has left, before holding (see `held`).

    Args:
        stage: The job's stage: calibrating, loading, previewing, upscaling or encoding.
        priors: The parts' predictions.
        in_stage: Seconds since the stage began (for upscaling: since the network started).
        fraction: Share of the network steps done (upscaling).
        preview_done: Whether the preview part is behind it.
        calibration_left: Seconds the one-time CPU measurement has left (calibrating).
    """
    if priors.upscale is None and stage != "upscaling":
        return None
    preview = 0.0 if preview_done else priors.preview
    if stage == "previewing":
        preview = max(priors.preview - in_stage, 0.0)
    if stage == "upscaling":
        upscale = upscale_remaining(priors.upscale, in_stage, fraction)
        return None if upscale is None else upscale + priors.finish
    if stage == "encoding":
        return max(priors.finish - in_stage, 0.0)
    before = calibration_left if stage == "calibrating" else 0.0
    return before + preview + (priors.upscale or 0.0) + priors.finish


def held(remaining: float | None, shown_before: float | None, running: bool = True) -> float | None:
    """The figure to show: never more than was shown before for this job (a pause instead of a
    jump up), never under `MIN_SHOWN_SECONDS` while it runs; rounded to tenths."""
    if remaining is None:
        return shown_before
    value = remaining if shown_before is None else min(remaining, shown_before)
    if running:
        value = max(value, MIN_SHOWN_SECONDS)
    return round(value, 1)
