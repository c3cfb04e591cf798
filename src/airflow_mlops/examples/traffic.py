"""Example client traffic with labels fed back: what callers and a labelling process send to the gateway.

``make demo`` runs one :class:`TrafficGenerator` thread; ``make up`` runs ``airflow-mlops traffic`` as its own
process, one thread per model, so the Models page, the canary checks and the monitor see live requests.
Each generator replays rows of a CSV file (features plus the model's target column): the row without the
target goes to ``POST /v1/models/<model>/predict``, the target comes back as feedback for the answer's
``request_id``. While a model has no champion the gateway answers 404/503 and the generator waits.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Answers that mean "nothing to call yet" (no champion, model still loading): wait, then try again.
_NOT_YET = frozenset({404, 503})
_NOT_YET_WAIT_S = 2.0


class TrafficGenerator(threading.Thread):
    """Rows of ``frame`` at ``rate`` requests per second to one model, each label sent back as feedback.

    :param url: The gateway's base URL.
    :param model: The model's name on the gateway.
    :param frame: Rows to replay, with the ``target`` column (dropped from the request, sent as feedback).
    :param target: The label column of ``frame``.
    :param rate: Requests per second (``None``: as fast as answers come, with a 10 ms pause).
    """

    def __init__(self, url: str, model: str, frame: pd.DataFrame, target: str, *, rate: float | None = None) -> None:
        super().__init__(daemon=True, name=f"traffic-{model}")
        self.url = url
        self.model = model
        self.target = target
        self.interval = 1.0 / rate if rate else 0.01
        self.use(frame)
        #: Values written over a share of the rows (e.g. a category the model never saw).
        self.override: dict[str, Any] = {}
        self.override_share = 0.0
        self.statuses: dict[int, int] = {}
        self.sent = 0
        self._halt = threading.Event()

    def use(self, frame: pd.DataFrame) -> None:
        """Send these rows from now on."""
        if self.target not in frame.columns:
            raise ValueError(f"traffic for {self.model}: the rows have no target column {self.target!r}")
        frame = frame.copy()
        labels = frame.pop(self.target).tolist()
        self.rows, self.labels = frame.to_dict("records"), labels

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self._halt.is_set():
                rows, labels = self.rows, self.labels
                row = dict(rows[i % len(rows)])
                if self.override_share and i % round(1 / self.override_share) == 0:
                    row.update(self.override)
                try:
                    answer = client.post(f"/v1/models/{self.model}/predict", json={"records": row})
                except httpx.HTTPError:  # the gateway restarts or is not up yet
                    self._halt.wait(_NOT_YET_WAIT_S)
                    continue
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                if answer.status_code in _NOT_YET:
                    self._halt.wait(_NOT_YET_WAIT_S)
                    continue
                if answer.status_code == 200:
                    feedback = {"request_id": answer.json()["request_id"], "label": labels[i % len(labels)]}
                    try:
                        client.post(f"/v1/models/{self.model}/feedback", json=feedback)
                    except httpx.HTTPError:
                        pass
                self.sent += 1
                i += 1
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def generators_from_folder(url: str, config_dir: Path, rows_dir: Path, rate: float) -> list[TrafficGenerator]:
    """One generator per ``<rows_dir>/<model>.csv`` whose model has a config in ``config_dir`` (its ``target``)."""
    import pandas as pd

    from airflow_mlops.config.loader import config_files, load_configs

    result = load_configs(config_files(config_dir))
    for path, error in result.errors.items():
        print(f"traffic: skipping {path}: {str(error).splitlines()[0]}", file=sys.stderr)
    targets = {loaded.name: loaded.config.target for loaded in result.configs}
    generators = []
    for csv in sorted(rows_dir.glob("*.csv")):
        if csv.stem not in targets:
            print(f"traffic: skipping {csv}: no model {csv.stem!r} in {config_dir}", file=sys.stderr)
            continue
        generators.append(TrafficGenerator(url, csv.stem, pd.read_csv(csv), targets[csv.stem], rate=rate))
    return generators


def run_traffic(url: str, config_dir: Path, rows_dir: Path, rate: float) -> int:
    """``airflow-mlops traffic``: run until SIGINT/SIGTERM, then print what each model's traffic got back."""
    generators = generators_from_folder(url, config_dir, rows_dir, rate)
    if not generators:
        print(f"traffic: no <model>.csv in {rows_dir} matches a config in {config_dir}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for generator in generators:
        generator.start()
    print(f"traffic: {', '.join(g.model for g in generators)} at {rate:g} requests/s each -> {url}", flush=True)
    while not stop.wait(60.0):
        print("traffic: " + "; ".join(f"{g.model} {g.statuses}" for g in generators), flush=True)
    for generator in generators:
        generator.stop()
    print("traffic: stopped; " + "; ".join(f"{g.model} {g.statuses}" for g in generators), flush=True)
    return 0
