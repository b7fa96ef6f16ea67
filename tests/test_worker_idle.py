"""A Celery worker measures the CPU again only when idle: no task of its own running, no job waiting
in the broker's (real Redis) queue, and a measurement due; never inside a task."""

from __future__ import annotations

import pytest

from esrgan.pipeline import Upscaler
from esrgan.runtime.recheck import RECHECK_STREAK
from esrgan.settings import Settings
from tests.test_distributed import REDIS_SERVER, redis_url  # noqa: F401 - the fixture
from web.runners.celery_app import QUEUED_KEY
from web.worker.idle import IdleRecheck

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs Debian's redis-server (.ci/run installs it)")


def test_the_worker_measures_again_only_when_due_and_idle(redis_url, store):  # noqa: F811
    import redis

    client = redis.Redis.from_url(redis_url)
    upscaler = Upscaler(store, Settings(device="cpu", precision="fp32"))
    idle = IdleRecheck(upscaler, lambda: client.zcard(QUEUED_KEY))
    assert idle.idle() and not upscaler.watch.due and not idle.should_measure()  # idle, nothing due
    upscaler.watch.slow_runs = RECHECK_STREAK  # jobs in a row far slower than the calibration said
    assert idle.should_measure()

    idle.task_started()  # a task (an image or a video segment) runs on this worker
    assert not idle.should_measure()
    client.zadd(QUEUED_KEY, {"a-waiting-job": 1.0})
    idle.task_ended()
    assert not idle.should_measure()  # a job waits: it would be held by a measurement
    client.zrem(QUEUED_KEY, "a-waiting-job")
    assert idle.should_measure()
    idle.task_ended()  # an end whose start came before the worker was ready counts nothing
    idle.task_started()
    assert idle.running == 1 and not idle.should_measure()
    idle.task_ended()

    # A fixed precision is never measured again; the look says so without measuring anything.
    assert idle.check() is False and upscaler.watch.started_at is None
    client.connection_pool.disconnect()
    client = redis.Redis(port=1)  # the broker unreachable: not known to be idle
    assert not idle.should_measure()
