"""The top features of a run by co-activation evidence and by the blog score, with their tokens.

    python benchmarks/top_features.py --run results/gemma3-en-es-l9 [--n 20] [--min-pairs 3]

Prints two Markdown tables (docs/training.md): the ``n`` features with the
most negative ``coact_log10p`` (hypergeometric evidence that the languages'
firing sentences overlap more than chance) among those firing in both
languages of at least ``--min-pairs`` pairs, and the ``n`` best by the blog
``bi_rank``. Each row shows the pairs where the feature fires in every
language and, per language, the tokens it fires on most often (count of
firing positions), so a reader can judge whether the feature is bilingual.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def top_tokens(
    run: Path, features: list[int], languages: list[str], per_lang: int = 4
) -> dict[int, dict[str, str]]:
    """Per feature and language, its most frequent firing tokens as ``'tok'×count`` text."""
    table = pq.read_table(run / "activations.parquet", filters=[("feature", "in", features)])
    acts = table.to_pandas()
    tokens = pd.read_parquet(
        run / "tokens.parquet", columns=["pair_id", "lang", "position", "token"]
    )
    for frame in (acts, tokens):
        frame["lang"] = frame["lang"].astype(str)
    merged = acts.merge(tokens, on=["pair_id", "lang", "position"])
    out: dict[int, dict[str, str]] = {f: {} for f in features}
    for (feature, lang), group in merged.groupby(["feature", "lang"]):
        counts = group["token"].value_counts().head(per_lang)
        out[int(feature)][lang] = ", ".join(
            f"`{t.strip() or repr(t)}`×{n}" for t, n in counts.items()
        )
    for f in features:
        for lang in languages:
            out[f].setdefault(lang, "–")
    return out


def table(run: Path, rows: pd.DataFrame, languages: list[str], title: str) -> str:
    tops = top_tokens(run, rows["feature"].astype(int).tolist(), languages)
    head = ["#", "feature", "pairs (all langs)", "coact_log10p", "bi_rank"] + [
        f"top tokens {lang}" for lang in languages
    ]
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows.itertuples(index=False), 1):
        f = int(r.feature)
        rank = "–" if pd.isna(r.bi_rank) else str(int(r.bi_rank))
        cells = [str(i), str(f), str(int(r.n_intersection)), f"{r.coact_log10p:.1f}", rank]
        cells += [tops[f][lang] for lang in languages]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--min-pairs", type=int, default=3)
    args = parser.parse_args()
    import json

    languages = json.loads((args.run / "manifest.json").read_text())["languages"]
    features = pd.read_parquet(args.run / "features.parquet")
    coact = pq.read_table(args.run / "coactivation.parquet", filters=[("threshold", "=", "any")])
    coact = coact.select(["feature", "n_intersection"]).to_pandas()
    frame = features.merge(coact, on="feature", how="left").fillna({"n_intersection": 0})
    evidence = frame[(frame["n_intersection"] >= args.min_pairs) & frame["alive"]]
    evidence = evidence.sort_values(["coact_log10p", "feature"]).head(args.n)
    blog = frame.dropna(subset=["bi_rank"]).sort_values("bi_rank").head(args.n)
    print(
        table(
            args.run,
            evidence,
            languages,
            f"Top {args.n} by co-activation evidence "
            f"(coact_log10p, at least {args.min_pairs} co-firing pairs)",
        )
    )
    print()
    print(table(args.run, blog, languages, f"Top {args.n} by the blog score (bi_rank)"))
    alive = int(features["alive"].sum())
    print(
        f"\n{alive} of {len(features)} features alive (fire in every language); "
        f"{int((frame['n_intersection'] >= args.min_pairs).sum())} co-fire in at least {args.min_pairs} pairs"
    )


if __name__ == "__main__":
    main()
