"""The audit trail is a hash chain: every edit, deletion, insertion or reorder is found and named.

Each tamper is done with plain SQL on the state database, as someone with database access would, against
SQLite and the local PostgreSQL (``postgres`` marker). The registry is a real MLflow store; its
``mlops.audit_head`` tag is what a database rewritten as a whole no longer matches.
"""

from __future__ import annotations

import functools
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, text

from airflow_mlops import cli
from airflow_mlops.deploy.audit import AuditTrail
from airflow_mlops.deploy.audit import verify as verify_settling
from airflow_mlops.deploy.audit_chain import GENESIS, ChainHead, entry_hash
from airflow_mlops.deploy.promotion import Deployments
from airflow_mlops.vocabulary import Tag
from live_airflow import create_database, drop_database, postgres_url

MODEL = "fraud"
verify = functools.partial(verify_settling, settle=0)  # nothing appends concurrently here: no second read


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def client(tmp_path: Path, empty_store: Path) -> Any:
    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    name = create_database(f"mlops_chain_{uuid.uuid4().hex[:12]}")
    try:
        yield postgres_url(name)
    finally:
        drop_database(name)


@pytest.fixture
def deployments(client: Any, state_url: str, tmp_path: Path) -> Iterator[Deployments]:
    """A registry with three gated versions, promoted v1, v2 and a canary of v3 (plus one approval)."""
    source = tmp_path / "model"
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")
    client.create_registered_model(MODEL)
    for _ in range(3):
        version = client.create_model_version(MODEL, str(source))
        client.set_model_version_tag(MODEL, version.version, Tag.GATE, "passed")
    audit = AuditTrail(state_url)
    deploy = Deployments(client, audit)
    deploy.promote(MODEL, "1", actor="t/run_1", reason="first")
    audit.record_decision(
        MODEL, "2", approved=True, stage="champion", approver="alice", responded_at="t", comment="ok", dag_run="r2"
    )
    deploy.promote(MODEL, "2", actor="t/run_2", reason="second")
    deploy.set_canary(MODEL, "3", 10, actor="t/run_3", reason="canary")
    yield deploy
    audit.dispose()


def sql(deploy: Deployments, statement: str, **params: Any) -> None:
    engine = create_engine(deploy.audit.url)
    with engine.begin() as conn:
        conn.execute(text(statement), params)
    engine.dispose()


def ids(deploy: Deployments) -> list[int]:
    return [entry.id for entry in deploy.audit.stored_entries(MODEL)]


def check(deploy: Deployments) -> Any:
    return verify(deploy.audit, MODEL, deploy.client)


def test_an_untouched_chain_verifies_and_its_head_is_mirrored(deployments: Deployments) -> None:
    entries = deployments.audit.entries(MODEL)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [e.kind for e in entries].count("approval") == 1
    head = deployments.audit.head(MODEL)
    assert head is not None and head.seq == len(entries) and head.entry_hash == entries[-1].entry_hash
    assert deployments.client.get_registered_model(MODEL).tags[Tag.AUDIT_HEAD] == str(head)
    report = check(deployments)
    assert report.ok, report.problems
    assert f"{len(entries)} entries" in report.summary()
    # the history of alias moves leaves the approval out; the full chain has it
    assert all(e.kind == "alias" for e in deployments.audit.history(MODEL))
    assert len(deployments.audit.history(MODEL)) == len(entries) - 1


def test_an_edited_entry_is_named(deployments: Deployments) -> None:
    second = ids(deployments)[1]
    sql(deployments, "UPDATE mlops_alias_events SET reason = 'nothing to see' WHERE id = :id", id=second)
    report = check(deployments)
    assert not report.ok
    assert report.problems[0].startswith(f"entry #2 (row id {second},")
    assert "(edited)" in report.problems[0]


def test_an_edited_actor_of_an_approval_is_named(deployments: Deployments) -> None:
    approval = next(e for e in deployments.audit.entries(MODEL) if e.kind == "approval")
    sql(deployments, "UPDATE mlops_alias_events SET actor = 'mallory' WHERE id = :id", id=approval.id)
    report = check(deployments)
    assert f"entry #{approval.seq} " in report.problems[0] and "edited" in report.problems[0]


