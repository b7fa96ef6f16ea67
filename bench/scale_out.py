"""Scale-out benchmark: one batch of jobs through the web app to 1, then 2 Celery workers.

Everything on loopback and bounded: starts redis-server, the web app (waitress) with
REMASTER_BROKER_URL, and N workers (``python -m web.worker``, the CPU cores split between them),
submits ``--jobs`` uploads to ``POST /api/jobs``, waits for all, and reports throughput and
per-job latency (submit to done). Then stops everything.

    python bench/scale_out.py --jobs 8 --size 64
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from load_test import DATASETS, free_port, multipart  # noqa: E402


def wait_for(url: str, deadline: float) -> None:
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"{url} did not answer") from None
            time.sleep(0.3)


def run(workers: int, jobs: int, body: bytes, content_type: str, folder: Path) -> dict:
    redis_port, web_port = free_port(), free_port()
    redis = subprocess.Popen([shutil.which("redis-server"), "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "yes", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    broker = f"redis://127.0.0.1:{redis_port}/0"
    uploads = folder / f"uploads-{workers}"
    env = {**os.environ, "REMASTER_BROKER_URL": broker, "REMASTER_UPLOAD_FOLDER": str(uploads),
           "REMASTER_MAX_QUEUE": str(jobs + 1), "PORT": str(web_port), "REMASTER_PRELOAD_MODELS": "false"}
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    processes = [subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for index in range(workers):
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "web.worker", "--name", f"bench{index}@%h", "--loglevel", "WARNING"],
            cwd=ROOT, env={**env, "OMP_NUM_THREADS": threads}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    base = f"http://127.0.0.1:{web_port}"
    try:
        wait_for(f"{base}/healthz", time.time() + 120)
        deadline = time.time() + 120
        while len(json.loads(urllib.request.urlopen(f"{base}/healthz").read())["workers_seen"]) < workers:
            if time.time() > deadline:
                raise SystemExit("workers did not come up")
            time.sleep(0.5)
        # Warm each worker (model load, calibration) so the batch measures serving, not start-up.
        warm = [post(base, body, content_type) for _ in range(workers)]
        wait_all(base, warm, time.time() + 300)
        submitted, started = {}, time.perf_counter()
        for _ in range(jobs):
            submitted[post(base, body, content_type)] = time.perf_counter()
        finished = wait_all(base, list(submitted), time.time() + 1800)
        wall = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        redis.terminate()
        redis.wait(10)
    latencies = sorted(finished[i] - submitted[i] for i in submitted)
    return {"workers": workers, "threads": threads, "wall": wall, "throughput": jobs / wall,
            "p50": statistics.median(latencies), "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]}


def post(base: str, body: bytes, content_type: str) -> str:
    request = urllib.request.Request(f"{base}/api/jobs", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["id"]


def wait_all(base: str, ids: list[str], deadline: float) -> dict[str, float]:
    done: dict[str, float] = {}
    while len(done) < len(ids):
        for job_id in ids:
            if job_id not in done:
                status = json.loads(urllib.request.urlopen(f"{base}/api/jobs/{job_id}").read())["status"]
                if status != "queued" and status != "running":
                    if status != "done":
                        raise SystemExit(f"job {job_id} ended {status}")
                    done[job_id] = time.perf_counter()
        if time.time() > deadline:
            raise SystemExit("jobs did not finish in time")
        time.sleep(0.1)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    with Image.open(DATASETS / "Set14" / "baboon.png") as image:
        crop = image.convert("RGB").crop((100, 100, 100 + args.size, 100 + args.size))
    buffer = io.BytesIO()
    crop.save(buffer, "PNG")
    body, content_type = multipart({"scale": "4", "anime": "false"}, buffer.getvalue())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            rows.append(run(workers, args.jobs, body, content_type, Path(folder)))
    print(f"{args.jobs} jobs of {args.size}x{args.size} at 4x (x4plus) through the web app and Celery/Redis, "
          f"{os.cpu_count()} CPU cores in all\n")
    print("| workers | threads each | wall s | jobs/s | latency p50 s | p95 s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['workers']} | {r['threads']} | {r['wall']:.1f} | {r['throughput']:.2f} | "
              f"{r['p50']:.1f} | {r['p95']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
