"""The page's video viewer (static/js/video.js) in a real browser, on a real finished job: the
original and the result both play, in step, under the page's own CSP."""

from __future__ import annotations

import time

from tests.media import write_clip


def test_the_viewer_plays_before_and_after_in_step(serve, page, tmp_path):
    server = serve(PRECISION="fp32")
    clip = write_clip(tmp_path / "clip.mp4", subtitle="", frames=24)
    response = page.request.post(f"{server}/api/jobs", multipart={
        "scale": "2", "file": {"name": "clip.mp4", "mimeType": "video/mp4", "buffer": clip.read_bytes()}})
    assert response.status == 202, response.text()
    job_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while (job := page.request.get(f"{server}/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.2)
    assert job["status"] == "done", job["error"]
    page.goto(server + "/")
    state = page.evaluate("""async (job) => {
        const { showVideoResult, isMovingJob } = await import("/static/js/video.js");
        const box = document.createElement("div");
        document.body.append(box);
        showVideoResult(box, job);
        const videos = [...box.querySelectorAll("video")];
        await Promise.all(videos.map((v) => v.readyState >= 2 ? null :
            new Promise((ok) => v.addEventListener("loadeddata", ok, { once: true }))));
        await new Promise((ok) => setTimeout(ok, 800));
        return { moving: isMovingJob(job), videos: videos.map((v) => ({ time: v.currentTime, width: v.videoWidth,
                 error: v.error && v.error.code, paused: v.paused })),
                 split: getComputedStyle(videos[1]).clipPath };
    }""", job)
    assert state["moving"] and len(state["videos"]) == 2
    before, after = state["videos"]
    # Display widths: the clip has 4:3 pixels (64 and 128 coded), kept by the result.
    assert (before["width"], after["width"]) == (85, 171) and not before["error"] and not after["error"]
    assert not before["paused"] and not after["paused"] and after["time"] > 0
    assert abs(before["time"] - after["time"]) < 0.25
    assert "inset" in state["split"]