def test_a_deleted_entry_is_named(deployments: Deployments) -> None:
    rows = ids(deployments)
    sql(deployments, "DELETE FROM mlops_alias_events WHERE id = :id", id=rows[2])
    report = check(deployments)
    assert report.problems[0].startswith(f"entries #3 are missing before entry #4 (row id {rows[3]},")


def test_a_deleted_newest_entry_is_found_by_the_head_row_and_by_the_registry(deployments: Deployments) -> None:
    rows = ids(deployments)
    sql(deployments, "DELETE FROM mlops_alias_events WHERE id = :id", id=rows[-1])
    assert "the database's head row says" in check(deployments).problems[0]
    # also rewrite the head row: the registry still knows the chain was longer
    last = deployments.audit.stored_entries(MODEL)[-1]
    sql(
        deployments,
        "UPDATE mlops_audit_heads SET seq = :seq, entry_hash = :h WHERE model = :m",
        seq=last.seq,
        h=last.entry_hash,
        m=MODEL,
    )
    problems = check(deployments).problems
    assert len(problems) == 1 and "were deleted" in problems[0] and f"#{len(rows)}" in problems[0]


def test_a_reordered_entry_is_named(deployments: Deployments) -> None:
    rows = ids(deployments)
    spare = max(rows) + 1000
    sql(deployments, "UPDATE mlops_alias_events SET id = :spare WHERE id = :id", spare=spare, id=rows[1])
    sql(deployments, "UPDATE mlops_alias_events SET id = :id WHERE id = :other", id=rows[1], other=rows[2])
    sql(deployments, "UPDATE mlops_alias_events SET id = :id WHERE id = :spare", id=rows[2], spare=spare)
    problem = check(deployments).problems[0]
    assert problem.startswith(f"entry #3 (row id {rows[1]},") and "comes before entry #2 (reordered)" in problem


def test_an_inserted_unsealed_entry_is_named(deployments: Deployments) -> None:
    sql(
        deployments,
        "INSERT INTO mlops_alias_events (model, alias, from_version, to_version, reason, actor, ts) "
        "VALUES (:m, 'champion', '2', '3', 'forged', 'mallory', :ts)",
        m=MODEL,
        ts=deployments.audit.entries(MODEL)[-1].ts,
    )
    problem = check(deployments).problems[0]
    assert "is not sealed (no hash)" in problem and "by mallory" in problem


def test_an_inserted_entry_with_a_valid_hash_is_not_confirmed_by_the_registry(deployments: Deployments) -> None:
    """Someone who knows the hash layout appends a well-formed entry and moves the head row: only the registry's
    mirrored head tells."""
    head = deployments.audit.head(MODEL)
    assert head is not None
    forged_ts = deployments.audit.entries(MODEL)[-1].ts
    fields = dict(
        model=MODEL,
        seq=head.seq + 1,
        kind="alias",
        alias="champion",
        from_version="2",
        to_version="3",
        reason="forged",
        actor="mallory",
        ts=forged_ts,
        op_id=None,
        detail=None,
        prev_hash=head.entry_hash,
    )
    digest = entry_hash(fields)
    sql(
        deployments,
        "INSERT INTO mlops_alias_events (model, alias, from_version, to_version, reason, actor, ts, seq, kind, "
        "prev_hash, entry_hash) VALUES (:m, 'champion', '2', '3', 'forged', 'mallory', :ts, :seq, 'alias', :p, :h)",
        m=MODEL,
        ts=forged_ts,
        seq=head.seq + 1,
        p=head.entry_hash,
        h=digest,
    )
    sql(
        deployments,
        "UPDATE mlops_audit_heads SET seq = :s, entry_hash = :h WHERE model = :m",
        s=head.seq + 1,
        h=digest,
        m=MODEL,
    )
    assert verify(deployments.audit, MODEL, None).ok  # the database alone cannot tell
    problem = check(deployments).problems[0]
    assert f"entry #{head.seq + 1} " in problem and "not confirmed by the registry" in problem and "mallory" in problem


