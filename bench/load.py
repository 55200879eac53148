"""Load test: N gradio_client clients each send M text queries to /search at the same time.

    python bench/load.py                       # starts the app with its defaults, 20 clients x 25 queries
    python bench/load.py --clients 5 --queries 10 --model random:tiny
    python bench/load.py --url http://127.0.0.1:7860/   # against an app that is already running

Prints the machine, what the app serves, p50/p95/max latency per query, throughput and the error
count; exits 1 if any query failed. Queries come from the caption bank (or a built-in list), so most
are distinct and each is encoded by the text tower (the app caches recent query embeddings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FALLBACK_QUERIES = [
    "a red circle moves left", "a blue square grows", "the green triangle moves up", "a yellow circle shrinks",
    "a white square moves right", "a purple triangle fades in", "a dog runs on the beach", "cars drive at night",
    "a person cooks in a kitchen", "birds fly over a lake",
]


def machine() -> str:
    from bench.machine import describe

    return describe().removeprefix("machine: ")


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def load_queries(n: int) -> list[str]:
    bank = REPO / "assets" / "captions" / "bank.txt"
    qs = []
    if bank.is_file():
        qs = [s.strip() for s in bank.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]
    qs = qs or FALLBACK_QUERIES
    return [qs[i % len(qs)] for i in range(n)]


def run(url: str, clients: int, queries: int, k: int) -> dict:
    from gradio_client import Client

    all_q = load_queries(clients * queries)
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def worker(c: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=False)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(f"client {c}: connect: {e!r}")
            ready.wait()
            return
        ready.wait()
        for i in range(queries):
            q = all_q[c * queries + i]
            t0 = time.perf_counter()
            try:
                gallery, status = client.predict(q, k, api_name="/search")
                if not gallery:
                    raise RuntimeError(f"no results: {status}")
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(f"client {c} query {i}: {type(e).__name__}: {str(e)[:200]}")
                continue
            with lock:
                lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    info = {}
    try:
        info = Client(url, verbose=False).predict(api_name="/library_info")
    except Exception as e:  # noqa: BLE001
        info = {"error": repr(e)}
    return {
        "url": url, "clients": clients, "queries_per_client": queries, "k": k, "ok": len(lat), "errors": len(errors),
        "error_samples": errors[:5], "wall_s": wall, "queries_per_s": len(lat) / wall if wall else 0.0,
        "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000,
        "max_ms": (max(lat) if lat else float("nan")) * 1000,
        "mean_ms": (statistics.mean(lat) if lat else float("nan")) * 1000,
        "model": info.get("model"), "library_videos": info.get("videos"),
        "index": (info.get("index") or {}).get("type"),
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running app; default: start one (python app.py) on a free port")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--queries", type=int, default=25, help="queries per client")
    ap.add_argument("--k", type=int, default=10, help="results per query")
    ap.add_argument("--model", help="passed to app.py when this script starts it")
    ap.add_argument("--library", help="passed to app.py when this script starts it")
    ap.add_argument("--videos", help="passed to app.py when this script starts it")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    server = None
    url = args.url
    if not url:
        from bench.app_server import AppServer

        app_args = []
        for flag in ("model", "library", "videos"):
            if getattr(args, flag):
                app_args += [f"--{flag}", getattr(args, flag)]
        print(f"starting python app.py {' '.join(app_args)} ...", flush=True)
        t0 = time.perf_counter()
        server = AppServer(app_args, env={"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}).start()
        url = server.url
        print(f"app answered after {time.perf_counter() - t0:.1f}s at {url}", flush=True)
    try:
        r = run(url, args.clients, args.queries, args.k)
    finally:
        if server is not None:
            server.stop()
    print(f"machine: {r['machine']}")
    print(f"app: {r['url']} model={r['model']} library={r['library_videos']} videos index={r['index']}")
    print(f"{r['clients']} clients x {r['queries_per_client']} queries (k={r['k']}): {r['ok']} ok, "
          f"{r['errors']} errors in {r['wall_s']:.1f}s ({r['queries_per_s']:.1f} queries/s)")
    print(f"latency per query: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms, max {r['max_ms']:.0f} ms, "
          f"mean {r['mean_ms']:.0f} ms")
    for e in r["error_samples"]:
        print(f"  error: {e}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
