"""Scoring speed, peak memory and storage size on synthetic runs.

    python benchmarks/bench_scoring.py --root /tmp/bench-runs            # post size + full OPUS size
    python benchmarks/bench_scoring.py --root /tmp/bench-runs --sizes 500 10000 --repeats 3
    python benchmarks/bench_scoring.py --sizes 4674 --repeats 1 --duckdb   # beside a DuckDB query
    python benchmarks/bench_scoring.py --sizes 4674 --compare /tmp/old-checkout  # before/after

Each size is a synthetic run with Gemma Scope-like density (about 33 real
tokens per sentence and 71 active features per token, d_sae 16384), generated
once and cached under ``--root``. Scoring runs in a fresh subprocess per repeat
so that peak resident memory (ru_maxrss) is the scorer's alone; CPU seconds
(user + system) are printed beside wall seconds, as they move less on a
shared machine. Prints a
Markdown table: median seconds, peak RSS, activations, and the size of
activations.parquet in bytes per token against the dense float32 layout of the
post's published dataset (16,384 x 4 bytes per token).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bilingual_core import SyntheticConfig, write_synthetic_run  # noqa: E402
from bilingual_core.run import Run  # noqa: E402

FULL_OPUS_PAIRS = 93_470

_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from bilingual_core import ScoreConfig, score_run
t = time.perf_counter()
result = score_run({run!r}, config=ScoreConfig())
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "thresholds": result.scoring["seconds_thresholds"],
                   "compute": result.scoring["seconds"],
                   "cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
                   "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def ensure_run(root: Path, n_pairs: int, d_sae: int, fpt: float, tokens: float) -> Path:
    run_id = f"synth-{n_pairs}-{d_sae}-{fpt:g}"
    path = root / run_id
    if (path / "manifest.json").exists():
        return path
    t = time.perf_counter()
    # Span capping and de-duplication lose ~8% of the drawn activations;
    # ask for a little more so the realised density is close to ``fpt``.
    cfg = SyntheticConfig(
        n_pairs=n_pairs,
        d_sae=d_sae,
        mean_tokens=tokens,
        features_per_token=fpt * 1.09,
        vocab_size=5000,
        run_id=run_id,
        block_features=256,
    )
    write_synthetic_run(root, cfg)
    print(f"generated {run_id} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return path


# The plain-SQL way to get the blog score from activations.parquet (two
# languages): per-sentence maxima, a log-sum-exp softmax per (feature,
# language) with the silent pairs as one term, the JSD over the pairs where
# either language fires plus the silent pairs' share, idaf and Jaccard.
DUCKDB_SQL = """
WITH m AS (SELECT feature, pair_id, lang::VARCHAR AS lang, max(activation)::DOUBLE AS q
           FROM read_parquet('{run}/activations.parquet') GROUP BY ALL),
norm AS (SELECT feature, lang, max(q) AS top, count(*) AS fired FROM m GROUP BY ALL),
logz AS (SELECT m.feature, m.lang, any_value(top) + ln(sum(exp(q - top))
                + ({n} - any_value(fired)) * exp(-any_value(top))) AS lz, any_value(fired) AS fired
         FROM m JOIN norm USING (feature, lang) GROUP BY ALL),
side AS (SELECT feature,
                coalesce(max(lz) FILTER (lang = 'en'), ln({n})) AS lz_a,
                coalesce(max(lz) FILTER (lang = 'es'), ln({n})) AS lz_b,
                coalesce(max(fired) FILTER (lang = 'en'), 0) AS fired_a,
                coalesce(max(fired) FILTER (lang = 'es'), 0) AS fired_b
         FROM logz GROUP BY feature),
wide AS (SELECT feature, pair_id,
                coalesce(max(q) FILTER (lang = 'en'), 0) AS qa,
                coalesce(max(q) FILTER (lang = 'es'), 0) AS qb
         FROM m GROUP BY ALL),
prob AS (SELECT feature, exp(qa - lz_a) AS pa, exp(qb - lz_b) AS pb, qa > 0 AND qb > 0 AS both_fire
         FROM wide JOIN side USING (feature)),
per AS (SELECT feature, count(*) AS n_any, sum(both_fire::INT) AS n_both,
               sum(pa * ln(2 * pa / (pa + pb)) + pb * ln(2 * pb / (pa + pb))) AS kl
        FROM prob GROUP BY feature)
SELECT per.feature,
       (kl + ({n} - n_any) * (exp(-lz_a) * ln(2 * exp(-lz_a) / (exp(-lz_a) + exp(-lz_b)))
                            + exp(-lz_b) * ln(2 * exp(-lz_b) / (exp(-lz_a) + exp(-lz_b))))) / 2 AS jsd,
       2.0 * {n} / (fired_a + fired_b) AS idaf, n_both::DOUBLE / n_any AS jaccard
