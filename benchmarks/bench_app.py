"""Speed and memory of the Streamlit explorer on a synthetic run of OPUS Books size.

    python benchmarks/bench_app.py --root /tmp/bench-runs               # full size: 93,470 pairs
    python benchmarks/bench_app.py --root /tmp/bench-runs --scale 0.1   # a tenth, for a quick look

The run (Gemma Scope-like density: about 33 real tokens per sentence, 71
active features per token, d_sae 16384; ~440 million activations at full
size) is generated and scored once and cached under ``--root`` with the same
id and settings as ``bench_scoring.py``, so the two benchmarks share it.
Generating the full size takes tens of minutes and several GB of disk and
memory.

Reported (Markdown table):

* cold start: ``streamlit run app.py`` launched, until the first page has drawn
  in headless Chromium (skipped without Debian's ``chromium``);
* the app server's resident memory after every page was opened;
* the ``explorer.data`` queries behind ``/feature`` and ``/pairs``, called
  directly: median of ``--repeats`` cold calls (distinct arguments, so no cache
  hit) and of warm calls (cache hits);
* ``/features`` after a filter change, as an AppTest rerun of the page (the
  whole script: loaders hit the cache, filters, sort, table serialisation);
* ``/feature`` (density, firing-rate curve, quantile examples, neighbours)
  the same way: first render of a median feature, rerun after a setting.

Goal (issue 4): every data query under 0.5 s, the app under 2 GiB resident.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core.run import Run  # noqa: E402
from bilingual_core.storage import RESULTS_ENV  # noqa: E402

FULL_OPUS_PAIRS = 93_470
D_SAE = 16_384
FEATURES_PER_TOKEN = 71.0
MEAN_TOKENS = 33.0
GOAL_QUERY_S = 0.5
GOAL_RSS_GIB = 2.0


_GENERATE = """
import sys, time
sys.path.insert(0, {root!r})
from bilingual_core import ScoreConfig, SyntheticConfig, score_run, write_synthetic_run
cfg = SyntheticConfig(n_pairs={n_pairs}, d_sae={d_sae}, mean_tokens={tokens}, features_per_token={fpt} * 1.09,
                      vocab_size=5000, run_id={run_id!r}, block_features=256)
t = time.perf_counter()
if {generate}:
    write_synthetic_run({out!r}, cfg)
    print(f"generated {{cfg.run_id}} in {{time.perf_counter() - t:.0f}}s", file=sys.stderr)
