"""Load test: N concurrent uploads to a real server on loopback; reports codes, latency, peak RSS.

Starts ``python app.py`` (waitress) on a free loopback port with temporary folders, sends
``--requests`` uploads at once to ``POST /upscale``, and stops the server. Bounded in count and time.

    python bench/load_test.py --requests 20 --size 64 --scale 2 [--max-queue 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("REMASTER_DATASETS", ROOT.parent / "shared" / "datasets"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(fields: dict[str, str], file_bytes: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
    body = "".join(parts).encode() + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + file_bytes + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="side of the square test image")
    parser.add_argument("--scale", default="2")
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    args = parser.parse_args()

    with Image.open(DATASETS / "Set14" / "baboon.png") as image:
        crop = image.convert("RGB").crop((100, 100, 100 + args.size, 100 + args.size))
    buffer = io.BytesIO()
    crop.save(buffer, "PNG")
    body, content_type = multipart({"scale": args.scale, "anime": "false"}, buffer.getvalue())

    port = free_port()
    with tempfile.TemporaryDirectory() as uploads:
        env = {**os.environ, "PORT": str(port), "REMASTER_UPLOAD_FOLDER": uploads,
               "REMASTER_MAX_QUEUE": str(args.max_queue), "REMASTER_SYNC_TIMEOUT_SECONDS": str(args.timeout)}
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while True:  # ready, and its models preloaded (the first /api/models after start waits on none)
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.3)
            time.sleep(5)  # let the background preload finish so we measure serving, not loading
            results: list[tuple[int, float]] = []
            lock = threading.Lock()

            def one() -> None:
                started = time.perf_counter()
                request = urllib.request.Request(f"{base}/upscale", data=body, method="POST",
                                                 headers={"Content-Type": content_type})
                try:
                    with urllib.request.urlopen(request, timeout=args.timeout) as response:
                        json.loads(response.read())
                        code = response.status
                except urllib.error.HTTPError as exc:
                    code = exc.code
                except OSError:
                    code = 0  # no answer at all
                with lock:
                    results.append((code, time.perf_counter() - started))

            wall = time.perf_counter()
            threads = [threading.Thread(target=one) for _ in range(args.requests)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.timeout)
            wall = time.perf_counter() - wall
            rss = peak_rss_mb(server.pid)
            alive = urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
        finally:
            server.terminate()
            server.wait(30)

    codes: dict[int, int] = {}
    for code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    ok = sorted(t for c, t in results if c == 200)
    latencies = sorted(t for _, t in results)
    quantile = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")  # noqa: E731
    print(f"{args.requests} concurrent POST /upscale, {args.size}x{args.size} PNG at {args.scale}x, "
          f"max queue {args.max_queue}, {os.cpu_count()} CPUs")
    print(f"answered: {len(results)}/{args.requests}   status codes: {dict(sorted(codes.items()))}")
    print(f"latency all: p50 {quantile(latencies, .5):.2f} s  p95 {quantile(latencies, .95):.2f} s")
    if ok:
        print(f"latency 200: p50 {statistics.median(ok):.2f} s  p95 {quantile(ok, .95):.2f} s  "
              f"throughput {len(ok) / wall:.2f} images/s")
    print(f"wall {wall:.1f} s   server peak RSS {rss:.0f} MB   server still answering: {alive}")
    return 0 if len(results) == args.requests and alive and 0 not in codes else 1


if __name__ == "__main__":
    sys.exit(main())