FROM per JOIN side USING (feature)
"""

_DUCKDB_CHILD = """
import json, resource, sys, time
import duckdb
sql, threads = sys.stdin.read(), {threads}
con = duckdb.connect()
con.execute(f"SET threads={{threads}}")
con.execute("SET enable_progress_bar = false")
t = time.perf_counter()
rows = len(con.execute(sql).fetchall())
print(json.dumps({{"seconds": time.perf_counter() - t, "features": rows,
                   "cpu": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
                   "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def duckdb_once(run: Path, threads: int = 2) -> dict:
    """DUCKDB_SQL on ``run`` in a fresh process (so its peak RSS is its own)."""
    n = Run.open(run).manifest.n_pairs
    out = subprocess.run(
        [sys.executable, "-c", _DUCKDB_CHILD.format(threads=threads)],
        input=DUCKDB_SQL.format(run=str(run), n=n),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(next(x for x in reversed(out.stdout.splitlines()) if x.startswith("{")))


def score_once(run: Path, code: Path = ROOT) -> dict:
    """Score ``run`` in a fresh process with the ``bilingual_core`` found under ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(code), run=str(run))],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(next(x for x in reversed(out.stdout.splitlines()) if x.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench-out/runs"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, FULL_OPUS_PAIRS])
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--features-per-token", type=float, default=71.0)
    parser.add_argument("--tokens-per-sentence", type=float, default=33.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--duckdb",
        action="store_true",
        help="also time a plain DuckDB query (2 threads) on each run, alternating with the "
        "scorer repeat by repeat, and print the ratio",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="*",
        default=[],
        help="other checkouts (directories holding a bilingual_core package) to time on the "
        "same runs, alternating with this one repeat by repeat",
    )
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    rows = []
    duck: list[tuple] = []
    compared: list[tuple] = []
    for n in args.sizes:
        run = ensure_run(
            args.root, n, args.d_sae, args.features_per_token, args.tokens_per_sentence
        )
        manifest = Run.open(run).manifest
        n_tokens = manifest.extraction["n_tokens"]
        n_act = manifest.extraction["n_activations"]
        size = (run / "activations.parquet").stat().st_size
        results, others = [], {c: [] for c in args.compare}
        db: list[dict] = []
        loads = [os.getloadavg()[0]]
        # Alternate repeat by repeat, so a change in the machine's load hits all alike.
        for _ in range(args.repeats):
            results.append(score_once(run))
            for code in args.compare:
                others[code].append(score_once(run, code))
            if args.duckdb:
                db.append(duckdb_once(run))
            loads.append(os.getloadavg()[0])
        if args.compare:
            score_once(run)  # leave the run scored by this checkout
        for code, rs in [(ROOT, results), *others.items()]:
            compared.append(
                (
                    n,
                    code,
                    statistics.median(r["seconds"] for r in rs),
                    statistics.median(r["cpu"] for r in rs),
                    max(r["maxrss_kb"] for r in rs) / 2**20,
                )
            )
        secs = statistics.median(r["seconds"] for r in results)
        pass_s = statistics.median(r["thresholds"] for r in results)
        rss = max(r["maxrss_kb"] for r in results) / 2**20
        rows.append((n, n_tokens, n_act, secs, pass_s, rss, size, size / n_tokens))
        print(
            f"{n:,} pairs: 1-minute load average {min(loads):.1f}-{max(loads):.1f} "
            "(before and after each repeat)",
            file=sys.stderr,
        )
        if args.duckdb:
            duck.append(
                (
                    n,
                    n_act,
                    secs,
                    rss,
                    statistics.median(r["seconds"] for r in db),
                    max(r["maxrss_kb"] for r in db) / 2**20,
                    statistics.median(r["cpu"] for r in results),
                    statistics.median(r["cpu"] for r in db),
                )
            )
    print(
        f"\nscoring on {os.cpu_count()} cores, median of {args.repeats} (peak RSS: max over repeats)\n"
    )
    print(
        "| pairs | tokens | activations | score s (median) | of which thresholds s | peak RSS GiB "
        "| activations.parquet MB | bytes/token | dense bytes/token | dense/ours |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    dense = 16384 * 4
    for n, t, a, s, p, r, size, bpt in rows:
        print(
            f"| {n:,} | {t:,} | {a:,} | {s:.2f} | {p:.2f} | {r:.2f} | {size / 1e6:.1f} | {bpt:.0f} "
            f"| {dense:,} | {dense / bpt:.0f}x |"
        )

    if compared and args.compare:
        print("\n| pairs | code | score s (median) | CPU s (median) | peak RSS GiB |")
        print("|---:|---|---:|---:|---:|")
        for n, code, sec, cpu, r in compared:
            print(f"| {n:,} | {code} | {sec:.2f} | {cpu:.2f} | {r:.2f} |")
    if duck:
        print(
            "\n| pairs | activations | scorer s | scorer CPU s | scorer GiB | DuckDB s | DuckDB CPU s "
            "| DuckDB GiB | DuckDB s / scorer s | DuckDB CPU / scorer CPU |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n, a, sec, r, ds, dr, cpu, dcpu in duck:
            print(
                f"| {n:,} | {a:,} | {sec:.2f} | {cpu:.2f} | {r:.2f} | {ds:.2f} | {dcpu:.2f} "
                f"| {dr:.2f} | {ds / sec:.2f}x | {dcpu / cpu:.2f}x |"
            )


if __name__ == "__main__":
    main()
