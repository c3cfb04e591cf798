"""One small YAML fixture per config rule, each asserting the exact error text the loader produces.

Every message names the file, the field path, the value received and what is allowed (see
``airflow_mlops.config.loader``). The fixtures are written to ``tmp_path`` as ``fraud_model.yaml``
so the name/file-stem rule holds unless a case breaks it on purpose.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from airflow_mlops.config.loader import (
    LoadedConfig,
    config_files,
    default_config_dir,
    load_config,
    load_configs,
)
from airflow_mlops.config.schema import parse_duration
from airflow_mlops.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "dags" / "configs"
ALLOWLIST_ENV = "AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST"

#: A minimal valid config; every case below changes exactly one thing.
MINIMAL = """\
name: fraud_model
task: classification
data:
  uri: data.csv
target: is_fraud
features:
  numeric: [amount, hour]
  categorical: [merchant_category]
estimator:
  class: sklearn.linear_model.LogisticRegression
"""

TOP_LEVEL_FIELDS = (
    "['approval', 'card', 'data', 'description', 'estimator', 'evaluation', 'expectations', 'features', 'gates', "
    "'mlflow_conn_id', 'monitoring', 'name', 'owner', 'positive_class', 'resources', 'retraining', 'rollout', "
    "'schedule', 'serving', 'tags', 'target', 'task', 'training']"
)
CLASSIFICATION = (
    "['roc_auc', 'f1', 'precision', 'recall', 'accuracy', 'balanced_accuracy', 'log_loss', 'f1_macro', "
    "'f1_weighted', 'f1_micro', 'precision_macro', 'precision_weighted', 'precision_micro', 'recall_macro', "
    "'recall_weighted', 'recall_micro', 'roc_auc_ovr', 'roc_auc_ovr_weighted', 'roc_auc_ovo', "
    "'precision|recall|f1.<class>']"
)
DURATION_HINT = "expected a duration like '30s', '15m', '2h', '7d' or a number of seconds"


@pytest.fixture(autouse=True)
def _default_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the built-in estimator allow-list, whatever the caller's environment says."""
    monkeypatch.delenv(ALLOWLIST_ENV, raising=False)


def write(folder: Path, text: str, stem: str = "fraud_model", suffix: str = ".yaml") -> Path:
    path = folder / f"{stem}{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return str(e.value)


# --- one rule per fixture ---------------------------------------------------------------------------------

