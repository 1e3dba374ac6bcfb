"""Many readers at once: the running app driven by concurrent sessions.

    python benchmarks/bench_load.py --root /tmp/bench-load                  # 8 websocket + 3 browser sessions
    python benchmarks/bench_load.py --root /tmp/bench-load --sessions 16 --rounds 3 --pairs 5000

Starts ``streamlit run app.py`` headless on 127.0.0.1 (a free port) against a
generated, scored synthetic run (cached under ``--root``) and drives it on
loopback only, with bounded session counts and a time limit:

1. **browser, cold**: one headless Chromium session (Debian's
   ``/usr/bin/chromium`` through Playwright) opens each page once, caches empty.
   A page counts as loaded when its marker text is drawn and Streamlit says
   the script finished (``data-test-script-state="notRunning"``).
2. **websocket, warm**: ``--sessions`` Streamlit sessions at once, each a
   websocket client speaking Streamlit's own protocol (what the browser sends:
   a ``rerun_script`` message per page, then it waits for ``script_finished``),
   opening every page ``--rounds`` times (same feature and pair: cache hits).
   This is the server's response time without browsers competing for the CPU.
3. **websocket, cold**: the sessions open ``/feature`` and ``/pairs`` for a
   different feature and pair each, at the same time (cache misses).
4. **browsers, concurrent**: ``--browsers`` Chromium sessions at once, each
   opening every page (end to end, rendering included).

Reported: median / p95 / max seconds per page and phase, the server's
resident memory (with children) after each phase, and the app's cached data
(``st.cache_data``/``st.cache_resource``) bytes from Streamlit's
``/_stcore/metrics``: shared caches do not grow with the number of sessions
that look at the same views.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core import ScoreConfig, SyntheticConfig, score_run, write_synthetic_run  # noqa: E402
from bilingual_core.run import Run  # noqa: E402
from bilingual_core.storage import RESULTS_ENV  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
MAX_SESSIONS = 32
MAX_BROWSERS = 8
PAGE_TIMEOUT_S = 120.0
_METRIC = re.compile(
    r"^cache_memory_bytes\{(?P<labels>[^}]*)\}\s+(?P<value>[\d.e+]+)", re.MULTILINE
)


@dataclass(frozen=True)
class Visit:
    name: str
    page: str
    """URL path of the page ('' = /)."""
    query: str
    marker: str
    """Text the page draws once its data is shown (browser phases)."""

    @property
    def path(self) -> str:
        return f"/{self.page}?{self.query}"


@dataclass
class Timings:
    by_page: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    bytes_received: int = 0

    def add(self, page: str, seconds: float) -> None:
        self.by_page.setdefault(page, []).append(seconds)


def ensure_run(root: Path, n_pairs: int, d_sae: int) -> str:
    """A scored synthetic run with Gemma Scope-like density, generated once under ``root``."""
    run_id = f"load-{n_pairs}-{d_sae}"
    if not (root / run_id / "features.parquet").exists():
        t = time.perf_counter()
        cfg = SyntheticConfig(
            n_pairs=n_pairs,
            d_sae=d_sae,
            mean_tokens=33.0,
            features_per_token=71.0,
            vocab_size=5000,
            run_id=run_id,
            block_features=256,
        )
        write_synthetic_run(root, cfg, overwrite=True)
        score_run(root, run_id, ScoreConfig())
        print(f"generated and scored {run_id} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return run_id


def visits(run_id: str, feature: int, pair: int) -> list[Visit]:
    q = f"run={run_id}"
    return [
        Visit("/", "", q, f"Run {run_id}"),
        Visit("/curves", "curves", q, "feature rank"),
        Visit("/features", "features", q, "ranked by"),
        Visit("/feature", "feature", f"{q}&feature={feature}", "Where it fires most"),
        Visit("/pairs", "pairs", f"{q}&pair={pair}", "Features firing on this pair"),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total / 2**20


def cache_stats(url: str) -> dict[str, float]:
    """Cached bytes per cached function (st.cache_data / st.cache_resource), from /_stcore/metrics."""
    with urllib.request.urlopen(
        f"{url}/_stcore/metrics?families=cache_memory_bytes", timeout=30
    ) as r:
        text = r.read().decode()
    stats: dict[str, float] = {}
    for m in _METRIC.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if labels.get("cache_type") == "st_session_state":
            continue  # per-session widget state, not cached data
        key = f"{labels.get('cache_type', '?')}:{labels.get('cache', '?')}"
        stats[key] = stats.get(key, 0.0) + float(m["value"])
    return stats


# ----------------------------------------------------------- websocket ---


async def ws_session(
    port: int, plan: list[Visit], rounds: int, timings: Timings, deadline: float
) -> None:
    """One Streamlit session over its websocket: a rerun per page, timed to script_finished."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with websockets.connect(
        f"ws://127.0.0.1:{port}/_stcore/stream",
        subprotocols=["streamlit"],
        max_size=None,
        open_timeout=PAGE_TIMEOUT_S,
    ) as ws:
        for _ in range(rounds):
            for visit in plan:
                if time.monotonic() > deadline:
                    timings.errors.append("time limit reached")
                    return
                msg = BackMsg()
                msg.rerun_script.query_string = visit.query
                msg.rerun_script.page_name = visit.page
                t = time.perf_counter()
                await ws.send(msg.SerializeToString())
                failed = False
                while True:
                    data = await asyncio.wait_for(ws.recv(), PAGE_TIMEOUT_S)
                    timings.bytes_received += len(data)
                    fm = ForwardMsg()
                    fm.ParseFromString(data)
                    kind = fm.WhichOneof("type")
                    if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                        failed |= fm.delta.new_element.WhichOneof("type") == "exception"
                    if (
                        kind == "script_finished"
                        and fm.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN
                    ):
                        break
                if failed:
                    timings.errors.append(f"{visit.name}: the page raised an exception")
                timings.add(visit.name, time.perf_counter() - t)


