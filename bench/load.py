"""Load test over raw HTTP: searches from 1 and 20 clients, and 20 clients while describes run.

    python bench/load.py                                   # bundled:moving-shapes and random:ViT-B-32
    python bench/load.py --models bundled:moving-shapes --clients 5 --queries 10
    python bench/load.py --url http://127.0.0.1:7860/      # against an app that is already running

For each model it starts `python app.py --model SPEC` (random:ViT-B-32 builds a library of the sample
clips on its first start, kept in --cache-dir), then runs three scenarios back to back:

1. one client, sequential queries (the single-client throughput and latency);
2. N clients (default 20) at once, each sending its queries one after another;
3. the same N clients while D clients (default 3) upload and describe a video in a loop.

Every query is distinct (the app caches recent query embeddings), so each one runs the text tower.
Requests use Gradio's HTTP API directly with httpx: POST /gradio_api/call/<api_name> returns an
event id, GET /gradio_api/call/<api_name>/<event_id> streams the result (no gradio_client, whose own
protocol adds tens of milliseconds per call). Latency is that round trip, per query. Server CPU is
the app process's user+system time over the scenario, divided by the searches it answered (describes
included when they run); client CPU is this script's own. "Server cores" is the app's CPU time over
the wall time: the app is one Python process, so its Python work (Gradio's HTTP handling and queue,
the handlers) shares one core, and near 1.0 with little model work means that core is the limit.
"Machine busy" is server and client together over every core: near 100% means more clients cannot
add throughput here. From the single
client's round trip and the CPU one query costs, the script also prints the most a crowd could gain
over one client on this machine (its ceiling). Prints the machine, one table, the goal ratios; exits
1 on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = ("bundled:moving-shapes", "random:ViT-B-32")
MODIFIERS = ["at night", "in slow motion", "close up", "from above", "in the rain", "in black and white",
             "outdoors", "in a small room", "on a sunny day", "seen from far away"]
FALLBACK_QUERIES = ["a red circle moves left", "a blue square grows", "a dog runs on the beach", "cars drive at night"]


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


def distinct_queries(n: int) -> list[str]:
    """n different queries: the caption bank, then the bank again with a modifier, and so on."""
    bank = REPO / "assets" / "captions" / "bank.txt"
    lines = []
    if bank.is_file():
        lines = [s.strip() for s in bank.read_text(encoding="utf-8").splitlines() if s.strip() and s[0] != "#"]
    lines = lines or FALLBACK_QUERIES
    out = []
    for i in range(n):
        r, j = divmod(i, len(lines))
        out.append(lines[j] if r == 0 else f"{lines[j]} {MODIFIERS[(r - 1) % len(MODIFIERS)]}, take {r}")
    return out


class GradioHTTP:
    """Gradio's two-step HTTP API (call, then read the event stream), one keep-alive connection.

    Like a browser tab (and gradio_client), a client keeps one session: without a session_hash Gradio
    builds a new session state for every call, about a seventh of its per-request CPU here."""

    def __init__(self, url: str, timeout: float = 300.0):
        import uuid

        import httpx

        self.url = url.rstrip("/") + "/"
        self.http = httpx.Client(timeout=timeout)
        self.session_hash = uuid.uuid4().hex[:11]

    def call(self, api_name: str, data: list) -> list:
        r = self.http.post(f"{self.url}gradio_api/call/{api_name}",
                           json={"data": data, "session_hash": self.session_hash})
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event = None
        with self.http.stream("GET", f"{self.url}gradio_api/call/{api_name}/{event_id}") as s:
            s.raise_for_status()
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    if event == "error":
                        raise RuntimeError(f"{api_name} failed: {payload[:200]}")
                    return json.loads(payload)
        raise RuntimeError(f"{api_name}: the event stream ended without a result")

    def upload(self, path: Path) -> str:
        with open(path, "rb") as fh:
            r = self.http.post(f"{self.url}gradio_api/upload", files={"files": (path.name, fh, "video/mp4")})
        r.raise_for_status()
        return r.json()[0]

    def close(self) -> None:
        self.http.close()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def search_clients(url: str, queries: list[list[str]], k: int, lat: list[float], errors: list[str]) -> float:
    """Each list of queries is one client, sent one after another; all clients start together. Wall seconds."""
    lock = threading.Lock()
    ready = threading.Barrier(len(queries) + 1)

    def worker(c: int) -> None:
        api = GradioHTTP(url)
        ready.wait()
        for q in queries[c]:
            t0 = time.perf_counter()
            try:
                gallery = api.call("search", [q, k])[0]
                if not gallery:
                    raise RuntimeError("no results")
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"search {q!r}: {type(e).__name__}: {str(e)[:160]}")
                continue
            with lock:
                lat.append(time.perf_counter() - t0)
        api.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in range(len(queries))]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def describe_loop(url: str, video: Path, stop: threading.Event, done: list[float], errors: list[str]) -> None:
    """Upload a video once, then describe it again and again until stop is set."""
    api = GradioHTTP(url)
    try:
        handle = {"path": api.upload(video), "meta": {"_type": "gradio.FileData"}}
        while not stop.is_set():
            t0 = time.perf_counter()
            status = api.call("describe", [handle])[0]
            if "Described" not in str(status):
                raise RuntimeError(f"describe said: {str(status)[:160]}")
            done.append(time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - counted and reported
        errors.append(f"describe: {type(e).__name__}: {str(e)[:160]}")
    finally:
        api.close()


def scenario(url: str, pid: int | None, name: str, queries: list[list[str]], k: int, describes: int,
             video: Path | None) -> dict:
    lat: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    d_done: list[float] = []
    loops = [threading.Thread(target=describe_loop, args=(url, video, stop, d_done, errors), daemon=True)
             for _ in range(describes if video else 0)]
    for t in loops:
        t.start()
    if loops:
        time.sleep(2.0)  # let the describes get going
    cpu0, own0 = cpu_seconds(pid), own_cpu_seconds()
    wall = search_clients(url, queries, k, lat, errors)
    cpu, own = cpu_seconds(pid) - cpu0, own_cpu_seconds() - own0
    stop.set()
    for t in loops:
        t.join(300)
    n = len(lat)
    return {"scenario": name, "clients": len(queries), "describes": len(loops), "ok": n, "errors": len(errors),
            "error_samples": errors[:5], "wall_s": wall, "qps": n / wall if wall else 0.0,
            "p50_ms": percentile(lat, 50) * 1e3, "p95_ms": percentile(lat, 95) * 1e3,
            "max_ms": max(lat, default=float("nan")) * 1e3, "describes_done": len(d_done),
            "server_cpu_ms_per_query": cpu / n * 1e3 if n and pid else float("nan"),
            "client_cpu_ms_per_query": own / n * 1e3 if n else float("nan"),
            "server_cores": cpu / wall if wall and pid else float("nan"),
            "machine_busy": (cpu + own) / (wall * (os.cpu_count() or 1)) if wall and pid else float("nan")}


def run_model(url: str, pid: int | None, args, queries: list[str]) -> list[dict]:
    """The three scenarios against one running app."""
    api = GradioHTTP(url)
    info = api.call("library_info", [])[0]
    for q in ["warm up one", "warm up two", "warm up three"]:
        api.call("search", [q, args.k])
    api.close()
    video = next(iter(sorted((REPO / "assets" / "videos").glob("*.mp4"))), None)
    n1, n = args.single_queries, args.queries
    one = [queries[:n1]]
    crowd = [queries[n1 + c * n: n1 + (c + 1) * n] for c in range(args.clients)]
    base = n1 + args.clients * n
    busy = [queries[base + c * n: base + (c + 1) * n] for c in range(args.clients)]
    rows = [scenario(url, pid, "1 client, sequential", one, args.k, 0, None),
            scenario(url, pid, f"{args.clients} clients", crowd, args.k, 0, None),
            scenario(url, pid, f"{args.clients} clients + {args.describes} describes", busy, args.k, args.describes,
                     video)]
    for r in rows:
        r.update(model=info.get("model"), videos=info.get("videos"), text_encoder=info.get("text_encoder", "?"))
    return rows


def print_table(rows: list[dict]) -> None:
    head = ["model", "scenario", "ok", "errors", "queries/s", "p50 ms", "p95 ms", "max ms", "describes done",
            "server CPU ms/query", "client CPU ms/query", "server cores", "machine busy"]
    cells = [[r["model"], r["scenario"], r["ok"], r["errors"], f"{r['qps']:.1f}", f"{r['p50_ms']:.0f}",
              f"{r['p95_ms']:.0f}", f"{r['max_ms']:.0f}", r["describes_done"] if r["describes"] else "-",
              f"{r['server_cpu_ms_per_query']:.1f}", f"{r['client_cpu_ms_per_query']:.1f}",
              f"{r['server_cores']:.2f}", f"{r['machine_busy']:.0%}"] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *cells)]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(c, widths)) + " |")


def ceiling(one: dict) -> float:
    """The most a crowd can gain over one sequential client here: all cores busy at the CPU one query
    costs (server + client, as the single client measured it) against the single client's rate."""
    per_query = (one["server_cpu_ms_per_query"] + one["client_cpu_ms_per_query"]) / 1e3
    if not per_query or per_query != per_query or not one["qps"]:
        return float("nan")
    return (os.cpu_count() or 1) / per_query / one["qps"]