RULES = [
    pytest.param(
        MINIMAL + "colour: blue\n",
        [f"colour: got 'blue'; unknown field; allowed fields here: {TOP_LEVEL_FIELDS}"],
        id="unknown-top-level-field-lists-allowed-fields",
    ),
    pytest.param(
        MINIMAL + "gates:\n  champions: {metric: roc_auc}\n",
        [
            "gates.champions: got {'metric': 'roc_auc'}; unknown field; "
            "allowed fields here: ['attributions', 'behaviour', 'champion', 'slices', 'thresholds']"
        ],
        id="unknown-nested-field-lists-allowed-fields",
    ),
    pytest.param(
        MINIMAL.replace("  class: sklearn.linear_model.LogisticRegression\n", "  klass: sklearn.svm.SVC\n"),
        ["estimator.klass: got 'sklearn.svm.SVC'; unknown field; allowed fields here: ['class', 'params', 'seed']"],
        id="misspelt-alias-reports-the-unknown-field",
    ),
    pytest.param(
        MINIMAL.replace("target: is_fraud\n", ""),
        ["target: this field is required"],
        id="missing-required-field",
    ),
    pytest.param(
        MINIMAL.replace("task: classification", "task: clustering"),
        ["task: got 'clustering'; expected: input should be 'classification' or 'regression'"],
        id="wrong-literal-task",
    ),
    pytest.param(
        MINIMAL.replace("task: classification", "task: clustering") + "colour: blue\n",
        [
            "task: got 'clustering'; expected: input should be 'classification' or 'regression'",
            f"colour: got 'blue'; unknown field; allowed fields here: {TOP_LEVEL_FIELDS}",
        ],
        id="every-problem-reported-one-per-line",
    ),
    pytest.param(
        MINIMAL.replace("name: fraud_model", "name: Fraud-Model"),
        ["name: got 'Fraud-Model'; expected: string should match pattern '^[a-z][a-z0-9_]{1,62}$'"],
        id="bad-name-pattern",
    ),
    pytest.param(
        MINIMAL.replace("uri: data.csv", "uri: ftp://files.example.com/data.csv"),
        [
            "data.uri: got 'ftp://files.example.com/data.csv'; expected a local path or a file://, s3://, "
            "wasbs://, wasb://, abfs:// or abfss:// URI (scheme 'ftp' is not supported)"
        ],
        id="unsupported-data-uri-scheme",
    ),
    pytest.param(
        MINIMAL.replace("sklearn.linear_model.LogisticRegression", "os.system"),
        [
            "estimator.class: got 'os.system'; expected a dotted class path under the allow-list ['sklearn.'] "
            "(extend it with [mlops] estimator_allowlist or $AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST)"
        ],
        id="estimator-outside-allow-list",
    ),
    pytest.param(
        MINIMAL.replace("sklearn.linear_model.LogisticRegression", "sklearn.linear_model.Logistic Regression"),
        [
            "estimator.class: got 'sklearn.linear_model.Logistic Regression'; expected a dotted class path under "
            "the allow-list ['sklearn.'] "
            "(extend it with [mlops] estimator_allowlist or $AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST)"
        ],
        id="estimator-not-a-dotted-path",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  metrics: [roc_auc, rmse]\n",
        [f"evaluation.metrics[1]: got 'rmse'; expected one of {CLASSIFICATION} for task 'classification'"],
        id="metric-not-valid-for-task",
    ),
    pytest.param(
        MINIMAL.replace("task: classification", "task: regression") + "gates:\n  champion: {metric: roc_auc}\n",
        ["gates.champion.metric: got 'roc_auc'; expected one of ['rmse', 'mae', 'r2'] for task 'regression'"],
        id="champion-metric-not-valid-for-task",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  primary_metric: r2\n",
        [f"evaluation.primary_metric: got 'r2'; expected one of {CLASSIFICATION} for task 'classification'"],
        id="primary-metric-not-valid-for-task",
    ),
    pytest.param(
        MINIMAL + "gates:\n  slices: [{column: country, metric: roc_auc, max_gap: 0.1}]\n",
        ["gates.slices[0].column: got 'country'; expected one of the features or of data.audit_columns"],
        id="slice-column-not-a-feature",
    ),
    pytest.param(
        MINIMAL.replace("  uri: data.csv\n", "  uri: data.csv\n  audit_columns: [gender, hour]\n"),
        [
            "data.audit_columns[1]: got 'hour'; expected a column that is neither a feature nor the target (an audit "
            "column is never given to the model)"
        ],
        id="audit-column-is-a-feature",
    ),
    pytest.param(
        MINIMAL.replace("  uri: data.csv\n", "  uri: data.csv\n  audit_columns: [gender, gender]\n"),
        ["data.audit_columns: got ['gender', 'gender']; expected each column once"],
        id="audit-column-twice",
    ),
    pytest.param(
        MINIMAL.replace("target: is_fraud", "target: amount"),
        ["target: got 'amount'; expected a column that is not also a feature"],
        id="target-is-also-a-feature",
    ),
    pytest.param(
        MINIMAL.replace("categorical: [merchant_category]", "categorical: [hour]"),
        [
            "features: got {'numeric': ['amount', 'hour'], 'categorical': ['hour']}; "
            "expected each column in one list only; ['hour'] are both numeric and categorical"
        ],
        id="feature-in-both-lists",
    ),
    pytest.param(
        MINIMAL + "gates:\n  thresholds: [{metric: roc_auc}]\n",
        ["gates.thresholds[0]: got {'metric': 'roc_auc'}; expected 'min' and/or 'max'"],
        id="threshold-with-no-bound",
    ),
    pytest.param(
        MINIMAL + "approval:\n  timeout: 3 weeks\n",
        [f"approval.timeout: got '3 weeks'; {DURATION_HINT}"],
        id="invalid-duration",
    ),
    pytest.param(
        MINIMAL + "approval:\n  timeout: -5\n",
        ["approval.timeout: got -5; a duration cannot be negative"],
        id="negative-duration",
    ),
    pytest.param(
        MINIMAL + "retraining:\n  window: soon\n",
        [f"retraining.window: got 'soon'; {DURATION_HINT}"],
        id="invalid-optional-duration",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  canary: {steps: [50, 25, 100]}\n",
        ["rollout.canary.steps: got [50, 25, 100]; expected strictly increasing percentages"],
        id="canary-steps-not-increasing",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  canary: {steps: [5, 5, 100]}\n",
        ["rollout.canary.steps: got [5, 5, 100]; expected strictly increasing percentages"],
        id="canary-steps-repeated",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  canary: {steps: [5, 50]}\n",
        ["rollout.canary.steps: got [5, 50]; expected the last step to be 100"],
        id="canary-steps-not-ending-in-100",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  canary: {steps: [50, 150]}\n",
        ["rollout.canary.steps[1]: got 150; expected: input should be less than or equal to 100"],
        id="canary-step-over-100",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  test_size: 1.5\n",
        ["evaluation.test_size: got 1.5; expected: input should be less than 1"],
        id="test-size-out-of-range",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  split: time\n",
        ["evaluation.time_column: missing; expected the column ordering rows in time (split: time)"],
        id="time-split-without-time-column",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  time_column: ts\n",
        ["evaluation.time_column: got 'ts' with split 'unset'; expected it only with split: time"],
        id="time-column-without-time-split",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  split: random\n  stratify: false\n",
        [
            "evaluation.stratify: got False next to evaluation.split 'random'; expected only evaluation.split "
            "(stratify is its older spelling)"
        ],
        id="stratify-next-to-split",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  split: shuffled\n",
        ["evaluation.split: got 'shuffled'; expected: input should be 'random', 'stratified' or 'time'"],
        id="unknown-split",
    ),
    pytest.param(
        MINIMAL.replace("task: classification", "task: regression") + "evaluation:\n  split: stratified\n",
        ["evaluation.split: got 'stratified' for task 'regression'; expected random or time"],
        id="stratified-regression",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  split: time\n  time_column: ts\n  group_column: ts\n",
        ["evaluation.group_column: got 'ts'; expected a column other than time_column"],
        id="group-column-is-time-column",
    ),
    pytest.param(
        MINIMAL + "evaluation:\n  split: random\n  group_column: is_fraud\n",
        ["evaluation.group_column: got 'is_fraud'; expected a column other than the target"],
        id="group-column-is-target",
    ),
    pytest.param(
        MINIMAL + "monitoring:\n  thresholds: {psi_warn: 0.3, psi_act: 0.2}\n",
        ["monitoring.thresholds: got {'psi_warn': 0.3, 'psi_act': 0.2}; expected psi_act >= psi_warn"],
        id="psi-act-below-warn",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  target: sagemaker\n  shadow: {enabled: false}\n",
        [
            "rollout.target_options.endpoint_name: this field is required",
            "rollout.target_options.execution_role_arn: this field is required",
            "rollout.target_options.image_uri: this field is required",
            "rollout.target_options.model_data_s3_uri: this field is required",
        ],
        id="sagemaker-target-needs-its-options",
    ),
    pytest.param(
        MINIMAL
        + "rollout:\n  target: sagemaker\n  shadow: {enabled: false}\n  target_options:\n"
        + "    endpoint_name: fraud_prod\n    execution_role_arn: arn:aws:iam::12:role/x\n"
        + "    image_uri: 1.dkr.ecr.us-east-1.amazonaws.com/serve:1\n    model_data_s3_uri: s3://bkt/m\n"
        + "    instance_count: 0\n    aws_secret_access_key: abc\n",
        [
            "rollout.target_options.endpoint_name: got 'fraud_prod'; expected: string should match pattern "
            "'^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$'",
            "rollout.target_options.execution_role_arn: got 'arn:aws:iam::12:role/x'; expected: string should match "
            "pattern '^arn:aws[a-z\\-]*:iam::\\d{12}:role/[\\w+=,.@\\-/]+$'",
            "rollout.target_options.instance_count: got 0; expected: input should be greater than or equal to 1",
            "rollout.target_options.aws_secret_access_key: got 'abc'; unknown field; allowed 'sagemaker' options: "
            "['aws_conn_id', 'data_capture_s3_uri', 'endpoint_name', 'execution_role_arn', 'image_uri', "
            "'instance_count', 'instance_type', 'latency_statistic', 'metrics_delay', 'model_data_s3_uri', 'region', "
            "'update_timeout']",
        ],
        id="sagemaker-options-are-checked-and-hold-no-secrets",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  target_options: {endpoint_name: x}\n",
        ["rollout.target_options.endpoint_name: got 'x'; unknown field; the 'local' target takes no options"],
        id="local-target-takes-no-options",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  target: azureml\n  target_options: {endpoint_name: fraud-ep}\n",
        [
            "rollout.target_options: got {'endpoint_name': 'fraud-ep'}; expected azure_conn_id, or all of "
            "subscription_id, resource_group and workspace (missing: ['subscription_id', 'resource_group', "
            "'workspace'])"
        ],
        id="azureml-needs-a-workspace",
    ),
    pytest.param(
        MINIMAL + "rollout:\n  target: sagemaker\n  target_options: [endpoint]\n",
        [
            "rollout.target_options: got list; expected a mapping of the 'sagemaker' target's options "
            "['aws_conn_id', 'data_capture_s3_uri', 'endpoint_name', 'execution_role_arn', 'image_uri', "
            "'instance_count', 'instance_type', 'latency_statistic', 'metrics_delay', 'model_data_s3_uri', 'region', "
            "'update_timeout']"
        ],
        id="target-options-must-be-a-mapping",
    ),
    pytest.param(
        MINIMAL
        + "rollout:\n  target: sagemaker\n  target_options:\n    endpoint_name: fraud-prod\n"
        + "    execution_role_arn: arn:aws:iam::123456789012:role/r\n"
        + "    image_uri: 1.dkr.ecr.us-east-1.amazonaws.com/serve:1\n    model_data_s3_uri: s3://bucket/m\n",
        [
            "rollout.shadow.enabled: got true without rollout.target_options.data_capture_s3_uri; expected data "
            "capture on with target 'sagemaker': the shadow gate compares the shadow's answers with the champion's, "
            "and a SageMaker endpoint's answers are only in its data capture. Set data_capture_s3_uri, or "
            "rollout.shadow.enabled: false"
        ],
        id="sagemaker-shadow-gate-needs-answers",
    ),
    pytest.param(
        MINIMAL + "resources:\n  queue: 'gpu pool; rm -rf'\n",
        [
            "resources.queue: got 'gpu pool; rm -rf'; expected: string should match pattern "
            "'^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,199}$'"
        ],
        id="queue-name-is-a-plain-word",
    ),
]


