"""Sort a run's activations into the contract order, for runs written by other tools."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from .errors import RunFormatError
from .reduce import check_schema, lang_indices
from .run import Run
from .schema import ACTIVATION_ROW_GROUP, ACTIVATIONS, ACTIVATIONS_SCHEMA, MANIFEST
from .storage import RunWriter, activation_writer, open_root


def sorted_activations(run: Run) -> pa.Table:
    """The activation table sorted by (feature, pair_id, lang in manifest order, position).

    Holds the whole table in memory (about 17 bytes per activation), which is
    fine for the post's 500-pair sample; extraction in this project writes the
    sorted order directly and never needs this.
    """
    check_schema(run.parquet(ACTIVATIONS), ACTIVATIONS)
    table = run.read(ACTIVATIONS, columns=[c.name for c in ACTIVATIONS_SCHEMA])
    li = lang_indices(table.column("lang"), run.languages, ACTIVATIONS)
    cols = {
        name: table.column(name).to_numpy()
        for name in ("pair_id", "position", "feature", "activation")
    }
    order = np.lexsort((cols["position"], li, cols["pair_id"], cols["feature"]))
    lang_dict = pa.array(run.languages, pa.string())
    return pa.table(
        {
            "pair_id": pa.array(cols["pair_id"][order].astype(np.int32)),
            "lang": pa.DictionaryArray.from_arrays(pa.array(li[order], pa.int8()), lang_dict),
            "position": pa.array(cols["position"][order].astype(np.int32)),
            "feature": pa.array(cols["feature"][order].astype(np.int32)),
            "activation": pa.array(cols["activation"][order].astype(np.float32)),
        },
        schema=ACTIVATIONS_SCHEMA,
    )


def sort_run_activations(location: str | os.PathLike[str]) -> int:
    """Rewrite ``activations.parquet`` of the run at ``location`` in sorted order (atomically).

    Returns the number of rows. The run's other files are carried over unchanged.
    """
    fs, path = open_root(location)
    root, run_id = path.rsplit("/", 1)
    run = Run.open_fs(fs, path)
    if not run.has(ACTIVATIONS):
        raise RunFormatError(ACTIVATIONS, None, f"missing from {path}")
    table = sorted_activations(run)
    keep = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    keep = [name for name in keep if name not in (ACTIVATIONS, MANIFEST)]
    with RunWriter(root, run_id, overwrite=True, keep_from=path, keep_files=keep, fs=fs) as writer:
        with fs.open(writer.path(ACTIVATIONS), "wb") as handle, activation_writer(handle) as pw:
            pw.write_table(table, row_group_size=ACTIVATION_ROW_GROUP)
        writer.commit(run.manifest)
    return table.num_rows