# ------------------------------------------------------------- browser ---


async def browser_session(
    browser, url: str, plan: list[Visit], timings: Timings, deadline: float
) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    try:
        for visit in plan:
            if time.monotonic() > deadline:
                timings.errors.append("time limit reached")
                return
            t = time.perf_counter()
            try:
                await page.goto(url + visit.path)
                await page.get_by_text(visit.marker, exact=False).first.wait_for(
                    timeout=PAGE_TIMEOUT_S * 1000
                )
                await page.wait_for_selector(
                    '[data-testid="stApp"][data-test-script-state="notRunning"]',
                    timeout=PAGE_TIMEOUT_S * 1000,
                )
            except Exception as exc:  # a timeout: record it, keep the others going
                timings.errors.append(f"{visit.name}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            timings.add(visit.name, time.perf_counter() - t)
    finally:
        await context.close()


async def drive(
    url: str,
    port: int,
    chromium: str | None,
    run_id: str,
    features: list[int],
    pairs: list[int],
    sessions: int,
    rounds: int,
    browsers: int,
    time_limit: float,
    server_pid: int,
) -> dict:
    out: dict = {"phases": {}, "wall_s": {}, "rss_mib": {"idle": rss_mib(server_pid)}, "cache": {}}
    deadline = time.monotonic() + time_limit
    same = visits(run_id, features[0], pairs[0])

    async def phase(name: str, runs) -> None:
        timings = Timings()
        t = time.perf_counter()
        await asyncio.gather(*(run(timings) for run in runs))
        out["wall_s"][name] = time.perf_counter() - t
        out["phases"][name] = timings
        out["rss_mib"][f"after {name}"] = rss_mib(server_pid)
        out["cache"][f"after {name}"] = cache_stats(url)

    async def with_browser(body) -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                await body(browser)
            finally:
                await browser.close()

    if chromium:
        await with_browser(
            lambda b: phase(
                "browser, cold, 1 session", [lambda t: browser_session(b, url, same, t, deadline)]
            )
        )
    await phase(
        f"websocket, warm, {sessions} sessions x {rounds}",
        [lambda t: ws_session(port, same, rounds, t, deadline) for _ in range(sessions)],
    )
    distinct = [
        [v for v in visits(run_id, f, k) if v.name in ("/feature", "/pairs")]
        for f, k in zip(features[1:], pairs[1:], strict=False)
    ][:sessions]
    await phase(
        f"websocket, cold, {len(distinct)} sessions, distinct feature + pair each",
        [lambda t, plan=plan: ws_session(port, plan, 1, t, deadline) for plan in distinct],
    )
    if chromium and browsers:
        await with_browser(
            lambda b: phase(
                f"browsers, {browsers} at once",
                [lambda t: browser_session(b, url, same, t, deadline) for _ in range(browsers)],
            )
        )
    return out


def start_server(root: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, RESULTS_ENV: str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    t0 = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                return time.perf_counter() - t0
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise RuntimeError("streamlit did not start") from None
            time.sleep(0.1)


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.2f} | {p95:.2f} | {ordered[-1]:.2f} | {len(ordered)}"


def report(result: dict, run_id: str, info: dict) -> None:
    print(
        f"\n## Load on `{run_id}`: {info['n_pairs']:,} pairs, {info['d_sae']:,} features, "
        f"{info['activations']:,} activations ({os.cpu_count()} CPU cores shared by server and clients)\n"
    )
    print(f"server up (health check) in {result['server_up_s']:.1f} s\n")
    print(
        "| phase | page | median s | p95 s | max s | loads |\n| --- | --- | ---: | ---: | ---: | ---: |"
    )
    for name, timings in result["phases"].items():
        for page, values in timings.by_page.items():
            print(f"| {name} | {page} | {summary(values)} |")
    print(
        "\n| phase | wall s | page loads | MiB received | failed |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for name, timings in result["phases"].items():
        loads = sum(map(len, timings.by_page.values()))
        print(
            f"| {name} | {result['wall_s'][name]:.1f} | {loads} | {timings.bytes_received / 2**20:.1f} | "
            f"{len(timings.errors)} |"
        )
    print(
        "\n| server resident memory (with children) | MiB | cached data (MiB, functions) |\n| --- | ---: | ---: |"
    )
    for when, mib in result["rss_mib"].items():
        stats = result["cache"].get(when)
        cached = f"{sum(stats.values()) / 2**20:.1f} ({len(stats)})" if stats is not None else "–"
        print(f"| {when} | {mib:.0f} | {cached} |")
    names = list(result["cache"])
    warm = next((n for n in names if n.startswith("after websocket, warm")), None)
    if warm and names.index(warm) > 0:
        before, after = result["cache"][names[names.index(warm) - 1]], result["cache"][warm]
        grown = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
        grown = {k: v for k, v in grown.items() if abs(v) >= 1024}
        print(
            "\ncached data added by the warm sessions (same views as the first session): "
            + (
                ", ".join(f"{k} {v / 2**10:+.0f} KiB" for k, v in sorted(grown.items()))
                or "none: shared"
            )
        )
    for name, timings in result["phases"].items():
        if timings.errors:
            print(f"\n{name}: {len(timings.errors)} failed: " + "; ".join(timings.errors[:3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, required=True, help="directory caching the generated run"
    )
    parser.add_argument(
        "--pairs", type=int, default=2000, help="sentence pairs of the generated run"
    )
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument(
        "--sessions", type=int, default=8, help=f"websocket sessions at once (<= {MAX_SESSIONS})"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="times each websocket session opens every page"
    )
    parser.add_argument(
        "--browsers",
        type=int,
        default=3,
        help=f"browser sessions at once (<= {MAX_BROWSERS}; 0: none)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=300, help="seconds for all the phases together"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    sessions = max(1, min(args.sessions, MAX_SESSIONS))
    browsers = max(0, min(args.browsers, MAX_BROWSERS))
    chromium = shutil.which("chromium")
    if chromium is None:
        print(
            "no chromium on PATH (apt-get install chromium): websocket phases only", file=sys.stderr
        )
    args.root.mkdir(parents=True, exist_ok=True)
    run_id = ensure_run(args.root, args.pairs, args.d_sae)
    run = Run.open(args.root, run_id)
    feats = run.read_pandas("features.parquet", columns=["feature", "bi_rank"]).dropna()
    features = feats.sort_values("bi_rank")["feature"].astype(int).tolist()[: sessions + 1]
    n = run.manifest.n_pairs
    pairs = [(n // 2 + 37 * i) % n for i in range(sessions + 1)]
    info = {
        "n_pairs": n,
        "d_sae": run.manifest.d_sae,
        "activations": run.manifest.scoring.get("n_activation_rows") or 0,
    }

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.root, port)
    try:
        up = wait_healthy(url, proc)
        result = asyncio.run(
            drive(
                url,
                port,
                chromium,
                run_id,
                features,
                pairs,
                sessions,
                args.rounds,
                browsers,
                args.time_limit,
                proc.pid,
            )
        )
        result["server_up_s"] = up
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    report(result, run_id, info)
    if args.json:
        plain = {**result, "phases": {k: v.__dict__ for k, v in result["phases"].items()}}
        args.json.write_text(
            json.dumps(
                {
                    "run": run_id,
                    **info,
                    "sessions": sessions,
                    "rounds": args.rounds,
                    "browsers": browsers,
                    **plain,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