def test_a_chain_rewritten_as_a_whole_does_not_match_the_registry(deployments: Deployments) -> None:
    stored = deployments.audit.stored_entries(MODEL)
    prev = GENESIS
    engine = create_engine(deployments.audit.url)
    with engine.begin() as conn:
        for entry in stored:
            reason = "rewritten" if entry.seq == 1 else entry.reason
            digest = entry_hash(
                dict(
                    model=MODEL,
                    seq=entry.seq or 0,
                    kind=entry.kind or "alias",
                    alias=entry.alias,
                    from_version=entry.from_version,
                    to_version=entry.to_version,
                    reason=reason,
                    actor=entry.actor,
                    ts=entry.ts,
                    op_id=entry.op_id,
                    detail=entry.detail,
                    prev_hash=prev,
                )
            )
            conn.execute(
                text("UPDATE mlops_alias_events SET reason = :r, prev_hash = :p, entry_hash = :h WHERE id = :id"),
                {"r": reason, "p": prev, "h": digest, "id": entry.id},
            )
            prev = digest
        conn.execute(text("UPDATE mlops_audit_heads SET entry_hash = :h WHERE model = :m"), {"h": prev, "m": MODEL})
    engine.dispose()
    assert verify(deployments.audit, MODEL, None).ok
    problem = check(deployments).problems[0]
    assert f"entry #{len(stored)} " in problem and "the chain was rewritten" in problem


def test_concurrent_appends_keep_one_line(state_url: str) -> None:
    """Four threads, each with its own trail (own connection pool), append at once: one chain, no fork."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        trail = AuditTrail(state_url)
        try:
            barrier.wait()
            for i in range(10):
                trail.record(MODEL, "canary", "1", "1", reason=f"writer {n} step {i}", actor=f"w{n}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            trail.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    audit = AuditTrail(state_url)
    assert [e.seq for e in audit.stored_entries(MODEL)] == list(range(1, 41))
    report = verify(audit, MODEL, None)
    assert report.ok, report.problems
    audit.dispose()


def legacy_trail(state_url: str, rows: int = 2) -> Table:
    """The state DB as a version without the chain left it: ``mlops_alias_events`` with ``rows`` champion moves."""
    old = MetaData()
    table = Table(
        "mlops_alias_events",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("model", String(256), nullable=False),
        Column("alias", String(64), nullable=False),
        Column("from_version", String(32), nullable=True),
        Column("to_version", String(32), nullable=True),
        Column("reason", Text, nullable=False),
        Column("actor", String(256), nullable=False),
        Column("ts", DateTime(timezone=True), nullable=False),
        Column("op_id", String(36), nullable=True),
    )
    engine = create_engine(state_url)
    old.create_all(engine)
    with engine.begin() as conn:
        for day in range(1, rows + 1):
            conn.execute(
                table.insert().values(
                    model=MODEL,
                    alias="champion",
                    from_version=str(day - 1) if day > 1 else None,
                    to_version=str(day),
                    reason="old",
                    actor="cli",
                    ts=datetime(2026, 1, day, 10, tzinfo=UTC),
                )
            )
    engine.dispose()
    return table


def test_a_trail_from_before_the_chain_is_sealed_on_first_use(state_url: str, client: Any) -> None:
    """Rows written by a version without the chain get their hashes, in row order, the first time it opens; until
    the model's next move the registry holds no head for them, and verify says so without failing."""
    legacy_trail(state_url)
    client.create_registered_model(MODEL)
    audit = AuditTrail(state_url)
    entries = audit.entries(MODEL)
    assert [(e.seq, e.to_version) for e in entries] == [(1, "1"), (2, "2")]
    sealed = verify(audit, MODEL, client)
    assert sealed.ok and "sealed on upgrade" in sealed.summary(), sealed.problems
    audit.mirror_heads_to(client)
    audit.record(MODEL, "champion", "2", "3", reason="new", actor="cli")
    report = verify(audit, MODEL, client)
    assert report.ok and report.head is not None and report.head.seq == 3 and not report.notes, report.problems
    assert AuditTrail(state_url).entries(MODEL) == audit.entries(MODEL)  # a second open seals nothing again
    audit.dispose()


def test_an_upgrade_interrupted_after_adding_the_columns_still_seals_only_the_old_rows(state_url: str) -> None:
    """A process that added the columns died before sealing (or another process appended first): the rows written
    before the upgrade are sealed under the head lock by whoever comes next; a row written without a hash after
    the upgrade is never sealed, and verify names it."""
    from airflow_mlops.deploy import audit as audit_module

    table = legacy_trail(state_url)
    engine = create_engine(state_url)
    audit_module.metadata.create_all(engine)
    assert audit_module._add_chain_columns(engine) == 2  # the columns, and the newest old row recorded
    with engine.begin() as conn:  # then a row from an old-version process, after the upgrade
        conn.execute(
            table.insert().values(
                model=MODEL, alias="champion", from_version="2", to_version="9", reason="late", actor="old worker",
                ts=datetime(2026, 1, 5, tzinfo=UTC),
            )
        )  # fmt: skip
    engine.dispose()
    audit = AuditTrail(state_url)
    audit.record(MODEL, "canary", None, "3", reason="new", actor="cli")
    stored = audit.stored_entries(MODEL)
    assert [(e.seq, e.to_version) for e in stored] == [(1, "1"), (2, "2"), (None, "9"), (3, "3")]
    problem = verify(audit, MODEL, None).problems[0]
    assert "is not sealed (no hash)" in problem and "by old worker" in problem
    audit.dispose()