@pytest.mark.parametrize(("text", "expected"), RULES)
def test_rule_error_message(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == "\n".join(f"{path}: {line}" for line in expected)


def test_minimal_fixture_is_valid(tmp_path: Path) -> None:
    """Guards the table above: each case must fail because of its own change, not the base."""
    loaded = load_config(write(tmp_path, MINIMAL))
    assert loaded.name == "fraud_model"
    assert loaded.config.metrics == ["roc_auc", "accuracy", "f1"]
    assert loaded.config.primary_metric == "roc_auc"
    assert loaded.config.dag_ids["train"] == "fraud_model__train"


def test_name_must_match_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, stem="other_model")
    assert error_of(path) == f"{path}: name: got 'fraud_model'; expected 'other_model' (the file name without suffix)"


def test_yml_suffix_is_accepted_and_stripped(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL, suffix=".yml")).name == "fraud_model"


def test_long_values_are_truncated_in_messages(tmp_path: Path) -> None:
    long = "x" * 200
    path = write(tmp_path, MINIMAL.replace("task: classification", f"task: {long}"))
    shown = repr(long)[:117] + "..."
    assert error_of(path) == f"{path}: task: got {shown}; expected: input should be 'classification' or 'regression'"


def test_unknown_field_inside_a_list_item_lists_allowed_fields(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "gates:\n  thresholds: [{metric: roc_auc, mn: 0.5}]\n")
    assert error_of(path) == (
        f"{path}: gates.thresholds[0].mn: got 0.5; unknown field; allowed fields here: ['max', 'metric', 'min']"
    )


