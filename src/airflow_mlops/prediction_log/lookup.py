"""Find one request in the prediction log without reading the log: the rows of a request id, wherever they are.

Request ids are random (``uuid4`` hex, or the client's ``X-Request-ID``), so no partition or row-group statistic
narrows the search. The scan is in two passes: the first reads only the ``request_id`` column of every part
file (about 33 bytes a row) and notes the files with a match; the second reads the whole rows of those files
only. A batch request's rows are ``<request id>#<i>``; they are found by the request id too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_mlops.exceptions import DataError
from airflow_mlops.prediction_log.reader import _Parts, _scan, _to_frame
from airflow_mlops.prediction_log.records import ROW_ID, Kind, columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.dataset as ds

    from airflow_mlops.prediction_log.storage import Storage

__all__ = ["find_request"]

#: Longest request id looked up (the gateway keeps what a client sends in ``X-Request-ID``; we do not scan for
#: more than this).
MAX_REQUEST_ID = 256


def _matches(request_id: str) -> ds.Expression:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    column = ds.field("request_id")
    return (column == request_id) | pc.starts_with(column, pattern=f"{request_id}#")


def find_request(storage: Storage, model: str, request_id: str, kind: Kind = "predictions") -> pd.DataFrame:
    """Every row of ``request_id`` in ``model``'s prediction log (or its ``feedback``), sorted by time.

    :raises ValueError: the request id is empty or longer than :data:`MAX_REQUEST_ID`.
    """
    import pyarrow as pa

    if not request_id or len(request_id) > MAX_REQUEST_ID:
        raise ValueError(f"request id: expected 1 to {MAX_REQUEST_ID} characters, got {len(request_id)}")
    parts = _Parts(storage, model, kind)
    wanted = _matches(request_id)
    names = [*columns(parts.kind), ROW_ID]
    try:
        scanner = parts.dataset.scanner(columns=["request_id"], filter=wanted, use_threads=True)
        hits = {batch.fragment.path for batch in scanner.scan_batches() if batch.record_batch.num_rows}
        found = [f for f in parts.dataset.get_fragments() if f.path in hits]
        tables = [f.to_table(schema=parts.dataset.schema, columns=names, filter=wanted) for f in found]
    except (pa.ArrowException, OSError) as exc:  # name the part file that cannot be read, as every reader does
        _scan(parts.dataset, wanted, parts.kind, parts.display, ["request_id"])
        raise DataError(f"Cannot search the prediction log of {model!r} ({kind}): {exc}") from exc
    table = pa.concat_tables(tables) if tables else parts.dataset.schema.empty_table().select(names)
    return _to_frame(table, parts.kind)