def test_a_failed_mirror_write_does_not_fail_the_append_and_verify_says_so(state_url: str, client: Any) -> None:
    client.create_registered_model(MODEL)
    audit = AuditTrail(state_url)
    audit.mirror_heads_to(client)
    audit.record(MODEL, "champion", None, "1", reason="first", actor="t")
    broken: Callable[..., None] = lambda *a, **k: (_ for _ in ()).throw(ConnectionError("registry down"))  # noqa: E731
    real = client.set_registered_model_tag
    client.set_registered_model_tag = broken
    audit.record(MODEL, "champion", "1", "2", reason="second", actor="t")
    client.set_registered_model_tag = real
    problem = verify(audit, MODEL, client).problems[0]
    assert "entry #2 " in problem and "a registry tag write failed" in problem
    audit.record(MODEL, "champion", "2", "3", reason="third", actor="t")  # the next append heals the mirror
    assert verify(audit, MODEL, client).ok
    audit.dispose()


def test_chain_head_text_is_parsed_strictly() -> None:
    head = ChainHead(3, "a" * 64)
    assert ChainHead.parse(str(head)) == head
    for bad in ["", "3", "x:" + "a" * 64, "3:" + "a" * 63, "3:" + "A" * 64, "-1:" + "a" * 64]:
        with pytest.raises(ValueError, match="expected '<seq>:<64 hex digits>'"):
            ChainHead.parse(bad)


def test_cli_audit_verify(deployments: Deployments, capsys: pytest.CaptureFixture[str]) -> None:
    url, uri = deployments.audit.url, deployments.client.tracking_uri
    assert cli.main(["audit", "verify", MODEL, "--state-db", url, "--tracking-uri", uri]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--state-db", url, "--no-registry"]) == 0
    assert "registry not checked" in capsys.readouterr().out
    second = ids(deployments)[1]
    sql(deployments, "UPDATE mlops_alias_events SET to_version = '9' WHERE id = :id", id=second)
    assert cli.main(["audit", "verify", "--state-db", url, "--tracking-uri", uri]) == 1
    err = capsys.readouterr().err
    assert f"{MODEL}: audit chain BROKEN: entry #2 (row id {second}," in err and "(edited)" in err
    with pytest.raises(SystemExit):
        cli.main(["audit", "verify", "--state-db", url, "--tracking-uri", ""])
    # the whole trail deleted: the registry still holds the model's head, so verifying "every model" finds it
    sql(deployments, "DELETE FROM mlops_alias_events")
    sql(deployments, "DELETE FROM mlops_audit_heads")
    assert cli.main(["audit", "verify", "--state-db", url, "--tracking-uri", uri]) == 1
    assert f"{MODEL}: audit chain BROKEN: the registry's audit head is entry #" in capsys.readouterr().err


def test_a_chain_the_registry_never_confirmed_is_reported(state_url: str, client: Any) -> None:
    """No ``mlops.audit_head`` tag (entries appended without a registry), and a model missing from the registry."""
    client.create_registered_model(MODEL)
    audit = AuditTrail(state_url)
    audit.record(MODEL, "champion", None, "1", reason="first", actor="t")
    audit.record("ghost", "champion", None, "1", reason="first", actor="t")
    assert (
        "the registry holds no audit head (tag mlops.audit_head) for a chain of 1 entries"
        in (verify(audit, MODEL, client).problems[0])
    )
    assert verify(audit, "ghost", client).problems == [
        "the registry holds no audit head (tag mlops.audit_head) for a chain of 1 entries: nothing outside the "
        "database confirms them (the tag is written at every append)",
        "the registry has no model 'ghost' to confirm its 1 entries",
    ]
    audit.dispose()