def test_fractional_number_duration_is_one_error_on_the_field(tmp_path: Path) -> None:
    """``parse_duration`` takes float seconds, so 1.5 should either load or fail once, on the field itself."""
    path = write(tmp_path, MINIMAL + "approval:\n  timeout: 1.5\n")
    try:
        loaded = load_config(path)
    except ConfigError as e:
        message = str(e)
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"{path}: approval.timeout: got 1.5; ")
    else:
        assert parse_duration(loaded.config.approval.timeout).total_seconds() == 1.5


# --- estimator allow-list from the environment -------------------------------------------------------------


def test_allowlist_env_extends_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL.replace("sklearn.linear_model.LogisticRegression", "xgboost.XGBClassifier"))
    assert "estimator.class: got 'xgboost.XGBClassifier'" in error_of(path)

    monkeypatch.setenv(ALLOWLIST_ENV, " xgboost. , lightgbm.,")
    assert load_config(path).config.estimator.class_ == "xgboost.XGBClassifier"


def test_allowlist_env_is_listed_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWLIST_ENV, "xgboost.,lightgbm.")
    path = write(tmp_path, MINIMAL.replace("sklearn.linear_model.LogisticRegression", "catboost.CatBoostClassifier"))
    assert error_of(path) == (
        f"{path}: estimator.class: got 'catboost.CatBoostClassifier'; expected a dotted class path under the "
        "allow-list ['sklearn.', 'xgboost.', 'lightgbm.'] "
        "(extend it with [mlops] estimator_allowlist or $AIRFLOW_MLOPS_ESTIMATOR_ALLOWLIST)"
    )


