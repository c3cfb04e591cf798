"""Gateway vs ``mlflow models serve``: requests/s and client p50/p99 on the same small scikit-learn model.

Fully offline, in a temporary folder: trains two fraud versions (different seeds) through our real
operators into a SQLite MLflow store, promotes v1 to champion, then starts ``mlflow models serve``
(``models:/fraud/1``, ``--env-manager local``, 1 worker, its default) and our gateway
(``airflow-mlops serve``, one process) on loopback ports, and drives all of them with one load
generator (asyncio + ``httpx.AsyncClient`` with keep-alive, fixed concurrency, an uncounted warm-up,
the same single-record fraud payloads):

    (0) client ceiling  gateway ``GET /health`` (what the load generator itself can drive)
    (a) mlflow          ``POST /invocations``   ``{"dataframe_records": [record]}``
    (b) gateway         champion only           ``{"records": record}``
    (c) gateway         canary v2 at 5 % + shadow v2 (after ``/ready`` shows it)

and the same (b)/(c) at concurrency 1 (service time without queueing). Prints a table and the ratios
against the targets: (c) >= 2x mlflow's requests/s; shadow adds <= 1 ms p99 (p99(c) - p99(b)).
A missed target is printed, not an error; the exit code is non-zero only on errors or non-2xx answers.

Client and servers share the host, so req/s and p99 move with other load on it; the "server CPU"
column (CPU seconds of the server's process group per request, from ``/proc``) moves much less and
gives the capacity ratio. "client CPU" shows whether the load generator itself was the limit.

    .venv/bin/python benchmarks/gateway.py [--requests 3000] [--concurrency 16] [--warmup 200] [--shadow-mode thread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).absolute().parent
MODEL = "fraud"
TARGET_RATIO = 2.0
TARGET_SHADOW_P99_MS = 1.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# setup -----------------------------------------------------------------------------------------
def set_env(tmp: Path) -> str:
    """Offline, quiet, isolated environment; must run before anything imports Airflow or MLflow."""
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    conn = {"conn_type": "mlflow", "host": tracking_uri, "extra": {"artifact_root": str(tmp / "artifacts")}}
    os.environ.update(
        {
            "AIRFLOW_HOME": str(tmp / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(conn),
            "AIRFLOW_MLOPS_STATE_DB": f"sqlite:///{tmp / 'state.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "PYTHONWARNINGS": "ignore",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return tracking_uri


def write_config(folder: Path, seed: int) -> Path:
    """The fraud example with absolute data/behaviour paths (as tests' ``Workspace.write_config``) and ``seed``."""
    import yaml

    source = REPO / "dags" / "configs" / f"{MODEL}.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["data"]["uri"] = str((source.parent / raw["data"]["uri"]).resolve())
    if raw.get("gates", {}).get("behaviour"):
        raw["gates"]["behaviour"]["cases"] = str(source.parent / raw["gates"]["behaviour"]["cases"])
    raw["estimator"]["seed"] = seed
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODEL}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@contextlib.contextmanager
def quiet_output(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (Airflow's structlog writes to stdout) to ``path`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with path.open("ab") as sink:
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def train_two_versions(tmp: Path) -> list[str]:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(REPO / "tests"))
    from support import train_version  # tests/support.py: the real operators, no scheduler

    for name in ("mlflow", "airflow", "alembic", "great_expectations", "airflow_mlops"):
        logging.getLogger(name).setLevel(logging.WARNING)
    versions = []
    for i, seed in enumerate((42, 7), start=1):
        started = time.perf_counter()
        config = write_config(tmp / f"configs-{i}", seed)
        # Airflow warns per operator that execute() runs outside a task runner: keep that out of the report
        with quiet_output(tmp / "train.log"):
            versions.append(train_version(config, run_id=f"manual__benchmark-{i}"))
        took = time.perf_counter() - started
        log(f"trained + registered + gated {MODEL} v{versions[-1]} (seed {seed}) in {took:.1f} s")
    return versions


def sample_records(count: int = 256) -> list[dict[str, Any]]:
    import pandas as pd

    frame = pd.read_csv(REPO / "dags" / "data" / MODEL / "transactions_batch_001.csv", nrows=count)
    return list(frame.drop(columns=["is_fraud"]).to_dict(orient="records"))  # plain Python scalars


# processes -------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A server process in its own process group, logging to a file."""

    def __init__(self, name: str, args: list[str], port: int, log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait(self, path: str, timeout: float, predicate: Callable[[Any], bool] | None = None) -> float:
        import httpx

        started = time.monotonic()
        last: Any = None
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(self.url + path, timeout=2.0)
                last = response.text
                if response.status_code == 200 and (predicate is None or predicate(response.json())):
                    return time.monotonic() - started
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: {path} not ready after {timeout:.0f} s (last: {last}):\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the service's process group (Linux ``/proc``)."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp: the leader started a new session
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # children left in the group (mlflow's uvicorn) once the leader is gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


# load generator --------------------------------------------------------------------------------
@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    latencies: list[float]
    statuses: Counter[int]
    errors: Counter[str]
    server_cpu: float = float("nan")
    client_cpu: float = float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct_ms(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000.0

    @property
    def cpu_ms(self) -> float:
        """Server CPU per measured request: less sensitive than req/s to other load on the host."""
        return self.server_cpu / self.requests * 1000.0

    @property
    def client_cpu_ms(self) -> float:
        """Load-generator CPU per request: near 1000 / req/s means the client, not the server, was the limit."""
        return self.client_cpu / self.requests * 1000.0

    @property
    def bad(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + sum(self.errors.values())


async def _drive(
    url: str, bodies: list[bytes] | None, requests: int, warmup: int, concurrency: int, cpu: Callable[[], float]
) -> Result:
    import httpx

    headers = {"content-type": "application/json"}
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def phase(total: int, latencies: list[float] | None) -> None:
            counter = iter(range(total))

            async def worker() -> None:
                for i in counter:
                    started = time.perf_counter()
                    try:
                        if bodies is None:
                            response = await client.get(url)
                        else:
                            response = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
                    except httpx.HTTPError as exc:
                        errors[type(exc).__name__] += 1
                        continue
                    if latencies is not None:
                        latencies.append(time.perf_counter() - started)
                        statuses[response.status_code] += 1
                    elif not 200 <= response.status_code < 300:
                        errors[f"warm-up HTTP {response.status_code}: {response.text[:200]}"] += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await phase(warmup, None)
        latencies: list[float] = []
        gc.collect()
        gc.disable()  # the client's collector must not add pauses to the servers' latencies
        try:
            cpu_before, client_before, started = cpu(), time.process_time(), time.perf_counter()
            await phase(requests, latencies)
            seconds, server_cpu = time.perf_counter() - started, cpu() - cpu_before
            client_cpu = time.process_time() - client_before
        finally:
            gc.enable()
    return Result("", len(latencies), seconds, latencies, statuses, errors, server_cpu, client_cpu)


def drive(
    label: str, service: Service, path: str, bodies: list[bytes] | None, requests: int, warmup: int, concurrency: int
) -> Result:
    args = (service.url + path, bodies, requests, warmup, concurrency, service.cpu_seconds)
    try:
        import uvloop

        result = uvloop.run(_drive(*args))
    except ImportError:
        result = asyncio.run(_drive(*args))
    result.label = label
    log(
        f"{label}: {result.rps:,.0f} req/s, p50 {result.pct_ms(50):.2f} ms, p99 {result.pct_ms(99):.2f} ms, "
        f"server CPU {result.cpu_ms:.2f} ms/req"
    )
    if result.bad:
        log(f"  NOT OK: statuses {dict(result.statuses)}, errors {dict(result.errors)}")
    return result


_SERIES = re.compile(r"^mlops_gateway_requests_total\{([^}]*)\} ([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def role_counts(url: str) -> Counter[str]:
    """Requests per ``role vN`` of the benchmark's model, from ``/metrics`` (labels in any order)."""
    import httpx

    counts: Counter[str] = Counter()
    for line in httpx.get(f"{url}/metrics", timeout=5.0).text.splitlines():
        match = _SERIES.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(1)))
            if labels.get("model") == MODEL:
                counts[f"{labels['role']} v{labels['version']}"] += int(float(match.group(2)))
    return counts


# report ----------------------------------------------------------------------------------------
def report(results: dict[str, Result], mirrored: Counter[str], args: argparse.Namespace) -> None:
    print()
    print(f"{args.requests} requests per row after {args.warmup} warm-up, concurrency {args.concurrency} unless noted;")
    print(
        "one process each (mlflow: uvicorn, 1 worker; gateway: uvicorn, 1 process, shadow: "
        f"{'its own process' if args.shadow_mode == 'process' else 'a thread'}); client on the same host."
    )
    print("CPU ms/req: server process(es), and the load generator, per measured request.")
    head = f"{'req/s':>7}{'p50 ms':>9}{'p99 ms':>9}{'server CPU':>11}{'client CPU':>11}{'non-2xx':>8}"
    print(f"{'':4}{'run':47}{head}")
    for key, res in results.items():
        row = f"{res.rps:7,.0f}{res.pct_ms(50):9.2f}{res.pct_ms(99):9.2f}{res.cpu_ms:11.2f}{res.client_cpu_ms:11.2f}"
        print(f"{key:4}{res.label:47}{row}{res.bad:8d}")
    a, b, c = results["a"], results["b"], results["c"]
    ratio_b, ratio_c = b.rps / a.rps, c.rps / a.rps
    shadow_p99 = c.pct_ms(99) - b.pct_ms(99)
    print()
    for name, res, ratio in (("champion-only", b, ratio_b), ("canary+shadow", c, ratio_c)):
        print(
            f"gateway {name} / mlflow  req/s: {ratio:5.2f}x   p50 {res.pct_ms(50) / a.pct_ms(50):5.2f}x   "
            f"server CPU per request: {res.cpu_ms / a.cpu_ms:5.2f}x (capacity {a.cpu_ms / res.cpu_ms:4.2f}x)"
        )
    print(f"shadow's added p99 = p99(c) - p99(b) = {shadow_p99:+.2f} ms", end="")
    if "b1" in results and "c1" in results:
        print(f"   (at concurrency 1: {results['c1'].pct_ms(99) - results['b1'].pct_ms(99):+.2f} ms)")
    else:
        print()
    busy = {key: res.rps * res.client_cpu_ms / 1000.0 for key, res in results.items() if key in ("a", "b", "c")}
    print(
        "load generator busy (CPU s per s): " + ", ".join(f"({key}) {share:.0%}" for key, share in busy.items()), end=""
    )
    print(
        " -- near 100 %: client-bound, the gateway's req/s ratios are understated" if max(busy.values()) > 0.85 else ""
    )
    print(f"served/mirrored in (c): {dict(sorted(mirrored.items()))}")
    print()
    meets_ratio = ratio_c >= TARGET_RATIO
    meets_shadow = shadow_p99 <= TARGET_SHADOW_P99_MS
    print(f"target >= {TARGET_RATIO:.0f}x mlflow req/s with canary+shadow: {'MET' if meets_ratio else 'MISSED'}")
    print(f"target shadow adds <= {TARGET_SHADOW_P99_MS:.0f} ms p99:          {'MET' if meets_shadow else 'MISSED'}")


# main ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, tmp: Path, services: list[Service]) -> dict[str, Result]:
    os.chdir(tmp)  # anything cwd-relative (mlruns/, mlflow.db, state DB) stays private to this run
    tracking_uri = set_env(tmp)
    v1, v2 = train_two_versions(tmp)
    from airflow_mlops.deploy.targets import LocalGatewayTarget

    target = LocalGatewayTarget.from_options(tracking_uri=tracking_uri, state_url=os.environ["AIRFLOW_MLOPS_STATE_DB"])
    target.promote(MODEL, v1, actor="benchmark", reason="benchmark champion")

    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    port = free_port()
    listen = ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    mlflow_serve = Service(
        "mlflow models serve",
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/{v1}", "--env-manager", "local", *listen],
        port,
        tmp / "mlflow-serve.log",
        env,
    )
    services.append(mlflow_serve)
    port = free_port()
    gateway_args = ["--log-root", str(tmp / "prediction-log"), "--port", str(port), "--shadow-mode", args.shadow_mode]
    gateway = Service(
        "gateway",
        [str(BIN / "airflow-mlops"), "serve", "--model", MODEL, "--tracking-uri", tracking_uri, *gateway_args],
        port,
        tmp / "gateway.log",
        env,
    )
    services.append(gateway)
    log(f"mlflow models serve up in {mlflow_serve.wait('/ping', 180):.1f} s")
    log(f"gateway ready in {gateway.wait('/ready', 120, lambda body: body['models'][MODEL]['champion'] == v1):.1f} s")

    records = sample_records()
    mlflow_bodies = [json.dumps({"dataframe_records": [r]}).encode() for r in records]
    gateway_bodies = [json.dumps({"records": r}).encode() for r in records]
    n, w, conc = args.requests, args.warmup, args.concurrency
    one = min(n, 500)
    predict = f"/v1/models/{MODEL}/predict"
    results = {"0": drive("client ceiling: gateway GET /health", gateway, "/health", None, n, w, conc)}
    results["a"] = drive("mlflow models serve /invocations", mlflow_serve, "/invocations", mlflow_bodies, n, w, conc)
    results["b"] = drive("gateway, champion only", gateway, predict, gateway_bodies, n, w, conc)
    results["b1"] = drive("gateway, champion only, concurrency 1", gateway, predict, gateway_bodies, one, 50, 1)

    target.set_traffic(MODEL, v2, 5, actor="benchmark", reason="benchmark canary 5 %")
    target.start_shadow(MODEL, v2, actor="benchmark", reason="benchmark shadow")

    def rolled_out(body: Any) -> bool:
        state = body["models"][MODEL]
        return bool(state["canary"] == v2 and state["canary_percent"] == 5 and state["shadow"] == v2)

    log(f"gateway shows canary v{v2} 5 % + shadow v{v2} after {gateway.wait('/ready', 60, rolled_out):.1f} s")
    before = role_counts(gateway.url)
    results["c"] = drive("gateway, canary v2 5 % + shadow v2", gateway, predict, gateway_bodies, n, w, conc)
    time.sleep(0.5)  # let the shadow worker drain what it still holds
    mirrored = role_counts(gateway.url) - before
    results["c1"] = drive("gateway, canary 5 % + shadow, concurrency 1", gateway, predict, gateway_bodies, one, 50, 1)
    results = {k: results[k] for k in ("0", "a", "b", "c", "b1", "c1")}
    report(results, mirrored, args)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per run")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--warmup", type=int, default=200, help="uncounted requests before each run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, stores)")
    parser.add_argument(
        "--shadow-mode",
        choices=["process", "thread"],
        default="process",
        help="the gateway's shadow: its own process at the lowest CPU priority (default), or a thread",
    )
    args = parser.parse_args(argv)
    if args.requests < 100 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--requests >= 100, --concurrency >= 1, --warmup >= 0")
    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-gateway-"))
    services: list[Service] = []
    started = time.perf_counter()
    try:
        results = run(args, tmp, services)
    except Exception:
        traceback.print_exc()
        log("ERROR: benchmark aborted")
        return 1
    finally:
        for service in reversed(services):
            service.stop()
        os.chdir(REPO)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.perf_counter() - started:.0f} s")
    bad = {key: res.bad for key, res in results.items() if res.bad}
    if bad:
        print(f"non-2xx answers or request errors: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
