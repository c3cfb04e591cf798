"""Finding one request in a large prediction log: ``find_request`` vs reading the log and filtering it.

Writes a prediction log of ``--rows`` rows (default 10 million) for one model into ``--root`` (default a
temporary folder): ``--hours`` hour partitions (default 240, ten days) of ``--parts-per-hour`` zstd Parquet part
files each (default 1), with the gateway writer's paths and schema; request ids are uuid4 hex like the gateway's,
inputs a small JSON record. The gateway flushes about once a second under steady traffic and nothing compacts
its parts yet, so a live log has many more parts per hour than one: ``--parts-per-hour 60`` shows what that
costs. Then times, for a request id in the middle of the log and for one that is not in it:

    (a) ours       airflow_mlops.prediction_log.lookup.find_request (reads the request_id column of every
                   part file, then whole rows of the files that hold it)
    (b) baseline   pyarrow.dataset over the same files, ``to_table(filter=request_id == X)`` with every column
                   (what one writes without the two passes), best of ``--repeat``

and prints seconds (best of ``--repeat``) and the ratio. The acceptance target: (a) <= 1 s at 10 million rows
on the project's 2-core machine. Writing the log is not timed.

    .venv/bin/python benchmarks/explain.py [--rows 10000000] [--hours 240] [--parts-per-hour 1] [--root DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np


def write_log(root: Path, rows: int, hours: int, parts: int = 1, seed: int = 7) -> str:
    """The log of model ``bench``; returns a request id written half-way through it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.prediction_log.records import schema

    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    per_hour = -(-rows // hours)
    target = ""
    written = 0
    for h in range(hours):
        n = min(per_hour, rows - written)
        if n <= 0:
            break
        hour = start + timedelta(hours=h)
        raw = rng.bytes(16 * n)
        ids = [raw[i * 16 : (i + 1) * 16].hex() for i in range(n)]
        row_ids = rng.bytes(8 * n)
        if h == hours // 2:
            target = ids[n // 2]
        amounts = rng.gamma(2.0, 40.0, n)
        ts = np.array([int(hour.timestamp() * 1e6)] * n, dtype="int64") + rng.integers(0, 3_600_000_000, n)
        table = pa.table(
            {
                "request_id": ids,
                "ts": pa.array(np.sort(ts), type=pa.timestamp("us", tz="UTC")),
                "model": ["bench"] * n,
                "version": ["3"] * n,
                "role": ["champion"] * n,
                "inputs": [f'{{"amount": {a:.2f}, "merchant_category": "grocery"}}' for a in amounts],
                "output": [f'{{"prediction": {int(a > 150)}, "score": {min(a / 300, 1):.4f}}}' for a in amounts],
                "latency_ms": rng.gamma(2.0, 1.0, n),
                "error": pa.nulls(n, pa.string()),
                "row_id": [row_ids[i * 8 : (i + 1) * 8].hex() for i in range(n)],
            },
            schema=schema("predictions"),
        )
        folder = root / "bench" / "predictions" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        folder.mkdir(parents=True, exist_ok=True)
        step = -(-n // parts)
        for p in range(parts):
            chunk = table.slice(p * step, step)
            pq.write_table(chunk, folder / f"part-{p:08d}-bench.parquet", compression="zstd")
        written += n
    return target


def best(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--hours", type=int, default=240)
    parser.add_argument("--parts-per-hour", type=int, default=1)
    parser.add_argument("--root", default=None, help="write the log here (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    import pyarrow.dataset as ds

    from airflow_mlops.prediction_log import LocalStorage
    from airflow_mlops.prediction_log.lookup import find_request
    from airflow_mlops.prediction_log.reader import _Parts

    with tempfile.TemporaryDirectory(prefix="mlops-explain-bench-") as tmp:
        root = Path(args.root or tmp)
        started = time.perf_counter()
        target = write_log(root, args.rows, args.hours, args.parts_per_hour)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        print(
            f"log: {args.rows:,} rows in {args.hours} hour partitions x {args.parts_per_hour} part files, "
            f"{size / 1e6:.0f} MB (written in {time.perf_counter() - started:.0f} s)"
        )
        storage = LocalStorage(root)
        dataset = _Parts(storage, "bench", "predictions").dataset
        # an absent id inside the ids' range (all zeros would be pruned by the min/max statistics)
        for label, request_id in (("present", target), ("absent", "7f3a9c0e51b64f0b9d7c2e8a41f0c6d2")):
            ours, found = best(args.repeat, lambda rid=request_id: find_request(storage, "bench", rid))
            base, table = best(
                args.repeat, lambda rid=request_id: dataset.to_table(filter=ds.field("request_id") == rid)
            )
            assert len(found) == table.num_rows == (1 if label == "present" else 0), (len(found), table.num_rows)
            print(f"{label:8s} ours {ours:6.3f} s   baseline {base:6.3f} s   baseline/ours {base / ours:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