@pytest.mark.parametrize(
    ("allowlist", "dotted", "allowed"),
    [
        ("mypkg", "mypkg.models.Est", True),
        ("mypkg.", "mypkg.models.Est", True),
        ("mypkg", "mypkg_evil.Est", False),
        ("mypkg.models.Est", "mypkg.models.Est", True),
        ("mypkg.models.Est", "mypkg.models.EstEvil", False),
        ("mypkg.models.Est", "mypkg.models.Est.inner", True),
    ],
)
def test_allowlist_prefixes_end_at_a_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowlist: str, dotted: str, allowed: bool
) -> None:
    """A prefix is whole module components: ``mypkg`` must not admit ``mypkg_evil`` (schema and import both)."""
    from airflow_mlops.training.estimator import resolve_estimator_class

    monkeypatch.setenv(ALLOWLIST_ENV, allowlist)
    path = write(tmp_path, MINIMAL.replace("sklearn.linear_model.LogisticRegression", dotted))
    if allowed:
        assert load_config(path).config.estimator.class_ == dotted
        return
    assert f"estimator.class: got {dotted!r}; expected a dotted class path under the allow-list" in error_of(path)
    with pytest.raises(ConfigError, match=r"estimator\.class: got"):
        resolve_estimator_class(dotted)


@pytest.mark.parametrize("value", ["/tmp/joblib-cache", "~/cache", "s3://bucket/cache", True])
def test_estimator_params_may_not_point_joblib_memory_anywhere(tmp_path: Path, value: object) -> None:
    """``memory`` makes a Pipeline (or clustering estimator) pickle to and unpickle from a folder of the
    config's choosing; only unset/None is accepted."""
    text = MINIMAL + f"  params:\n    memory: {value!r}\n"
    message = error_of(write(tmp_path, text.replace("'", "")))
    assert "estimator.params: got" in message
    assert "['memory'] may not be set: joblib caching reads and writes pickles" in message

    assert load_config(write(tmp_path, MINIMAL + "  params:\n    memory: null\n")).config.estimator.params == {
        "memory": None
    }


@pytest.mark.parametrize("cases", ["http://evil.example/cases.csv", "ftp://host/cases.csv", "gs://b/cases.csv"])
def test_behaviour_cases_from_an_unsupported_scheme_are_refused_at_validation(tmp_path: Path, cases: str) -> None:
    message = error_of(write(tmp_path, MINIMAL + f"gates:\n  behaviour:\n    cases: {cases}\n"))
    scheme = cases.split("://")[0]
    assert message == (
        f"{tmp_path / 'fraud_model.yaml'}: gates.behaviour.cases: got {cases!r}; expected a local path or a "
        f"file://, s3://, wasbs://, wasb://, abfs:// or abfss:// URI (scheme {scheme!r} is not supported)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1000000000d", "a duration can be at most 36500 days"),
        ("1180591620717411303424", "a duration can be at most 36500 days"),
        (".inf", "a duration can be at most 36500 days"),
        (".nan", "expected a duration like '30s', '15m', '2h', '7d' or a number of seconds"),
    ],
)
def test_a_duration_too_long_for_timedelta_is_a_field_error_not_a_crash(
    tmp_path: Path, value: str, message: str
) -> None:
    """Found by tests/config/test_config_properties.py: an overflowing duration escaped as OverflowError."""
    path = write(tmp_path, MINIMAL + f"approval:\n  timeout: {value}\n")
    assert error_of(path).startswith(f"{path}: approval.timeout: got ")
    assert error_of(path).endswith(message)