t = time.perf_counter()
score_run({out!r}, cfg.run_id, ScoreConfig())
print(f"scored {{cfg.run_id}} in {{time.perf_counter() - t:.0f}}s", file=sys.stderr)
"""


def ensure_run(root: Path, n_pairs: int) -> Path:
    """The scored benchmark run under ``root`` (same id and settings as bench_scoring.py),
    generated in a child process so this one's memory is the app code's alone."""
    run_id = f"synth-{n_pairs}-{D_SAE}-{FEATURES_PER_TOKEN:g}"
    path = root / run_id
    if (path / "features.parquet").exists():
        return path
    code = _GENERATE.format(
        root=str(ROOT),
        n_pairs=n_pairs,
        d_sae=D_SAE,
        tokens=MEAN_TOKENS,
        fpt=FEATURES_PER_TOKEN,
        run_id=run_id,
        out=str(root),
        generate=not (path / "manifest.json").exists(),
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def median_time(fn: Callable[[int], object], repeats: int) -> float:
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def query_timings(run_path: Path, repeats: int) -> tuple[list[tuple[str, float, float]], dict]:
    """(name, cold median s, warm median s) for each loader the pages call."""
    import streamlit.logger

    streamlit.logger.set_log_level("error")
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from explorer import data, table

    loc = str(run_path)
    token = f"bench-{time.time()}"  # a fresh token: nothing cached from an earlier call
    run = Run.open(loc)
    langs = run.languages
    n_pairs = run.manifest.n_pairs
    feats = data.features(loc, token)
    alive = feats[feats["alive"]]
    busiest = alive.sort_values("n_fire_en", ascending=False)["feature"].astype(int).tolist()
    middle = alive.sort_values("n_fire_en")["feature"].astype(int).tolist()[len(alive) // 2 :]
    step = max(1, n_pairs // (repeats + 1))
    pairs = [(i * step + 17) % n_pairs for i in range(repeats * 2)]
    rows: list[tuple[str, float, float]] = []

    def measure(name: str, call: Callable[[int], object]) -> None:
        cold = median_time(call, repeats)
        warm = median_time(lambda _i: call(0), repeats) if repeats else float("nan")
        rows.append((name, cold, warm))

    t = time.perf_counter()
    feats2 = data.features(loc, token + "-cold")
    rows.append(("features.parquet (whole table)", time.perf_counter() - t, 0.0))
    del feats2
    measure(
        "/feature: profile of a busiest feature (WHERE feature = F)",
        lambda i: data.feature_profile(loc, token, busiest[i]),
    )
    measure(
        "/feature: profile of a median feature",
        lambda i: data.feature_profile(loc, token, middle[i]),
    )

    def heatmaps(i: int) -> None:
        profile = data.feature_profile(loc, token, middle[i])
        top = table.top_pairs(profile.sentence_max, langs, table.BY_BOTH, 8)
        ids = tuple(int(p) for p in top["pair_id"])
        data.pair_tokens(loc, token, ids)
        data.token_activations(loc, token, (middle[i],), ids)

    # The profile is cached by the row above; this times the 8 heatmaps' reads.
    measure("/feature: tokens + activations of its top 8 pairs", heatmaps)
    from explorer import feature_parts

    t = time.perf_counter()
    data.firing_curve(loc, token, n_pairs)
    rows.append(
        ("/feature: firing-rate curve of all features (once per run)", time.perf_counter() - t, 0.0)
    )
    measure(
        "/feature: its place on the firing-rate curve",
        lambda i: data.firing_curve(loc, token, n_pairs).ranks.query(f"feature == {middle[i]}"),
    )

    def examples(i: int) -> None:
        profile = data.feature_profile(loc, token, middle[i])
        maxima = feature_parts.pair_maxima(
            profile.sentence_max, langs, table.BY_BOTH, every_language=True
        )
        groups = feature_parts.example_groups(maxima, 8, 4, 2, seed=middle[i])
        ids = tuple(int(p) for g in groups for p in g.pairs["pair_id"])
        data.pair_tokens(loc, token, ids)
        data.token_activations(loc, token, (middle[i],), ids)

    measure("/feature: top 8 + quantile examples (2 per bin), tokens + activations", examples)
    measure(
        "/feature: co-firing neighbours of a busiest feature (sentence_max)",
        lambda i: data.cofiring(loc, token, busiest[i]),
    )
    measure(
        "/feature: co-firing neighbours of a median feature",
        lambda i: data.cofiring(loc, token, middle[i]),
    )
    _ensure_neighbours(run_path, run.manifest.d_sae)
    measure(
        "/feature: decoder neighbours (neighbours.parquet, benchmark-made)",
        lambda i: data.decoder_neighbours(loc, token, middle[i]),
    )
    measure("/pairs: texts of one pair", lambda i: data.pair_texts(loc, token, (pairs[i],)))
    measure("/pairs: tokens of one pair", lambda i: data.pair_tokens(loc, token, (pairs[i],)))
    measure(
        "/pairs: features firing on one pair (sentence_max)",
        lambda i: data.pair_features(loc, token, pairs[i]),
    )

    def pair_heatmaps(i: int) -> None:
        firing = table.pair_feature_table(data.pair_features(loc, token, pairs[i + repeats]), langs)
        chosen = tuple(sorted(int(f) for f in firing["feature"].head(3)))
        data.token_activations(loc, token, chosen, (pairs[i + repeats],))

    measure("/pairs: firing features + 3 heatmaps", pair_heatmaps)
    words = ["casa", "amigo", "house", "noche", "word12", "palabra9", "river", "luna"]
    measure(
        "/pairs: search pairs by text",
        lambda i: data.search_pairs(loc, token, words[i % len(words)]),
    )
    measure(
        "/features: co-activation at one threshold",
        lambda i: data.coactivation(
            loc, token, ["mean", "q0.5", "q0.75", "q0.95", "q0.25", "q0.05"][i % 6]
        ),
    )
    t = time.perf_counter()
    index = data.top_tokens(loc, token)
    rows.append(
        ("/features: token search index (once per run and process)", time.perf_counter() - t, 0.0)
    )
    info = {
        "n_pairs": n_pairs,
        "d_sae": run.manifest.d_sae,
        "activations": run.manifest.scoring.get("n_activation_rows"),
        "median_feature": middle[0],
        "busiest_feature_rows": int(
            feats.loc[feats["feature"] == busiest[0], [f"n_tokens_{lang}" for lang in langs]]
            .to_numpy()
            .sum()
        ),
        "token_index_rows": len(index),
        "bench_process_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return rows, info


def _ensure_neighbours(run_path: Path, d_sae: int, k: int = 10) -> None:
    """Write a stand-in neighbours.parquet (random neighbours, decreasing
    cosines) when the run has none, so its query can be timed."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = run_path / "neighbours.parquet"
    if path.exists():
        return
    rng = np.random.default_rng(0)
    feature = np.repeat(np.arange(d_sae, dtype=np.int32), k)
    table = pa.table(
        {
            "feature": feature,
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), d_sae),
            "neighbour": rng.integers(0, d_sae, d_sae * k, dtype=np.int32),
            "cosine": np.tile(np.linspace(0.9, 0.3, k, dtype=np.float32), d_sae),
        }
    )
    pq.write_table(table, path, row_group_size=8192 * k)


