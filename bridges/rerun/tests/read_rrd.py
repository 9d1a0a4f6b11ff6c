"""Reads a Rerun recording back with Rerun's own reader (`rerun.chunk.RrdReader`, not rtchunk's code) and prints
its temporal data as JSON, per entity: the `tick` and `controller_tick` sequences, `time` in nanoseconds, the
scalars, and images (their format and pixels as hex), rows in `tick` (else `controller_tick`) order; plus the
static components logged per entity."""

import json
import sys
from collections import defaultdict

import pyarrow as pa
from rerun.chunk import RrdReader


def read(path) -> dict:
    entities = defaultdict(lambda: defaultdict(list))
    static = defaultdict(set)
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        if chunk.is_static:
            static[chunk.entity_path].update(n for n in batch.schema.names if ":" in n)
            continue
        columns = entities[chunk.entity_path]
        for name in batch.schema.names:
            column = batch.column(name)
            if name in ("tick", "controller_tick"):
                columns[name] += column.to_pylist()
            elif name == "time":
                columns[name] += column.cast(pa.int64()).to_pylist()
            elif name == "Scalars:scalars":
                columns["scalars"] += [row[0] for row in column.to_pylist()]
            elif name == "Image:buffer":
                columns["image"] += [bytes(row[0]).hex() for row in column.to_pylist()]
            elif name == "Image:format":
                columns["image_format"] += [row[0] for row in column.to_pylist()]
    out = {}
    for path, columns in entities.items():
        key = "tick" if "tick" in columns else "controller_tick"
        order = sorted(range(len(columns[key])), key=columns[key].__getitem__)
        out[path] = {name: [values[i] for i in order] for name, values in columns.items()}
    return {"entities": out, "static": {path: sorted(names) for path, names in static.items()}}


if __name__ == "__main__":
    json.dump(read(sys.argv[1]), sys.stdout, default=str)