def test_a_loader_bug_on_one_file_does_not_hide_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_mlops.config import loader

    good = write(tmp_path, MINIMAL)
    bad = write(tmp_path, MINIMAL.replace("name: fraud_model", "name: other_model"), stem="other_model")
    real = loader.load_config

    def flaky(path: Path) -> LoadedConfig:
        if Path(path) == bad:
            raise OverflowError("boom")
        return real(path)

    monkeypatch.setattr(loader, "load_config", flaky)
    result = load_configs([good, bad])
    assert [c.path for c in result.configs] == [good]
    assert str(result.errors[bad]) == f"{bad}: could not be validated: OverflowError: boom"


# --- file-level problems: YAML syntax, shape, readability, unsafe tags ---------------------------------------


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  numeric: [amount, hour]", "  numeric: [amount, hour"))
    # the unclosed flow list on line 7 swallows the next line; the parser stops at "categorical:" (line 8)
    assert error_of(path) == f"{path}: invalid YAML (line 8, column 14): expected ',' or ']', but got ':'"


def test_tab_indentation_is_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  uri: data.csv", "\turi: data.csv"))
    assert (
        error_of(path) == f"{path}: invalid YAML (line 4, column 1): found character '\\t' that cannot start any token"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param(
            "- name: fraud_model\n- task: classification\n",
            "[{'name': 'fraud_model'}, {'task': 'classification'}]",
            id="list",
        ),
        pytest.param("just a sentence\n", "'just a sentence'", id="scalar"),
        pytest.param("", "None", id="empty-file"),
        pytest.param("# only a comment\n", "None", id="only-comments"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, shown: str) -> None:
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: got {shown}; expected a mapping of config fields at the top level"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert error_of(path) == f"{path}: cannot read file: No such file or directory"


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "fraud_model.yaml"
    path.mkdir()
    assert error_of(path) == f"{path}: cannot read file: Is a directory"


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "fraud_model.yaml"
    path.write_bytes(b"name: fraud_model\ndescription: caf\xe9\n")
    assert error_of(path).startswith(f"{path}: ")


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param("!!python/object/apply:os.system", id="object-apply"),
        pytest.param("!!python/object/new:os.system", id="object-new"),
    ],
)
def test_python_tags_are_rejected_not_executed(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, MINIMAL + f"description: {tag} ['touch {marker}']\n")
    assert error_of(path) == (
        f"{path}: invalid YAML (line 11, column 14): could not determine a constructor for the tag "
        f"'tag:yaml.org,2002:{tag.removeprefix('!!')}'"
    )
    assert not marker.exists()


def test_python_name_tag_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "!!python/name:os.system\n")
    assert error_of(path) == (
        f"{path}: invalid YAML (line 1, column 1): could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/name:os.system'"
    )


# --- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("15m", 900), (" 2h ", 7200), ("7d", 604800), (30, 30), (1.5, 1.5)],
    ids=["seconds", "minutes", "hours-padded", "days", "int", "float"],
)
def test_parse_duration(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value).total_seconds() == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [("2w", DURATION_HINT), ("1.5h", DURATION_HINT), (True, DURATION_HINT), (-1, "a duration cannot be negative")],
    ids=["unknown-unit", "fractional-string", "bool", "negative"],
)
def test_parse_duration_rejects(value: object, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration(value)  # type: ignore[arg-type]
    assert str(e.value) == message


def test_boolean_duration_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "approval:\n  timeout: true\n")
    assert error_of(path) == f"{path}: approval.timeout: got True; {DURATION_HINT}"


# --- folders: one broken file never hides the others; duplicate names -----------------------------------


def test_load_configs_keeps_good_and_reports_broken(tmp_path: Path) -> None:
    good = write(tmp_path, MINIMAL)
    broken = write(
        tmp_path, MINIMAL.replace("fraud_model", "churn_model").replace("target: is_fraud\n", ""), stem="churn_model"
    )
    (tmp_path / "notes.txt").write_text("not a config")

    files = config_files(tmp_path)
    assert files == [broken, good]
    result = load_configs(files)

    assert [c.name for c in result.configs] == ["fraud_model"]
    assert [c.path for c in result] == [good]
    assert list(result.errors) == [broken]
    assert str(result.errors[broken]) == f"{broken}: target: this field is required"


