"""The gateway's answers for classes other than 0/1 (issue 13): real scikit-learn models, no registry.

Multiclass answers ``prediction`` + ``probabilities``; binary keeps ``prediction`` + ``score`` with ``score`` the
probability of the *positive* class — which may be the first class — and a version's ``mlops.classes`` tag must
name exactly the estimator's ``classes_`` (an edited tag would silently swap probabilities).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from airflow_mlops.monitoring.labels import label_problem
from airflow_mlops.serving.models import LoadedModel, ModelLoadError, NotServableError, version_classes
from airflow_mlops.training.classes import LEGACY, ClassSet
from airflow_mlops.vocabulary import Tag


def iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    return data.data, np.asarray([str(data.target_names[i]) for i in data.target])


def fitted_iris() -> tuple[LogisticRegression, pd.DataFrame]:
    x, y = iris()
    return LogisticRegression(max_iter=1000).fit(x, y), x


def yes_no() -> tuple[LogisticRegression, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200)})
    y = np.where(x["a"] > 0, "yes", "no")
    return LogisticRegression().fit(x, y), x, y


def loaded(estimator: Any, classes: ClassSet | None = None, **kwargs: Any) -> LoadedModel:
    return LoadedModel("m", "1", estimator, None, "classification", class_set=classes, **kwargs)  # type: ignore[arg-type]


def test_multiclass_answers_the_class_and_each_probability_in_class_order() -> None:
    model, x = fitted_iris()
    served = loaded(model, ClassSet.learned(model.classes_))

    answers = served.predict(x.iloc[[0, 75, 149]])

    proba = model.predict_proba(x.iloc[[0, 75, 149]])
    assert [a["prediction"] for a in answers] == ["setosa", "versicolor", "virginica"]
    for answer, row in zip(answers, proba, strict=True):
        assert set(answer) == {"prediction", "probabilities"}
        assert list(answer["probabilities"]) == ["setosa", "versicolor", "virginica"]
        assert list(answer["probabilities"].values()) == pytest.approx(row.tolist())
        assert isinstance(answer["prediction"], str)  # not numpy's str_: the answer is JSON
        json.dumps(answer)
    assert served.classes == ("setosa", "versicolor", "virginica")


def test_binary_with_the_first_class_positive_scores_that_class() -> None:
    model, x, _ = yes_no()
    assert model.classes_.tolist() == ["no", "yes"]
    first = loaded(model, ClassSet(("no", "yes"), "no"))
    second = loaded(model, ClassSet(("no", "yes"), "yes"))

    a, b = first.predict(x.iloc[:5]), second.predict(x.iloc[:5])

    proba = model.predict_proba(x.iloc[:5])
    assert [o["score"] for o in a] == pytest.approx(proba[:, 0].tolist())
    assert [o["score"] for o in b] == pytest.approx(proba[:, 1].tolist())
    assert [o["prediction"] for o in a] == [o["prediction"] for o in b] == model.predict(x.iloc[:5]).tolist()
    assert all(set(o) == {"prediction", "score"} for o in a)


def test_without_a_classes_tag_the_second_class_is_positive_as_before() -> None:
    model, x, _ = yes_no()
    served = loaded(model)  # what a version without mlops.classes is served with

    assert served.class_set == ClassSet(("no", "yes"), "yes")
    assert [o["score"] for o in served.predict(x.iloc[:3])] == pytest.approx(model.predict_proba(x.iloc[:3])[:, 1])


def test_zero_one_models_answer_exactly_as_before() -> None:
    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=100)})
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    served = loaded(model)

    answers = served.predict(x.iloc[:4])

    proba = model.predict_proba(x.iloc[:4])
    assert answers == [
        {"prediction": int(p), "score": float(s)} for p, s in zip(model.predict(x.iloc[:4]), proba[:, 1], strict=True)
    ]
    assert served.class_set == LEGACY and served.classes == (0, 1)
    assert all(type(o["prediction"]) is int for o in answers)


@pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated")
def test_labels_from_predict_when_they_may_disagree_with_the_probabilities() -> None:
    x, y = iris()
    model = SVC(probability=True, random_state=0).fit(x, y)
    served = loaded(model, ClassSet.learned(model.classes_), labels_from_proba=False)

    answers = served.predict(x)

    assert [a["prediction"] for a in answers] == model.predict(x).tolist()
    assert set(answers[0]) == {"prediction", "probabilities"}


def test_boolean_classes_answer_booleans_and_take_boolean_labels() -> None:
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"a": rng.normal(size=100)})
    model = LogisticRegression().fit(x, x["a"] > 0)
    served = loaded(model)

    answers = served.predict(x.iloc[:3])

    assert all(type(a["prediction"]) is bool for a in answers)
    assert served.classes == (False, True)
    assert label_problem(True, "classification", served.classes) is None
    for junk in (1, 0, "true", None):
        assert label_problem(junk, "classification", served.classes) is not None
    assert label_problem(True, "classification", (0, 1)) is not None  # a 0/1 model still refuses true


def test_string_labels_are_checked_against_the_classes() -> None:
    model, _ = fitted_iris()
    classes = loaded(model).classes

    assert label_problem("setosa", "classification", classes) is None
    for junk in ("nope", "SETOSA", 0, True, None, ["setosa"], {"setosa": 1}):
        assert label_problem(junk, "classification", classes) == (
            f"expected one of the model's classes ['setosa', 'versicolor', 'virginica'], got {junk!r}"
        )
    assert len(label_problem("x" * 10_000, "classification", classes) or "") <= 500  # a huge label is not echoed


# --- the version's classes tag -----------------------------------------------------------------------------


def test_a_tag_naming_the_estimators_classes_sets_the_positive_class() -> None:
    model, _, _ = yes_no()
    tags = {Tag.CLASSES: ClassSet(("no", "yes"), "no").to_json()}

    assert version_classes(tags, model, "m v1") == ClassSet(("no", "yes"), "no")
    assert version_classes({}, model, "m v1") == ClassSet(("no", "yes"), "yes")


@pytest.mark.parametrize(
    "tag",
    [
        '{"classes":["yes","no"],"positive":"no"}',  # reordered: the score would be the other class's
        '{"classes":["no","yes","maybe"],"positive":null}',
        '{"classes":["no","maybe"],"positive":"no"}',
        '{"classes":["no","yes"],"positive":"maybe"}',
        '{"classes":[0,1],"positive":1}',
        '{"classes":["no","yes"]}',  # no positive class for a binary model
        '{"classes":["no","no"],"positive":"no"}',
        "[]",
        "{",
        '{"classes":[["no"],"yes"],"positive":"yes"}',
    ],
)
def test_a_tag_that_does_not_match_the_estimator_is_refused(tag: str) -> None:
    model, _, _ = yes_no()

    with pytest.raises(NotServableError, match=Tag.CLASSES):
        version_classes({Tag.CLASSES: tag}, model, "m v1")


def test_a_tag_typing_the_classes_differently_is_refused() -> None:
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=60)})
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))

    with pytest.raises(NotServableError, match="the model's classes_ are"):
        version_classes({Tag.CLASSES: '{"classes":[false,true],"positive":true}'}, model, "m v1")
    with pytest.raises(NotServableError, match="types the classes as"):  # same keys "0", "1": labels "1" != 1
        version_classes({Tag.CLASSES: '{"classes":["0","1"],"positive":"1"}'}, model, "m v1")
    assert version_classes({Tag.CLASSES: '{"classes":[0,1],"positive":0}'}, model, "m v1") == ClassSet((0, 1), 0)


def test_a_multiclass_tag_with_a_positive_class_is_refused() -> None:
    model, _ = fitted_iris()

    with pytest.raises(NotServableError, match="positive class 'setosa' for 3 classes"):
        version_classes(
            {Tag.CLASSES: '{"classes":["setosa","versicolor","virginica"],"positive":"setosa"}'}, model, "m v1"
        )


def test_an_estimator_with_one_class_cannot_be_served() -> None:
    class OneClass:
        classes_ = np.array(["only"])

    with pytest.raises(ModelLoadError, match="single class"):
        version_classes({}, OneClass(), "m v1")
