"""The Models page templates under attack: hostile values in every field family come out as inert text.

Pure rendering (``airflow_mlops.ui.render`` on hand-made records of ``airflow_mlops.ui.data``): no Airflow,
no MLflow. Each family (model name, versions, audit trail, gate, links, charts, messages) gets a value that
tries to open a tag, close the inline script, break out of an attribute with either quote, run a Jinja
expression and smuggle a ``javascript:`` URL; the tests assert the exact escaped text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from jinja2 import UndefinedError

from airflow_mlops.ui import render
from airflow_mlops.ui.data import (
    MAX_LAYOUT_TEXT,
    AuditEntry,
    Chart,
    DriftResult,
    GateResult,
    ModelDetail,
    ModelSummary,
    PendingApproval,
    Series,
    VersionRow,
    summarize,
    to_jsonable,
)

PAYLOAD = "<script>alert(1)</script>\"'{{ 7*7 }}javascript:alert(1)"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;{{ 7*7 }}javascript:alert(1)"
NONCE = "n0nce-T3st"
DASH = render.DASH
ALL_ACTIONS = "/required_actions?response_received=false"


def summary(**fields: Any) -> ModelSummary:
    return ModelSummary(**{"name": "fraud", **fields})


def version_row(**fields: Any) -> VersionRow:
    row: dict[str, Any] = {
        "version": "1",
        "run_id": None,
        "created_at": None,
        "gate": None,
        "gate_report": None,
        "metric": None,
        "aliases": [],
        "rollback_reason": None,
        "rejected_reason": None,
        "run_url": None,
        "version_url": None,
    }
    return VersionRow(**{**row, **fields})


def detail(model: ModelSummary, versions: list[VersionRow] | None = None, charts: list[Chart] | None = None) -> Any:
    return ModelDetail(model, "roc_auc", True, versions or [], charts or [], 24, "hour")


def list_html(*models: ModelSummary, config_errors: dict[str, str] | None = None) -> str:
    return render.list_page(list(models), config_errors or {}, ALL_ACTIONS, NONCE)


def model_html(model_detail: ModelDetail) -> str:
    return render.model_page(model_detail, ALL_ACTIONS, NONCE)


def assert_inert(html: str, scripts: int = 1) -> None:
    """Only our own scripts, no raw payload, no ``javascript:`` link, and a Jinja expression stays text."""
    assert PAYLOAD not in html
    assert html.count("<script") == scripts, "only the page's own scripts"
    assert html.count(f"<script nonce='{NONCE}'>") == 1
    assert not re.search(r"href=['\"]\s*javascript:", html, flags=re.IGNORECASE)
    assert "{{ 7*7 }}" in html and ">49<" not in html, "values are never evaluated as templates"


def hrefs(html: str) -> list[str]:
    return re.findall(r"\shref=['\"]([^'\"]*)", html)


def embedded_json(html: str) -> tuple[str, Any]:
    match = re.search(r'<script type="application/json" id="mlops-chart-data">(.*?)</script>', html, flags=re.S)
    assert match is not None
    return match.group(1), json.loads(match.group(1))


def test_a_hostile_model_name_and_description_are_text_and_the_link_encodes_the_name() -> None:
    model = summary(name=PAYLOAD, description=PAYLOAD, errors=[PAYLOAD, "second"])

    page = list_html(model, config_errors={PAYLOAD: PAYLOAD})
    assert_inert(page)
    assert (
        "<td><a href='models/%3Cscript%3Ealert%281%29%3C%2Fscript%3E%22%27%7B%7B%207%2A7%20%7D%7D"
        "javascript%3Aalert%281%29'>"
        f"<b>{ESCAPED}</b></a><div class='small muted'>{ESCAPED}</div>"
        f"<div class='errors'>{ESCAPED}<br>second</div></td>"
    ) in page
    assert f"<h2>Broken configs</h2>\n<ul class='errors'>\n<li><b>{ESCAPED}</b>: {ESCAPED}</li>\n</ul>" in page

    html = model_html(detail(model))
    assert_inert(html, scripts=2)
    assert f"<title>{ESCAPED} · Models</title>" in html
    assert f"<h1>{ESCAPED}</h1>\n<div class='muted'>{ESCAPED}</div>" in html
    raw, data = embedded_json(html)
    assert data["model"] == PAYLOAD, "the JSON keeps the value"
    assert "</" not in raw and "\\u003c/script\\u003e" in raw and "\\u0027" in raw


def test_hostile_versions_aliases_and_version_tags_are_text() -> None:
    model = summary(
        champion=PAYLOAD,
        previous=PAYLOAD,
        links={"mlflow_champion": "http://mlflow.example/#/models/fraud/versions/1"},
        traffic={
            "champion": {"version": PAYLOAD, "percent": 80.0},
            "canary": {"version": PAYLOAD, "percent": 20},
            "shadow": {"version": PAYLOAD, "percent": 0},
        },
    )
    row = version_row(
        version=PAYLOAD,
        run_id=PAYLOAD,
        created_at=PAYLOAD,
        aliases=[PAYLOAD, "shadow"],
        rollback_reason=PAYLOAD,
        run_url="http://mlflow.example/#/runs/r1",
    )

    for html, scripts in ((list_html(model), 1), (model_html(detail(model, [row])), 2)):
        assert_inert(html, scripts)
        assert (
            '<a href="http://mlflow.example/#/models/fraud/versions/1" data-new-tab target="_blank" '
            f'rel="noopener noreferrer">v{ESCAPED}</a>'
        ) in html
        assert (
            f"<span class='chip'>champion v{ESCAPED} 80%</span> <span class='chip'>canary v{ESCAPED} 20%</span> "
            f"<span class='chip'>shadow v{ESCAPED} mirrored</span>"
        ) in html
    html = model_html(detail(model, [row]))
    assert f"<td>v{ESCAPED}</td>" in html, "previous, without a link"
    assert f"<td>v{ESCAPED}</td>\n<td><span class='chip'>{ESCAPED}</span> <span class='chip'>shadow</span></td>" in html
    assert 'rel="noopener noreferrer">&lt;script&gt;aler</a></td>' in html, "the run id, cut to 12 characters"
    assert f"<td class='small'>{ESCAPED}</td>\n<td class='small'>{ESCAPED}</td>" in html


def test_a_hostile_audit_entry_is_text_on_both_pages() -> None:
    entry = AuditEntry(ts=PAYLOAD, alias=PAYLOAD, from_version=None, to_version=PAYLOAD, reason=PAYLOAD, actor=PAYLOAD)
    model = summary(audit=[entry])

    page = list_html(model)
    assert_inert(page)
    assert (
        f"<div class='small'><b>{ESCAPED}</b> {DASH} → {ESCAPED}: {ESCAPED} "
        f"<span class='muted'>(&lt;script&gt;alert(1)&lt;/s, {ESCAPED})</span></div>"
    ) in page, "the time cut to 19 characters"

    html = model_html(detail(model))
    assert_inert(html, scripts=2)
    assert (
        f"<tr><td class='small'>{ESCAPED}</td><td>{ESCAPED}</td><td>{DASH} → {ESCAPED}</td><td>{ESCAPED}</td>"
        f"<td class='small muted'>{ESCAPED}</td></tr>"
    ) in html


def test_a_hostile_gate_result_and_report_are_text_and_a_javascript_gate_link_is_dropped() -> None:
    gate = GateResult(version=PAYLOAD, result=PAYLOAD, report=PAYLOAD, version_url="javascript:alert(1)")
    model = summary(last_gate=gate)
    row = version_row(gate=PAYLOAD, gate_report=PAYLOAD)

    for html, scripts in ((list_html(model), 1), (model_html(detail(model, [row])), 2)):
        assert_inert(html, scripts)
        assert f"<td><span class='bad'>{ESCAPED}</span> v{ESCAPED}</td>" in html
    html = model_html(detail(model, [row]))
    assert f"<td><span class='bad'>{ESCAPED}</span></td>" in html, "a version's gate"
    assert html.count(ESCAPED) == 3, "the report location (artifact URI) is not shown"


def test_hostile_drift_features_and_approvals_are_text() -> None:
    drift = DriftResult(
        run_id="r1",
        window_end=PAYLOAD,
        act=True,
        scores={PAYLOAD: 0.3},
        max_feature=PAYLOAD,
        max_psi=0.3,
        run_url="http://mlflow.example/#/runs/r1",
        disagreement=PAYLOAD,
        label_coverage=0.125,
        feedback_warning=PAYLOAD,
    )
    approval = PendingApproval(PAYLOAD, "run", PAYLOAD, -1, PAYLOAD, None, None, [], "/dags/x/required_actions?a=1&b=2")

    page = list_html(summary(last_drift=drift, pending_approvals=[approval]))

    assert_inert(page)
    assert f"<span class='bad'>act</span> max PSI {ESCAPED} = 0.300<div class='small muted'>{ESCAPED}</div>" in page
    assert f"<div class='small'><span class='chip'>{ESCAPED} 0.300</span></div>" in page
    assert f">evidently disagrees: {ESCAPED}</div>" in page
    assert "<div class='small muted'>labels on 12.5 % of sampled answers</div>" in page
    assert f">one-sided feedback: {ESCAPED}</div>" in page
    assert (
        f'<li><a href="/dags/x/required_actions?a=1&amp;b=2" data-top target="_top">{ESCAPED}</a> '
        f"<span class='small muted'>{ESCAPED} / {ESCAPED}</span></li>"
    ) in page


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "java\tscript:alert(1)",
        "\x01javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "http:no-host",
    ],
    ids=["plain", "mixed-case", "leading-space", "tab", "control-char", "data", "vbscript", "other-host", "no-host"],
)
def test_a_link_that_is_not_http_or_relative_is_shown_as_text(url: str) -> None:
    model = summary(
        champion="1",
        links={"mlflow_champion": url, "mlflow_model": url},
        last_gate=GateResult(version="2", result="passed", version_url=url),
        last_drift=DriftResult("r", None, False, {}, None, None, run_url=url),
        pending_approvals=[PendingApproval("d", "r", "t", -1, "Approve v2", None, None, [], url)],
    )
    row = version_row(version="3", run_id="abc", version_url=url, run_url=url)

    for html in (render.list_page([model], {}, url, NONCE), render.model_page(detail(model, [row]), url, NONCE)):
        assert set(hrefs(html)) <= {
            "models/fraud",
            "../",
            "?hours=1",
            "?hours=6",
            "?hours=24",
            "?hours=168",
            "fraud/versions/3/card",  # our own page, built from the model's name and version number
        }
        assert "<td>v1</td>" in html and "<span class='ok'>passed</span> v2" in html and "<li>Approve v2 " in html
    page = render.message_page("Log in", "Not authenticated", NONCE, (url, "Log in"))
    assert "<p>Log in</p>" in page and hrefs(page) == []


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://mlflow:5000/#/runs/1", True),
        ("HTTPS://mlflow.example/x", True),
        ("/dags/a/runs/b/tasks/c/required_actions", True),
        ("?hours=1", True),
        ("models/fraud", True),
        ("", False),
        (None, False),
        ("javascript:alert(1)", False),
        ("mailto:a@b", False),
        ("https:///nohost", False),
    ],
    ids=["http", "https-upper", "path", "query", "relative", "empty", "none", "javascript", "mailto", "no-host"],
)
def test_link_url_allows_http_and_relative_urls_only(url: str | None, allowed: bool) -> None:
    assert render.link_url(url) is allowed


def test_hostile_chart_labels_are_text_in_well_formed_svg_and_escaped_json() -> None:
    chart = Chart(
        id="error_rate",
        title=PAYLOAD,
        x_kind="category",
        y_label=PAYLOAD,
        series=[Series(PAYLOAD, [(PAYLOAD, 0.5), ("b", 0.25)])],
        thresholds=[(PAYLOAD, 0.4)],
        note=PAYLOAD,
    )
    html = model_html(detail(summary(), charts=[chart, Chart("drift", "Drift", "time", "PSI", [])]))

    assert_inert(html, scripts=2)
    assert f"<div class='chart' id='chart-error_rate'><h3>{ESCAPED}</h3>" in html
    assert f"role='img' aria-label='{ESCAPED}' data-chart='error_rate' width='100%'>" in html
    assert f"<title>{ESCAPED} @ {ESCAPED}: 0.5</title></circle>" in html
    assert f"<title>{ESCAPED} 0.4</title></line>" in html
    assert f"<text x='52.0' y='230' text-anchor='start'>{ESCAPED}</text>" in html, "the x axis"
    assert "<text x='548.0' y='230' text-anchor='end'>b</text>" in html
    assert "transform='rotate(-90 12 113.0)'>" + ESCAPED + "</text>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;{</text>" in html, "legend: 28 characters"
    assert f"<div class='small muted'>{ESCAPED}</div>" in html
    assert "<text x='280.0' y='125.0' text-anchor='middle'>no data</text>" in html
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed, entities included
    assert ElementTree.fromstring(svgs[0]).get("aria-label") == PAYLOAD
    raw, data = embedded_json(html)
    assert "</" not in raw and data["charts"]["error_rate"]["series"][0]["name"] == PAYLOAD


def test_a_hostile_message_page_is_text() -> None:
    page = render.message_page(PAYLOAD, PAYLOAD, NONCE, ("/auth/login?next=/mlops/&x=1", PAYLOAD))

    assert_inert(page)
    assert f"<title>{ESCAPED}</title>" in page
    assert (
        f"<h1>{ESCAPED}</h1>\n<p>{ESCAPED}</p>\n"
        f'<p><a href="/auth/login?next=/mlops/&amp;x=1" data-top target="_top">{ESCAPED}</a></p>'
    ) in page


def test_the_style_and_script_are_the_static_files_inlined_under_the_nonce() -> None:
    static = Path(render.__file__).with_name("static")
    page = render.message_page("t", "m", NONCE)

    assert f"<style nonce='{NONCE}'>\n{(static / 'models.css').read_text()}\n</style>" in page
    assert f"<script nonce='{NONCE}'>\n{(static / 'models.js').read_text()}\n</script>" in page
    assert "<link" not in page and "<script src" not in page and "@import" not in page


def test_a_static_file_that_could_end_its_element_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "models.js").write_text("var s = '</script><script>alert(1)';\n")
    monkeypatch.setattr(render.resources, "files", lambda package: tmp_path)

    with pytest.raises(ValueError, match=r"ui/static/models.js: contains '<'; inlined files may not"):
        render.static_text("models.js")


def test_a_missing_template_value_raises_instead_of_rendering_blank() -> None:
    env = render.environment()

    with pytest.raises(UndefinedError, match="'message' is undefined"):
        env.get_template("message.html").render(title="t", link=None, nonce=NONCE)
    with pytest.raises(UndefinedError, match="'nonce' is undefined"):
        env.get_template("message.html").render(title="t", message="m", link=None)
    with pytest.raises(UndefinedError, match="has no attribute 'summary'"):
        env.get_template("model.html").render(
            detail=object(), charts=[], chart_data={}, all_approvals_url=ALL_ACTIONS, nonce=NONCE
        )


def test_the_environment_is_built_once_and_escapes_every_template() -> None:
    env = render.environment()

    assert render.environment() is env
    assert env.autoescape("list.html") is True and env.autoescape(None) is True  # type: ignore[operator]
    assert env.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"


# -- deployment target ----------------------------------------------------------------------------------


def target_summary(tag: str | None, **fields: Any) -> ModelSummary:
    """A summary built as the pages build it, for a SageMaker target whose applied-layout tag is ``tag``."""
    return summarize(
        name="fraud",
        description="",
        aliases={},
        canary_percent=0.0,
        versions=[],
        monitoring=[],
        audit=[],
        approvals=[],
        mlflow_base=None,
        airflow_base="/",
        target=fields.pop("target", "sagemaker"),
        endpoint=fields.pop("endpoint", "fraud-prod"),
        target_applied=tag,
    )


def test_a_cloud_target_shows_its_endpoint_and_the_layout_last_applied_on_both_pages() -> None:
    model = target_summary('{"weights": {"2": 5.0, "1": 95.0}, "shadow": null}')

    assert (model.target, model.endpoint, model.endpoint_layout) == ("sagemaker", "fraud-prod", "v1 95%, v2 5%")
    assert {k: to_jsonable(model)[k] for k in ("target", "endpoint", "endpoint_layout")} == {
        "target": "sagemaker",
        "endpoint": "fraud-prod",
        "endpoint_layout": "v1 95%, v2 5%",
    }
    cell = (
        "<td><span class='chip'>sagemaker</span> endpoint <b>fraud-prod</b>\n"
        "<div class='small'>last applied: v1 95%, v2 5%</div>\n"
        "<div class='small muted'><code>airflow-mlops status fraud</code> shows the live endpoint</div></td>"
    )
    for html in (list_html(model), model_html(detail(model))):
        assert cell in html
        assert "<th>Target</th>" in html and "local gateway" not in html
    shadowed = target_summary('{"weights": {"1": 100}, "shadow": "3"}', target="azureml", endpoint="fraud-az")
    assert "<span class='chip'>azureml</span> endpoint <b>fraud-az</b>" in list_html(shadowed)
    assert "last applied: v1 100%; shadow v3</div>" in list_html(shadowed)


def test_the_local_target_shows_the_local_gateway_and_ignores_an_applied_tag() -> None:
    model = target_summary('{"weights": {"1": 100}, "shadow": null}', target="local", endpoint=None)

    assert (model.target, model.endpoint, model.endpoint_layout) == ("local", None, None)
    for html in (list_html(model), model_html(detail(model))):
        assert "<td><span class='chip'>local</span> <span class='muted'>local gateway</span></td>" in html
        assert "last applied" not in html and "airflow-mlops status" not in html
    assert "local gateway" in list_html(summary()), "the default target"


@pytest.mark.parametrize(
    "tag",
    [None, "", "not json", "[1, 2]", '{"weights": [1]}', '{"weights": {"1": "lots"}}', "[" * 5000, " " * 9000 + "{}"],
    ids=["missing", "empty", "not-json", "list", "weights-list", "weight-text", "deeply-nested", "oversized"],
)
def test_a_missing_or_unreadable_applied_tag_shows_the_layout_as_unknown(tag: str | None) -> None:
    model = target_summary(tag)

    assert model.endpoint_layout is None and model.errors == []
    for html in (list_html(model), model_html(detail(model))):
        assert "<div class='small'>last applied: <span class='muted'>unknown</span></div>" in html


def test_a_hostile_applied_tag_is_escaped_text_and_bounded() -> None:
    hostile = json.dumps({"weights": {"?" + PAYLOAD: 100.0}, "shadow": "?" + PAYLOAD})
    model = target_summary(hostile, endpoint=PAYLOAD)

    assert model.endpoint_layout == f"variant {PAYLOAD!r} 100%; shadow variant {PAYLOAD!r}"
    for html, scripts in ((list_html(model), 1), (model_html(detail(model)), 2)):
        assert_inert(html, scripts)
        assert "last applied: variant &#39;&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert f"endpoint <b>{ESCAPED}</b>" in html

    long = target_summary(json.dumps({"weights": {str(v): 1.0 for v in range(500)}, "shadow": None}))
    assert long.endpoint_layout is not None
    assert len(long.endpoint_layout) == MAX_LAYOUT_TEXT and long.endpoint_layout.endswith("\u2026")
    assert long.endpoint_layout.startswith("v0 1%, v1 1%, v2 1%")