def test_load_configs_reports_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write(tmp_path / "a", MINIMAL)
    second = write(tmp_path / "b", MINIMAL)

    result = load_configs([first, second])

    assert [c.path for c in result.configs] == [first]
    assert str(result.errors[second]) == (
        f"{second}: name: got 'fraud_model'; expected a name not already used by {first}"
    )


def test_config_files_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert config_files(tmp_path / "nope") == []


def test_default_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_MLOPS_CONFIG_DIR", str(tmp_path))
    assert default_config_dir() == tmp_path
    monkeypatch.delenv("AIRFLOW_MLOPS_CONFIG_DIR")
    assert default_config_dir() == Path("dags/configs")


# --- the shipped examples ----------------------------------------------------------------------------------


def test_shipped_examples_load_cleanly() -> None:
    result = load_configs(config_files(EXAMPLES))
    assert result.errors == {}
    by_name = {c.name: c for c in result.configs}
    assert sorted(by_name) == ["diabetes", "fraud", "tickets"]

    fraud = by_name["fraud"].config
    assert fraud.task == "classification"
    assert fraud.primary_metric == "roc_auc"
    assert fraud.estimator.class_ == "sklearn.linear_model.LogisticRegression"
    assert fraud.estimator.seed == 42
    assert [(t.metric, t.min, t.max) for t in fraud.gates.thresholds] == [
        ("roc_auc", 0.68, None),
        ("recall", 0.5, None),
    ]
    assert fraud.rollout.canary.steps == [5.0, 25.0, 50.0, 100.0]

    diabetes = by_name["diabetes"].config
    assert diabetes.task == "regression"
    assert diabetes.primary_metric == "rmse"
    assert diabetes.features.categorical == ["sex", "age_band"]
    assert diabetes.gates.champion is not None and diabetes.gates.champion.max_regression == 2.0


def test_shipped_example_paths_resolve_next_to_the_config() -> None:
    loaded = load_config(EXAMPLES / "fraud.yaml")
    assert loaded.resolve(loaded.config.data.uri) == str(
        (REPO / "dags" / "data" / "fraud" / "transactions_batch_001.csv").resolve()
    )
    assert Path(loaded.resolve(loaded.config.gates.behaviour.cases)).is_file()  # type: ignore[union-attr]
    assert loaded.resolve("s3://bucket/key.csv") == "s3://bucket/key.csv"


# --- config fingerprint ------------------------------------------------------------------------------------


def _sha(folder: Path, text: str) -> str:
    folder.mkdir()
    return load_config(write(folder, text)).sha256


def test_sha256_is_stable_under_comments_key_order_and_explicit_defaults(tmp_path: Path) -> None:
    base = _sha(tmp_path / "base", MINIMAL)
    reordered = (
        "# a comment that should not matter\n"
        "estimator:\n  class: sklearn.linear_model.LogisticRegression   # trailing comment\n"
        "features:\n  categorical: [merchant_category]\n  numeric: [amount, hour]\n"
        "target: is_fraud\ndata: {uri: data.csv}\ntask: classification\nname: fraud_model\n"
    )
    with_defaults = MINIMAL + "approval:\n  required: false\n  timeout: 7d\n"
    assert _sha(tmp_path / "reordered", reordered) == base
    assert _sha(tmp_path / "defaults", with_defaults) == base
    assert len(base) == 64 and int(base, 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(("uri: data.csv", "uri: data2.csv"), id="data-uri"),
        pytest.param(("numeric: [amount, hour]", "numeric: [hour, amount]"), id="feature-order"),
        pytest.param(("LogisticRegression\n", "LogisticRegression\n  seed: 43\n"), id="seed"),
    ],
)
def test_sha256_changes_when_a_value_changes(tmp_path: Path, change: tuple[str, str]) -> None:
    changed = MINIMAL.replace(*change)
    assert changed != MINIMAL
    assert _sha(tmp_path / "a", MINIMAL) != _sha(tmp_path / "b", changed)


def test_sha256_does_not_depend_on_file_location(tmp_path: Path) -> None:
    copy = tmp_path / "fraud.yaml"
    shutil.copy(EXAMPLES / "fraud.yaml", copy)
    assert load_config(copy).sha256 == load_config(EXAMPLES / "fraud.yaml").sha256


def test_loaded_config_is_frozen(tmp_path: Path) -> None:
    loaded: LoadedConfig = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(Exception, match="frozen"):
        loaded.config.name = "other"  # type: ignore[misc]
