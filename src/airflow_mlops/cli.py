"""``airflow-mlops`` command line: validate and dry-gate configs, promote a version, run the demo, make example data."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from airflow_mlops import settings
from airflow_mlops.config.loader import config_files, load_configs
from airflow_mlops.gates.dry_run import DEFAULT_SAMPLE_ROWS

_STATE_DB_HELP = f"[mlops] state_db or state_db_conn_id, ${settings.OPTIONS['state_db'].env}"


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files.extend(config_files(path) if path.is_dir() else [path])
    return files


def validate_config(paths: Sequence[str]) -> int:
    """Print every problem of every file; exit 0 only when all files are valid."""
    files = _expand(paths)
    if not files:
        print(f"no config files found in {list(paths)}", file=sys.stderr)
        return 1
    result = load_configs(files)
    for loaded in result.configs:
        missing = _missing_files(loaded)
        if missing:
            result.errors[loaded.path] = missing  # type: ignore[assignment]
        else:
            print(f"ok   {loaded.path} ({loaded.name})")
    for path, error in result.errors.items():
        print(f"FAIL {path}", file=sys.stderr)
        for line in str(error).splitlines():
            print(f"  {line}", file=sys.stderr)
    return 1 if result.errors else 0


def _missing_files(loaded: object) -> str | None:
    from airflow_mlops.config.loader import LoadedConfig

    assert isinstance(loaded, LoadedConfig)
    behaviour = loaded.config.gates.behaviour
    if behaviour is None:
        return None
    location = loaded.resolve(behaviour.cases)
    if "://" not in location and not Path(location).is_file():
        return (
            f"{loaded.path}: gates.behaviour.cases: got {behaviour.cases!r}; expected an existing CSV file ({location})"
        )
    return None


def dry_gate(
    paths: Sequence[str], *, sample_rows: int, data_uri: str | None, data_conn_id: str | None, as_json: bool
) -> int:
    """Train on a sample and gate each config (nothing registered); exit 0 only when every gate passed."""
    import json

    from airflow_mlops.gates.dry_run import dry_gate as run_dry_gate

    files = _expand(paths)
    if not files:
        print(f"no config files found in {list(paths)}", file=sys.stderr)
        return 1
    results = [
        run_dry_gate(path, sample_rows=sample_rows, data_uri=data_uri, data_conn_id=data_conn_id) for path in files
    ]
    failed = [r for r in results if not r.passed]
    if as_json:
        document = {"result": "failed" if failed else "passed", "configs": [r.to_dict() for r in results]}
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(r.to_markdown() for r in results), end="")
    for result in failed:
        print(f"FAIL {result.path}", file=sys.stderr)
        for line in result.problems():
            print(f"  {line}", file=sys.stderr)
    print(f"dry gate: {len(results) - len(failed)} of {len(results)} config(s) passed", file=sys.stderr)
    return 1 if failed else 0


def changed_configs(paths: Sequence[str], *, base: str, head: str) -> int:
    """Print the configs under ``paths`` that ``base...head`` touched, one per line (none: no output)."""
    from airflow_mlops.config.changes import GitDiffError, changed_files
    from airflow_mlops.config.changes import changed_configs as touched_configs

    try:
        changed = changed_files(base, head)
    except GitDiffError as exc:
        print(f"changed-configs: {exc}", file=sys.stderr)
        return 1
    for path in touched_configs(paths, changed):
        print(path)
    return 0


def _dry_gate_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.data_uri and len(_expand(args.paths)) > 1:
        parser.error("dry-gate: --data-uri replaces one config's data.uri; give exactly one config with it")
    return dry_gate(
        args.paths,
        sample_rows=args.sample_rows,
        data_uri=args.data_uri,
        data_conn_id=args.data_conn_id,
        as_json=args.json,
    )


def _changed_configs_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    return changed_configs(args.paths, base=args.base, head=args.head)


#: The commands over model config files: what the CI templates (templates/ci/) run.
_CONFIG_COMMANDS: dict[str, Callable[[argparse.ArgumentParser, argparse.Namespace], int]] = {
    "validate-config": lambda parser, args: validate_config(args.paths),
    "dry-gate": _dry_gate_command,
    "changed-configs": _changed_configs_command,
}


def intents(action: str, model: str | None, op_id: str | None, state_db: str | None) -> int:
    """``intents list``: operations that were interrupted and are still recorded; ``intents discard``: drop one
    without applying it (the registry is left as it is: check it with ``history`` and the MLflow UI)."""
    from airflow_mlops.deploy.audit import AuditTrail

    audit = AuditTrail(state_db or settings.state_db_url())
    if action == "list":
        found = audit.pending(model) if model else audit.all_pending()
        for op in found:
            moves = ", ".join(f"{m['alias']}: {m.get('from')} -> {m.get('to')}" for m in op.plan.get("moves", []))
            print(f"{op.op_id}  {op.model}  {op.kind}  by {op.actor} at {op.created_at:%Y-%m-%d %H:%M:%S}  [{moves}]")
        if not found:
            print("no interrupted operations recorded" + (f" for {model!r}" if model else ""))
        return 0
    if not model or not op_id:
        print("intents discard: give the model and the intent id (see: airflow-mlops intents list)", file=sys.stderr)
        return 2
    if not any(op.op_id == op_id for op in audit.pending(model)):
        print(f"intents discard: no recorded intent {op_id!r} for model {model!r}", file=sys.stderr)
        return 1
    audit.complete_pending(op_id, model, [])
    print(f"discarded intent {op_id} of {model!r}; nothing was applied")
    return 0


def audit_verify(model: str | None, tracking_uri: str | None, state_db: str | None) -> int:
    """``audit verify``: 0 when every chain is intact (and matches the registry), 1 naming the first bad entry."""
    from airflow_mlops.deploy.audit import AuditTrail, registry_models_with_heads, verify

    client = None
    if tracking_uri:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    audit = AuditTrail(state_db or settings.state_db_url())
    try:
        # every model the trail or the registry knows: a trail deleted as a whole still has heads in the registry
        models = (
            [model] if model else sorted({*audit.models(), *(registry_models_with_heads(client) if client else [])})
        )
    except Exception as exc:
        print(f"audit verify: could not list the registry's models at {tracking_uri}: {exc}", file=sys.stderr)
        return 2
    if not models:
        print(f"audit verify: no audit entries in {audit.safe_url}" + ("" if client else " (registry not checked)"))
        return 0
    broken = 0
    for name in models:
        try:
            report = verify(audit, name, client)
        except Exception as exc:  # the registry unreadable: nothing is verified, say so
            print(f"audit verify: {name}: could not read the registry at {tracking_uri}: {exc}", file=sys.stderr)
            return 2
        print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
        broken += not report.ok
    return 1 if broken else 0


def _audit_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.tracking_uri and not args.no_registry:
        parser.error(
            "audit verify: --tracking-uri (or MLFLOW_TRACKING_URI) is required to check the heads mirrored in the "
            "registry; give --no-registry to check the database's chain only"
        )
    return audit_verify(args.model, None if args.no_registry else args.tracking_uri, args.state_db)


def print_card(model: str, which: str, config_dir: Path, tracking_uri: str, html: bool) -> int:
    """``card``: the model card of a version (a number) or of the version an alias points at (``@champion``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.registry.card import CardText, build_card, render_html, render_markdown

    path = next((p for p in (config_dir / f"{model}.yaml", config_dir / f"{model}.yml") if p.is_file()), None)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        text = CardText.from_config(load_config(path).config) if path else CardText()
        if which.startswith("@"):
            version = str(client.get_model_version_by_alias(model, which[1:]).version)
        elif which.isascii() and which.isdigit():
            version = str(int(which))
        else:
            print(f"card: version: got {which!r}; expected a number or @alias (e.g. @champion)", file=sys.stderr)
            return 2
        card = build_card(client, model, version, text)
    except (MlflowException, MlopsError) as exc:
        print(f"card: {model} {which}: {exc}", file=sys.stderr)
        return 1
    if path is None:
        print(
            f"card: no config {config_dir / model}.yaml: the card has no intended use or limitations", file=sys.stderr
        )
    print(render_html(card) if html else render_markdown(card), end="")
    return 0


def write_evidence(
    model: str, out: Path, config_dir: Path, tracking_uri: str, state_db: str | None, monitoring_runs: int
) -> int:
    """``evidence``: 0 when the pack is written and its audit chain verified, 1 when the chain did not verify
    (the pack is written and says so), 2 when no pack could be written."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.registry.card import CardText
    from airflow_mlops.registry.evidence_pack import write_evidence_pack

    path = next((p for p in (config_dir / f"{model}.yaml", config_dir / f"{model}.yml") if p.is_file()), None)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        text = CardText.from_config(load_config(path).config) if path else CardText()
        audit = AuditTrail(state_db or settings.state_db_url())
        pack = write_evidence_pack(client, audit, model, out, text, monitoring_runs=monitoring_runs)
    except (MlflowException, MlopsError, SQLAlchemyError, ImportError, OSError) as exc:
        print(f"evidence: {model}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if path is None:
        print(
            f"evidence: no config {config_dir / model}.yaml: the cards have no intended use or limitations",
            file=sys.stderr,
        )
    print(
        f"evidence: {model}: {len(pack.versions)} version(s), {pack.monitoring_runs} monitoring run(s), "
        f"{len(pack.files)} files in {out}"
    )
    print(pack.chain_summary, file=sys.stdout if pack.chain_ok else sys.stderr)
    return 0 if pack.chain_ok else 1


def explain(
    request_id: str,
    model: str | None,
    config_dir: Path,
    tracking_uri: str,
    state_db: str | None,
    *,
    log_root: str | None = None,
    log_conn_id: str | None = None,
    as_json: bool = False,
) -> int:
    """``explain``: 0 and the request's evidence, 1 when no model's prediction log has it, 2 on an error."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_mlops.config.loader import config_files, load_configs
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.exceptions import MlopsError
    from airflow_mlops.hooks.object_storage import prediction_log_storage
    from airflow_mlops.registry.request_evidence import explain_request, render_markdown, to_json

    loaded = load_configs(config_files(config_dir))
    problems = [str(error) for error in loaded.errors.values()]  # a broken config is not a model without the request
    if not config_dir.is_dir() and log_root is None:
        problems.append(f"--config-dir {config_dir}: not a folder")
    configs = [c for c in loaded.configs if model is None or c.name == model]
    searched = [(c.name, *((log_root, log_conn_id) if log_root else c.prediction_log())) for c in configs]
    if model is not None and not configs:
        if log_root is None:
            problems.append(f"no config of model {model!r} in {config_dir} (or give --log-root)")
        else:
            searched = [(model, log_root, log_conn_id)]
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        audit = AuditTrail(state_db or settings.state_db_url())
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        print(f"explain: the state database: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for name, root, conn_id in searched:
        if not root:
            problems.append(f"{name}: no prediction log configured (serving.prediction_log)")
            continue
        try:  # one model's unreadable log must not hide the request in another's
            evidence = explain_request(client, audit, prediction_log_storage(root, conn_id), name, request_id)
        except (MlflowException, MlopsError, SQLAlchemyError, ValueError, OSError) as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if evidence is not None:
            print((to_json(evidence) if as_json else render_markdown(evidence)).rstrip("\n"))
            return 0
    for problem in problems:
        print(f"explain: {problem}", file=sys.stderr)
    print(f"explain: no request {request_id!r} in the prediction log of {[n for n, _, _ in searched]}", file=sys.stderr)
    return 2 if problems else 1


def _explain_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.tracking_uri:
        parser.error("explain: --tracking-uri (or MLFLOW_TRACKING_URI) is required")
    return explain(
        args.request_id,
        args.model,
        Path(args.config_dir),
        args.tracking_uri,
        args.state_db,
        log_root=args.log_root,
        log_conn_id=args.log_conn_id,
        as_json=args.json,
    )


def _evidence_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.tracking_uri:
        parser.error("evidence: --tracking-uri (or MLFLOW_TRACKING_URI) is required")
    return write_evidence(
        args.model, Path(args.out), Path(args.config_dir), args.tracking_uri, args.state_db, args.monitoring_runs
    )


def _card_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.tracking_uri:
        parser.error("card: --tracking-uri (or MLFLOW_TRACKING_URI) is required")
    return print_card(args.model, args.version, Path(args.config_dir), args.tracking_uri, args.html)


#: The commands over the state database (locks, intents, audit trail).
_STATE_COMMANDS: dict[str, Callable[[argparse.ArgumentParser, argparse.Namespace], int]] = {
    "intents": lambda parser, args: intents(args.action, args.model, args.op_id, args.state_db),
    "audit": _audit_command,
    "card": _card_command,
    "evidence": _evidence_command,
    "explain": _explain_command,
    "status": lambda parser, args: _status_command(parser, args),
}


def _status_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.tracking_uri:
        parser.error("status: --tracking-uri (or MLFLOW_TRACKING_URI) is required")
    return _status(args.model, Path(args.config_dir), args.tracking_uri, args.state_db)


def _demo_tickets_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from airflow_mlops.examples.tickets_demo import run_tickets_demo

    return run_tickets_demo(Path(args.home))


#: The short example demos besides ``demo`` (each on embedded SQLite Airflow + MLflow under ``--home``).
def _up_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from airflow_mlops.examples.stack import Ports, run_up

    ports = Ports(airflow=args.airflow_port, mlflow=args.mlflow_port, gateway=args.gateway_port)
    return run_up(Path(args.home), Path(args.dags_folder), ports, args.traffic_rate)


def _traffic_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from airflow_mlops.examples.traffic import run_traffic

    return run_traffic(args.gateway, Path(args.config_dir), Path(args.rows), args.rate)


_DEMO_COMMANDS: dict[str, Callable[[argparse.ArgumentParser, argparse.Namespace], int]] = {
    "demo-tickets": _demo_tickets_command,
    "up": _up_command,
    "traffic": _traffic_command,
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; expected a positive number of rows")
    return value


def _serve_args_problem(args: argparse.Namespace) -> str | None:
    if not args.tracking_uri:
        return "serve: --tracking-uri (or MLFLOW_TRACKING_URI) is required"
    if args.admin_port is not None and args.admin_port == args.port:
        return f"serve: --admin-port {args.admin_port} is --port too; give the admin listener its own port"
    return None


def _status(model: str, config_dir: Path, tracking_uri: str, state_db: str | None) -> int:
    """Print the registry's aliases and what the target serves; 1 when the endpoint was changed by hand."""
    import mlflow

    from airflow_mlops.config.loader import load_config
    from airflow_mlops.deploy.audit import AuditTrail
    from airflow_mlops.deploy.targets import get_target
    from airflow_mlops.exceptions import MlopsError

    candidates = [config_dir / f"{model}.yaml", config_dir / f"{model}.yml"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        print(f"status: no config {candidates[0]} (or .yml) for model {model!r}; give --config-dir", file=sys.stderr)
        return 2
    try:
        cfg = load_config(path).config
        client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        target = get_target(
            cfg.rollout.target,
            client=client,
            audit=AuditTrail(state_db or settings.state_db_url()),
            target_options=cfg.rollout.target_options,
        )
        state = target.state(model)
        aliases = ", ".join(f"{alias} v{version}" for alias, version in state.aliases().items()) or "none"
        canary = f" (canary {state.canary_percent:g}%)" if state.canary else ""
        print(f"{model}: target {cfg.rollout.target}\n  aliases:  {aliases}{canary}")
        view = getattr(target, "view", None)
        if view is None:
            print("  the bundled gateway follows the registry's aliases (see its /ready for what it loaded)")
            return 0
        found = view(model)
        print(found.describe())
        return 1 if found.changed_by_hand else 0
    except MlopsError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-config", help="validate model config files (or folders of them)")
    check.add_argument("paths", nargs="+")
    dry = sub.add_parser(
        "dry-gate",
        help="train on a sample of each config's data and run its gates without a champion; registers nothing",
    )
    dry.add_argument("paths", nargs="+", help="config files or folders of them")
    dry.add_argument(
        "--sample-rows",
        type=_positive,
        default=DEFAULT_SAMPLE_ROWS,
        help="rows to train and gate on (default: %(default)s)",
    )
    dry.add_argument("--data-uri", default=None, help="read this instead of data.uri (one config only)")
    dry.add_argument("--data-conn-id", default=None, help="Airflow connection for an object-store --data-uri")
    dry.add_argument("--json", action="store_true", help="print one JSON document instead of markdown")
    changed = sub.add_parser("changed-configs", help="list the model configs a git change touched (for CI)")
    changed.add_argument("paths", nargs="+", help="config files or folders of them")
    changed.add_argument("--base", required=True, help="base commit of the pull/merge request")
    changed.add_argument("--head", default="HEAD", help="head commit (default: HEAD)")
    promote = sub.add_parser("promote", help="make a gated version the champion (old one becomes 'previous')")
    promote.add_argument("model")
    promote.add_argument("version")
    promote.add_argument("--tracking-uri", required=True)
    promote.add_argument("--state-db", default=None, help=f"audit trail DB URL (default: {_STATE_DB_HELP})")
    promote.add_argument("--actor", default="cli")
    promote.add_argument("--reason", default="promoted from the command line")
    demo = sub.add_parser("demo", help="run the fraud model's train DAG twice on embedded SQLite Airflow + MLflow")
    demo.add_argument("--home", default=".demo", help="project-local folder for Airflow, MLflow and data")
    tickets = sub.add_parser(
        "demo-tickets",
        help="train and gate the multiclass tickets example (string labels, time split) with its real train DAG",
    )
    tickets.add_argument("--home", default=".demo-tickets", help="project-local folder for Airflow, MLflow and data")
    up = sub.add_parser(
        "up", help="run Airflow, MLflow, the gateway and example traffic live on loopback until Ctrl-C (make up)"
    )
    up.add_argument("--home", default=".up", help="project-local folder for all state (reused by the next start)")
    up.add_argument("--dags-folder", default="dags", help="the folder with airflow_mlops_dags.py and configs/")
    up.add_argument("--airflow-port", type=int, default=8080)
    up.add_argument("--mlflow-port", type=int, default=5000)
    up.add_argument("--gateway-port", type=int, default=8001)
    up.add_argument("--traffic-rate", type=float, default=10.0, help="requests/s per model (0: no generated traffic)")
    traffic = sub.add_parser("traffic", help="send example requests and their labels to a gateway until Ctrl-C")
    traffic.add_argument("--gateway", required=True, help="the gateway's base URL")
    traffic.add_argument("--config-dir", required=True, help="model configs (each model's target column)")
    traffic.add_argument("--rows", required=True, help="folder of <model>.csv files: features plus the target")
    traffic.add_argument("--rate", type=float, default=10.0, help="requests per second per model")
    serve = sub.add_parser("serve", help="start the serving gateway for one or more models")
    serve.add_argument("--model", dest="models", action="append", required=True, help="repeat for more models")
    serve.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8001)
    serve.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve /ready and /metrics only on this port (404 on --port); default: everything on --port",
    )
    serve.add_argument("--admin-host", default=None, help="address of the admin listener (default: --host)")
    serve.add_argument("--log-root", default="prediction-log", help="prediction log: local path, s3://, wasbs://")
    serve.add_argument("--log-conn-id", default=None, help="Airflow connection for an object-store log root")
    serve.add_argument("--log-mode", choices=["batched", "strict"], default="batched")
    serve.add_argument("--flush-interval", type=float, default=1.0, help="seconds between prediction-log flushes")
    serve.add_argument(
        "--wal-dir",
        default=None,
        help="local write-ahead log folder (strict mode; batched mode spills there at shutdown if the store is down)",
    )
    serve.add_argument(
        "--max-pending",
        type=int,
        default=100_000,
        help="batched mode: rows held while the log's store is down; the oldest beyond are dropped and counted",
    )
    serve.add_argument("--poll-interval", type=float, default=1.0, help="seconds between registry polls")
    serve.add_argument("--max-batch", type=int, default=1000)
    serve.add_argument("--keep-alive", type=float, default=75.0, help="seconds an idle client connection stays open")
    serve.add_argument("--api-keys-file", default=None, help="API keys (one per line) required on predict/feedback")
    serve.add_argument("--api-keys-conn-id", default=None, help="Airflow connection holding the API keys")
    serve.add_argument("--rate-limit", type=float, default=None, help="requests per second per client (429 beyond)")
    serve.add_argument("--rate-burst", type=float, default=50.0, help="burst size of the per-client rate limit")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get a 413")
    serve.add_argument("--routing-key-file", default=None, help="secret keying the canary split (same on replicas)")
    serve.add_argument(
        "--shadow-mode",
        choices=["process", "thread"],
        default="process",
        help="predict the shadow in its own process at the lowest CPU priority (default) or on a thread",
    )
    serve.add_argument(
        "--shadow-share", type=float, default=100.0, help="percent of live requests mirrored to the shadow"
    )
    serve.add_argument(
        "--shadow-queue", type=int, default=1000, help="mirrored requests waiting beyond this are dropped and counted"
    )
    intents_parser = sub.add_parser(
        "intents", help="list or discard deployment operations that were interrupted (their recorded intents)"
    )
    intents_parser.add_argument("action", choices=["list", "discard"])
    intents_parser.add_argument("model", nargs="?", default=None)
    intents_parser.add_argument("op_id", nargs="?", default=None, help="the intent to discard")
    intents_parser.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    audit = sub.add_parser("audit", help="check the hash-chained audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="exit 1 naming the first edited, deleted, inserted or reordered entry (all models by default)"
    )
    verify.add_argument("model", nargs="?", default=None)
    verify.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    verify.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    verify.add_argument("--no-registry", action="store_true", help="do not compare with the registry's audit heads")
    card = sub.add_parser("card", help="print a version's model card (markdown, or --html)")
    card.add_argument("model")
    card.add_argument("version", nargs="?", default="@champion", help="a version number or @alias (default: @champion)")
    card.add_argument("--config-dir", default="dags/configs", help="folder of model configs (default: %(default)s)")
    card.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    card.add_argument("--html", action="store_true", help="the HTML page instead of markdown")
    evidence = sub.add_parser(
        "evidence", help="write a model's evidence pack (cards, gate reports, audit chain ...) with an EU AI Act map"
    )
    evidence.add_argument("model")
    evidence.add_argument("--out", required=True, help="a new or empty folder")
    evidence.add_argument("--config-dir", default="dags/configs", help="folder of model configs (default: %(default)s)")
    evidence.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    evidence.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    evidence.add_argument(
        "--monitoring-runs", type=_positive, default=50, help="the newest N monitoring runs (default: %(default)s)"
    )
    explain_parser = sub.add_parser(
        "explain", help="one request's evidence: version and role, input, output, lineage, gate, approvals, aliases"
    )
    explain_parser.add_argument("request_id")
    explain_parser.add_argument("--model", default=None, help="only this model (default: every config's model)")
    explain_parser.add_argument(
        "--config-dir", default="dags/configs", help="folder of model configs (default: %(default)s)"
    )
    explain_parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI"
    )
    explain_parser.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    explain_parser.add_argument("--log-root", default=None, help="prediction log root (default: the model's config)")
    explain_parser.add_argument("--log-conn-id", default=None, help="Airflow connection for an object-store log root")
    explain_parser.add_argument("--json", action="store_true", help="one JSON document instead of markdown")
    history = sub.add_parser("history", help="print a model's audit trail (alias moves, approvals, rejections)")
    history.add_argument("model")
    history.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    history.add_argument("--limit", type=int, default=None, help="only the newest N entries")
    status = sub.add_parser(
        "status", help="what a model's deployment target serves, next to the registry's aliases (flags drift)"
    )
    status.add_argument("model")
    status.add_argument("--config-dir", default="dags/configs", help="folder of model configs (default: %(default)s)")
    status.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow tracking URI")
    status.add_argument("--state-db", default=None, help=f"SQLAlchemy URL (default: {_STATE_DB_HELP})")
    data = sub.add_parser("make-example-data", help="(re)write the example datasets")
    data.add_argument("folder", nargs="?", default="dags/data")
    args = parser.parse_args(argv)

    handler = {**_CONFIG_COMMANDS, **_STATE_COMMANDS, **_DEMO_COMMANDS}.get(args.command)
    if handler is not None:
        return handler(parser, args)
    if args.command == "promote":
        from airflow_mlops.deploy.targets import LocalGatewayTarget

        target = LocalGatewayTarget.from_options(tracking_uri=args.tracking_uri, state_url=args.state_db)
        from airflow_mlops.exceptions import MlopsError

        try:
            result = target.promote(args.model, args.version, actor=args.actor, reason=args.reason)
        except MlopsError as exc:  # e.g. the gate did not pass: a message, not a traceback
            print(f"promote: {exc}", file=sys.stderr)
            return 1
        print(f"{args.model}@champion -> v{args.version}" + ("" if result.changed else " (already champion)"))
        return 0
    if args.command == "serve":
        from airflow_mlops.serving.server import ServeOptions
        from airflow_mlops.serving.server import serve as run_gateway

        problem = _serve_args_problem(args)
        if problem:
            parser.error(problem)
        run_gateway(
            ServeOptions(
                models=args.models,
                tracking_uri=args.tracking_uri,
                host=args.host,
                port=args.port,
                admin_port=args.admin_port,
                admin_host=args.admin_host,
                log_root=args.log_root,
                log_mode=args.log_mode,
                flush_interval=args.flush_interval,
                log_conn_id=args.log_conn_id,
                wal_dir=args.wal_dir,
                max_pending=args.max_pending,
                poll_interval=args.poll_interval,
                max_batch=args.max_batch,
                keep_alive=args.keep_alive,
                api_keys_file=args.api_keys_file,
                api_keys_conn_id=args.api_keys_conn_id,
                rate_limit=args.rate_limit,
                rate_burst=args.rate_burst,
                max_body_bytes=args.max_body_bytes,
                routing_key_file=args.routing_key_file,
                shadow_mode=args.shadow_mode,
                shadow_share=args.shadow_share,
                shadow_queue=args.shadow_queue,
            )
        )
        return 0
    if args.command == "history":
        from airflow_mlops.deploy.audit import AuditTrail, format_history

        events = AuditTrail(args.state_db or settings.state_db_url()).entries(args.model, limit=args.limit)
        print(format_history(events) if events else f"no audit entries recorded for {args.model!r}")
        return 0
    if args.command == "demo":
        from airflow_mlops.examples.demo import run_demo

        return run_demo(Path(args.home))

    if args.command == "make-example-data":
        from airflow_mlops.examples.datasets import write_example_data

        for path in write_example_data(Path(args.folder)):
            print(path)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