def feature_page_timings(
    root: Path, run_id: str, feature: int, repeats: int
) -> tuple[float, float]:
    """(first render s, median rerun s after an example setting changed) of /feature via AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ[RESULTS_ENV] = str(root)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["run"] = run_id
    at.run()
    t = time.perf_counter()
    at.switch_page("views/feature.py")
    at.query_params.update({"run": run_id, "feature": str(feature)})
    at.run()
    first = time.perf_counter() - t
    if at.exception:
        raise RuntimeError(at.exception)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        at.slider(key="feature_per_bin").set_value(i % 3 + 1).run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(at.exception)
    return first, statistics.median(times)


def features_rerun(root: Path, run_id: str, repeats: int) -> tuple[float, float]:
    """(first render s, median rerun s after a filter change) of /features via AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ[RESULTS_ENV] = str(root)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["run"] = run_id
    at.run()
    t = time.perf_counter()
    at.switch_page("views/features.py").run()
    first = time.perf_counter() - t
    if at.exception:
        raise RuntimeError(at.exception)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        at.number_input(key="features_minpairs").set_value(i + 1).run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(at.exception)
    return first, statistics.median(times)


def _rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def browser_timings(root: Path, run_id: str, n_pairs: int) -> dict | None:
    """Cold start to the first drawn page and the server's memory after every page."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=ROOT,
        env={**os.environ, RESULTS_ENV: str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out: dict = {}
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise RuntimeError("streamlit did not start") from None
                time.sleep(0.05)
        out["server_up_s"] = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            visits = [
                ("first page (/)", f"/?run={run_id}", f"Run {run_id}"),
                ("/curves", f"/curves?run={run_id}", "feature rank"),
                ("/features", f"/features?run={run_id}", "ranked by"),
                ("/feature", f"/feature?run={run_id}", "Examples across the activation range"),
                (
                    "/pairs",
                    f"/pairs?run={run_id}&pair={n_pairs // 2}",
                    "Features firing on this pair",
                ),
                (
                    "/features token search (builds the index)",
                    f"/features?run={run_id}&tok=casa",
                    "token search",
                ),
            ]
            for name, path, text in visits:
                t = time.perf_counter()
                page.goto(url + path)
                page.get_by_text(text, exact=False).first.wait_for(timeout=600_000)
                out[f"page {name} s"] = time.perf_counter() - t
                out[f"rss {name}"] = _rss_mib(proc.pid)[0]
                if name == "first page (/)":
                    out["cold_start_s"] = time.perf_counter() - t0
            browser.close()
        out["server_rss_mib"], out["server_peak_rss_mib"] = _rss_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, required=True, help="directory caching the generated run(s)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of OPUS Books' 93,470 pairs"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no-browser", action="store_true", help="skip the cold start and server memory"
    )
    args = parser.parse_args()
    n_pairs = max(10, round(FULL_OPUS_PAIRS * args.scale))
    args.root.mkdir(parents=True, exist_ok=True)
    run_path = ensure_run(args.root, n_pairs)
    run_id = run_path.name

    browser = None if args.no_browser else browser_timings(args.root, run_id, n_pairs)
    rows, info = query_timings(run_path, args.repeats)
    first, rerun = features_rerun(args.root, run_id, args.repeats)
    page_first, page_rerun = feature_page_timings(
        args.root, run_id, info["median_feature"], args.repeats
    )

    print(
        f"\n## Explorer on `{run_id}`: {info['n_pairs']:,} pairs, {info['d_sae']:,} features, "
        f"{info['activations']:,} activations\n"
    )
    if browser:
        print("| app server (headless Chromium) | value |\n| --- | ---: |")
        print(
            f"| cold start: process launched → first page drawn | {browser['cold_start_s']:.2f} s |"
        )
        for key, value in browser.items():
            if key.startswith("page "):
                print(
                    f"| {key.removeprefix('page ').removesuffix(' s')} (fresh session, cold caches) | {value:.2f} s |"
                )
        print(f"| server resident memory after the five pages | {browser['rss /pairs']:.0f} MiB |")
        print(
            f"| server resident memory at the end (token index built) | {browser['server_rss_mib']:.0f} MiB "
            f"(peak {browser['server_peak_rss_mib']:.0f} MiB; goal < {GOAL_RSS_GIB:g} GiB) |\n"
        )
    print("| /features page (AppTest, whole script) | seconds |\n| --- | ---: |")
    print(
        f"| first render | {first:.3f} |\n| rerun after a filter change (median) | {rerun:.3f} |\n"
    )
    print("| /feature page, median feature (AppTest, whole script) | seconds |\n| --- | ---: |")
    print(
        f"| first render (cold caches for this feature) | {page_first:.3f} |\n"
        f"| rerun after an example setting changed (median) | {page_rerun:.3f} |\n"
    )
    print(f"| data query (explorer/data.py, median of {args.repeats}) | cold s | warm s | goal |")
    print("| --- | ---: | ---: | --- |")
    for name, cold, warm in rows:
        one_off = "once" in name or "whole table" in name
        mark = "" if one_off else ("ok" if cold < GOAL_QUERY_S else "SLOW")
        warm_text = "" if one_off else f"{warm:.4f}"
        print(f"| {name} | {cold:.3f} | {warm_text} | {mark} |")
    print(
        f"\nbusiest feature: {info['busiest_feature_rows']:,} activations; token index: "
        f"{info['token_index_rows']:,} rows; benchmark process peak RSS {info['bench_process_maxrss_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "run": run_id,
                    "browser": browser,
                    "features_first_s": first,
                    "features_rerun_s": rerun,
                    "feature_page_first_s": page_first,
                    "feature_page_rerun_s": page_rerun,
                    "queries": rows,
                    **info,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