def print_goals(rows: list[dict]) -> bool:
    ok_all = True
    for model in dict.fromkeys(r["model"] for r in rows):
        one, crowd, busy = [r for r in rows if r["model"] == model]
        scale = crowd["qps"] / one["qps"] if one["qps"] else float("nan")
        slow = busy["p95_ms"] / crowd["p95_ms"] if crowd["p95_ms"] else float("nan")
        errors = sum(r["errors"] for r in (one, crowd, busy))
        ok = scale >= 3 and slow <= 3 and errors == 0
        ok_all &= ok
        print(f"{model} (text encoder: {one['text_encoder']}): {crowd['clients']}-client throughput "
              f"{scale:.1f}x single-client (goal >= 3x; ceiling here {ceiling(one):.1f}x); p95 with describes "
              f"{slow:.2f}x without (goal <= 3x); {errors} errors: {'PASS' if ok else 'FAIL'}")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running app (only its model is measured); default: start one per --models")
    ap.add_argument("--pid", type=int, help="with --url: the app's process id, for its CPU time per query")
    ap.add_argument("--models", default=",".join(MODELS), help="model specs, comma-separated")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--queries", type=int, default=25, help="queries per client in the crowd scenarios")
    ap.add_argument("--single-queries", type=int, default=200, help="queries of the single sequential client")
    ap.add_argument("--describes", type=int, default=3, help="clients describing a video during scenario 3")
    ap.add_argument("--k", type=int, default=10, help="results per query")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "promptswitch-load-cache",
                    help="the app's cache (libraries built for random models are kept here)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    queries = distinct_queries(args.single_queries + 2 * args.clients * args.queries)
    rows: list[dict] = []
    if args.url:
        rows += run_model(args.url, args.pid, args, queries)
    else:
        from bench.app_server import AppServer

        for spec in [s.strip() for s in args.models.split(",") if s.strip()]:
            print(f"starting python app.py --model {spec} ...", flush=True)
            t0 = time.perf_counter()
            server = AppServer(["--model", spec, "--no-fallback", "--cache-dir", str(args.cache_dir)],
                               timeout=1800).start()
            print(f"app answered after {time.perf_counter() - t0:.1f}s at {server.url}", flush=True)
            try:
                rows += run_model(server.url, server.proc.pid, args, queries)
            finally:
                server.stop()
    print(f"\nmachine: {machine()}")
    print(f"raw HTTP (httpx, POST /gradio_api/call/search + event stream); k={args.k}; every query distinct; "
          f"crowd scenarios: {args.clients} clients x {args.queries} queries; single client: {args.single_queries}\n")
    print_table(rows)
    print()
    print_goals(rows)
    for r in rows:
        for e in r["error_samples"]:
            print(f"  error ({r['model']}, {r['scenario']}): {e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
