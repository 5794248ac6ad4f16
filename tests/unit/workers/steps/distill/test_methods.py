"""Method plug-ins: every name the API accepts resolves, default terms, auto's choices and refusals."""

from __future__ import annotations

import pytest

from edgedistill.contracts.errors import InputError
from edgedistill.contracts.spec import METHODS as API_METHODS
from edgedistill.contracts.spec import JobOptions, LossTerm
from edgedistill.workers.steps.distill.losses import LOSSES, build_loss
from edgedistill.workers.steps.distill.methods import METHODS, auto_method, plan_for

FEATS = {"student_logits", "teacher_logits", "labels", "student_features", "teacher_features", "prev_logits"}


def _plan(method: str, **kw: object) -> object:
    args: dict[str, object] = dict(task="classification", has_labels=True, modality="image", train_samples=1000,
                                   num_outputs=10, has_data=True, has_init=False)  # fmt: skip
    args.update(kw)
    return plan_for(JobOptions(method=method), **args)  # type: ignore[arg-type]


def test_every_api_method_is_a_plugin_whose_terms_build() -> None:
    assert set(METHODS) | {"auto"} == set(API_METHODS)
    for name, m in METHODS.items():
        assert m.summary
        terms = m.terms("classification", True, 0.7, 4.0)
        assert all(t.key in LOSSES for t in terms), name
        build_loss(terms, task="classification", available=FEATS)


def test_unknown_methods_are_refused_by_the_options() -> None:
    with pytest.raises(ValueError, match="unknown distillation method 'fitnets'"):
        JobOptions(method="fitnets")


@pytest.mark.parametrize(
    ("method", "keys"),
    [
        ("kd", ["kd", "ce"]),
        ("labels_only", ["ce"]),
        ("fitnet", ["kd", "ce", "fitnet"]),
        ("at", ["kd", "ce", "at"]),
        ("rkd", ["kd", "ce", "rkd"]),
        ("sp", ["kd", "ce", "sp"]),
        ("relational", ["kd", "ce", "rkd", "sp"]),
        ("hybrid", ["kd", "ce", "at", "rkd"]),
        ("qat_kd", ["kd", "ce"]),
        ("nas", ["kd", "ce"]),
    ],
)
def test_default_terms(method: str, keys: list[str]) -> None:
    plan = _plan(method)
    assert [t.key for t in plan.terms] == keys  # type: ignore[attr-defined]
    assert plan.qat == (method == "qat_kd")  # type: ignore[attr-defined]
    assert plan.procedure == ("nas" if method == "nas" else "train")  # type: ignore[attr-defined]


def test_lifelong_adds_lwf_with_its_weight_and_needs_an_earlier_student() -> None:
    plan = plan_for(JobOptions(method="lifelong", lwf_weight=2.5), task="classification", has_labels=True,
                    modality="image", train_samples=100, num_outputs=10, has_data=True, has_init=True)  # fmt: skip
    assert [(t.key, t.weight) for t in plan.terms][-1] == ("lwf", 2.5)
    with pytest.raises(InputError, match="init_from"):
        _plan("lifelong")
    reg = plan_for(JobOptions(method="kd"), task="regression", has_labels=True, modality="vector", train_samples=100,
                   num_outputs=2, has_data=True, has_init=True)  # fmt: skip
    assert [t.key for t in reg.terms] == ["mse_logits", "mse_labels", "lwf_mse"]  # init_from with any method


def test_explicit_losses_replace_the_method_terms() -> None:
    opts = JobOptions(method="kd", losses=[LossTerm(key="kd", weight=0.5), LossTerm(key="sp", weight=0.2)])
    plan = plan_for(opts, task="classification", has_labels=True, modality="image", train_samples=10,
                    num_outputs=10, has_data=True, has_init=False)  # fmt: skip
    assert [(t.key, t.weight) for t in plan.terms] == [("kd", 0.5), ("sp", 0.2)]
    assert "options.losses" in plan.reason


def test_methods_that_need_data_are_refused_without_it() -> None:
    with pytest.raises(InputError, match="needs a transfer set"):
        _plan("kd", has_data=False)
    assert _plan("data_free", has_data=False).procedure == "data_free"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kw", "method"),
    [
        ({"has_data": False}, "data_free"),
        ({"has_init": True}, "lifelong"),
        ({"modality": "image", "train_samples": 120}, "fitnet"),
        ({"modality": "sequence", "train_samples": 200}, "fitnet"),
        ({"modality": "image", "train_samples": 1200}, "rkd"),
        ({"task": "regression", "modality": "vector"}, "kd"),
        ({"modality": "vector"}, "kd"),
    ],
)
def test_auto_picks_a_method_and_says_why(kw: dict[str, object], method: str) -> None:
    args: dict[str, object] = dict(modality="image", task="classification", train_samples=2000, num_outputs=10,
                                   has_data=True, has_init=False)  # fmt: skip
    args.update(kw)
    chosen, why = auto_method(**args)  # type: ignore[arg-type]
    assert chosen == method and len(why) > 20
    plan = _plan("auto", **{k: v for k, v in args.items()})
    assert plan.method == method and plan.requested == "auto" and plan.reason == why  # type: ignore[attr-defined]
