"""New job and custom profile forms: validation errors next to their fields, uploads kept, submits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from edgedistill.service.db.models import Job
from edgedistill.service.main import create_app
from edgedistill.service.repos import datasets, models, profiles
from edgedistill.service.settings import Settings
from edgedistill.service.web import forms
from tests.unit.service.web.helpers import Browser, FakeQueue, Rows


def _field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="{name}-error">(.*?)</p>', html, re.S)
    assert match, f"no error shown for {name}"
    return match.group(1)


def _submit(browser: Browser, data: dict[str, Any], files: dict[str, Any] | None = None) -> Any:
    return browser.post_form("/ui/jobs/new", data, files=files or {"teacher_file": ("", b"")})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("262144", 262144), ("256 KB", 262144), ("256KiB", 262144), ("1 MB", 1048576), ("1.5M", 1572864), ("10 b", 10)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert forms.parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "1 TB", "-5", "1e6"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="number of bytes"):
        forms.parse_bytes(text)


def test_empty_new_job_form_marks_every_missing_field(alice: Browser) -> None:
    r = _submit(alice, {})
    assert r.status_code == 422
    assert "Upload a teacher model" in _field_error(r.text, "teacher")
    assert "Upload transfer data" in _field_error(r.text, "data")
    assert "Choose the device" in _field_error(r.text, "device_profile")
    assert 'id="error-summary"' in r.text and "3 problems to fix" in r.text
    assert 'href="#teacher_file"' in r.text  # the summary links to the field


def test_option_errors_come_from_the_engines_schema(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    model_id, dataset_id = rows.model(alice.tenant), rows.dataset(alice.tenant)
    data = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "device_profile": "cpu-x86",
        "epochs": "0",
        "alpha": "2",
        "student_mode": "explicit",
        "student_width": "",
        "student_depth": "99",
        "batch_size": "x",
    }
    r = _submit(alice, data)
    assert r.status_code == 422
    assert "greater than or equal to 1" in _field_error(r.text, "epochs")
    assert "less than or equal to 1" in _field_error(r.text, "alpha")
    assert "Enter a number" in _field_error(r.text, "student_width")
    assert "less than or equal to 16" in _field_error(r.text, "student_depth")
    assert "valid integer" in _field_error(r.text, "batch_size")
    assert 'id="epochs" name="epochs" type="number"' in r.text and 'value="0" aria-invalid="true"' in r.text
    assert '<details class="advanced" open>' in r.text  # batch size is an advanced field: shown open
    # What was chosen stays chosen.
    assert f'<option value="{model_id}" selected>' in r.text and 'value="cpu-x86" checked' in r.text


def test_unknown_profile_and_other_tenants_uploads_are_refused(alice: Browser, bob: Browser, rows: Rows) -> None:
    assert bob.tenant
    r = _submit(
        alice,
        {"model_id": rows.model(bob.tenant), "dataset_id": rows.dataset(bob.tenant), "device_profile": "nope"},
    )
    assert r.status_code == 422
    assert "no longer available" in _field_error(r.text, "teacher")
    assert "no longer available" in _field_error(r.text, "data")
    assert "Unknown device profile" in _field_error(r.text, "device_profile")


def test_a_refused_file_is_reported_and_a_good_one_is_kept(
    alice: Browser, npz_bytes: bytes, app: FastAPI, db: Session
) -> None:
    assert alice.tenant
    files = {"teacher_file": ("teacher.onnx", b"this is not a model"), "data_file": ("digits.npz", npz_bytes)}
    r = _submit(alice, {"device_profile": "cpu-x86"}, files)
    assert r.status_code == 422
    _field_error(r.text, "teacher")
    assert "Transfer set digits.npz uploaded" in r.text
    stored = datasets.list_datasets(db, tenant_id=alice.tenant.id).items
    assert len(stored) == 1 and f'<option value="{stored[0].id}" selected>' in r.text
    assert models.list_models(db, tenant_id=alice.tenant.id).items == []


def test_upload_and_submit_starts_a_job(
    alice: Browser, onnx_bytes: bytes, npz_bytes: bytes, fake_queue: FakeQueue, db: Session
) -> None:
    assert alice.tenant
    files = {"teacher_file": ("teacher.onnx", onnx_bytes), "data_file": ("digits.npz", npz_bytes)}
    data = {
        "device_profile": "mcu-cortex-m4",
        "epochs": "3",
        "student_mode": "explicit",
        "student_width": "8",
        "student_depth": "2",
        "accuracy_budget_pp": "1.5",
        "quality_target": "0.9",
        "idempotency_key": "form-1",
        "webhook_url": "",
    }
    r = _submit(alice, data, files)
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].rsplit("/", 1)[-1]
    assert fake_queue.sent == [(job_id, "compress")]
    job = db.get(Job, job_id)
    assert job is not None and job.tenant_id == alice.tenant.id and job.profile_name == "mcu-cortex-m4"
    assert job.options["epochs"] == 3
    assert (job.options["student"]["width"], job.options["student"]["depth"]) == (8, 2)
    assert job.options["accuracy_budget_pp"] == 1.5 and job.options["temperature"] == 4.0
    assert job.options["quality_target"] == 0.9

    # A double submit of the same form (same idempotency key, same request) is the same job.
    again = _submit(alice, {**data, "model_id": job.model_id, "dataset_id": job.dataset_id})
    assert again.status_code == 303 and again.headers["location"] == f"/ui/jobs/{job_id}"
    # The same key with another request (the back button, then a change) is a new job.
    changed = _submit(alice, {**data, "epochs": "4", "model_id": job.model_id, "dataset_id": job.dataset_id})
    assert changed.status_code == 303 and changed.headers["location"] != f"/ui/jobs/{job_id}"
    assert len(fake_queue.sent) == 2


def test_automatic_student_size_ignores_width_and_depth(alice: Browser, rows: Rows, db: Session) -> None:
    assert alice.tenant
    data = {
        "model_id": rows.model(alice.tenant),
        "dataset_id": rows.dataset(alice.tenant),
        "device_profile": "cpu-x86",
        "student_mode": "auto",
        "student_width": "12345",
    }
    r = _submit(alice, data)
    assert r.status_code == 303, r.text
    job = db.get(Job, r.headers["location"].rsplit("/", 1)[-1])
    assert job is not None
    assert (job.options["student"]["width"], job.options["student"]["depth"]) == (None, None)


def test_the_student_family_is_offered_and_submitted(alice: Browser, rows: Rows, db: Session) -> None:
    from typing import get_args

    from edgedistill.contracts.spec import StudentOptions

    # every family the engine accepts is on the form, and nothing else
    assert set(forms.FAMILIES) == set(get_args(StudentOptions.model_fields["family"].annotation))
    page = alice.client.get("/ui/jobs/new").text
    assert '<option value="best"' in page and 'id="family-hint"' in page
    assert alice.tenant
    data = {"model_id": rows.model(alice.tenant), "dataset_id": rows.dataset(alice.tenant), "device_profile": "cpu-x86"}
    r = _submit(alice, data | {"family": "best"})
    assert r.status_code == 303, r.text
    job = db.get(Job, r.headers["location"].rsplit("/", 1)[-1])
    assert job is not None and job.options["student"]["family"] == "best"
    r = _submit(alice, data | {"family": "biggest"})
    assert r.status_code == 422 and "Unknown student family" in _field_error(r.text, "family")


def test_cuda_without_a_gpu_worker_is_a_field_error(alice: Browser, rows: Rows) -> None:
    assert alice.tenant
    data = {
        "model_id": rows.model(alice.tenant),
        "dataset_id": rows.dataset(alice.tenant),
        "device_profile": "cpu-x86",
        "device": "cuda",
    }
    r = _submit(alice, data)
    assert r.status_code == 422 and "GPU worker" in _field_error(r.text, "device")


def _profile_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "my-board",
        "description": "STM32F7 discovery",
        "device_class": "mcu",
        "int8_scheme": "full_int8",
        "targets": ["onnx_fp32", "tflite_int8_full", "c_array"],
        "max_model_bytes": "1 MB",
        "max_ram_bytes": "320 KB",
        "threads": "1",
        "clock_hz": "216000000",
        "cycles_per_mac": "1.5",
        "op_allowlist": "CONV_2D, FULLY_CONNECTED\nRESHAPE softmax",
    }
    data.update(overrides)
    return data


def test_profile_form_errors_sit_next_to_their_fields(alice: Browser) -> None:
    r = alice.post_form("/ui/profiles", _profile_form(name="Bad Name!", max_model_bytes="lots", threads="0"))
    assert r.status_code == 422
    assert "Use lower-case letters, digits" in _field_error(r.text, "name")
    assert "number of bytes" in _field_error(r.text, "max_model_bytes")
    assert "greater than or equal to 1" in _field_error(r.text, "threads")
    assert 'value="Bad Name!"' in r.text  # typed values are kept


def test_profile_cross_field_errors_go_to_the_field_they_name(alice: Browser) -> None:
    r = alice.post_form("/ui/profiles", _profile_form(max_ram_bytes=""))
    assert "max_ram_bytes" in _field_error(r.text, "max_ram_bytes")
    r = alice.post_form("/ui/profiles", _profile_form(op_allowlist=""))
    assert "op_allowlist" in _field_error(r.text, "op_allowlist")
    r = alice.post_form("/ui/profiles", _profile_form(targets=["onnx_fp32", "c_array"]))
    assert "tflite_int8_full" in _field_error(r.text, "targets")
    r = alice.post_form("/ui/profiles", _profile_form(max_model_bytes=""))
    assert "flash" in _field_error(r.text, "max_model_bytes")


def test_profile_is_created_for_this_tenant_only(alice: Browser, bob: Browser, db: Session) -> None:
    assert alice.tenant and bob.tenant
    r = alice.post_form("/ui/profiles", _profile_form())
    assert r.status_code == 303 and r.headers["location"] == "/ui/profiles?created=my-board#profile-my-board"
    row = profiles.get_custom_profile(db, tenant_id=alice.tenant.id, name="my-board")
    assert row is not None
    assert row.spec["budgets"] == {"max_model_bytes": 1048576, "max_ram_bytes": 327680}
    assert row.spec["op_allowlist"] == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"]
    page = alice.client.get("/ui/profiles?created=my-board").text
    assert 'id="profile-my-board"' in page and "created" in page
    assert 'value="my-board"' in alice.client.get("/ui/jobs/new").text  # offered on New job
    assert 'id="profile-my-board"' not in bob.client.get("/ui/profiles").text
    again = alice.post_form("/ui/profiles", _profile_form())
    assert again.status_code == 422 and "already exists" in _field_error(again.text, "name")
    builtin = alice.post_form("/ui/profiles", _profile_form(name="cpu-x86"))
    assert "built-in" in _field_error(builtin.text, "name")


@pytest.mark.skipif("data_free" not in forms.METHODS, reason="the engine has no data_free method")
def test_data_free_method_needs_no_transfer_set(alice: Browser, rows: Rows, db: Session) -> None:
    assert alice.tenant
    data = {"model_id": rows.model(alice.tenant), "device_profile": "cpu-x86", "method": "data_free"}
    r = _submit(alice, data)
    assert r.status_code == 303, r.text
    job = db.get(Job, r.headers["location"].rsplit("/", 1)[-1])
    assert job is not None and job.dataset_id is None and job.options["method"] == "data_free"


def test_uploads_over_the_limit_get_a_page_not_a_stored_file(
    settings: Settings, fake_queue: FakeQueue, make_key: Any, db: Session
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 4096})
    app = create_app(small, queue=fake_queue)
    tenant, key = make_key("acme")
    with TestClient(app) as client:
        browser = Browser(client)
        assert browser.post_form("/ui/login", {"api_key": key}).status_code == 303
        files = {"teacher_file": ("t.onnx", b"x" * 4 * 1024 * 1024), "data_file": ("d.npz", b"y" * 10)}
        r = browser.post_form("/ui/jobs/new", {"device_profile": "cpu-x86"}, files=files, page="/ui/jobs/new")
        assert r.status_code == 413 and "at most 4.0 KiB" in r.text
        files = {"teacher_file": ("t.onnx", b"x" * 5000), "data_file": ("d.npz", b"y" * 10)}
        r = browser.post_form("/ui/jobs/new", {"device_profile": "cpu-x86"}, files=files, page="/ui/jobs/new")
        assert r.status_code == 422 and "upload limit" in _field_error(r.text, "teacher")
    assert models.list_models(db, tenant_id=tenant.id).items == []


def test_chunked_uploads_are_counted_as_they_stream(
    settings: Settings, fake_queue: FakeQueue, make_key: Any, db: Session
) -> None:
    """A chunked body declares no Content-Length: it is cut off once it passes the form's cap, and no
    staging folder is left behind."""
    small = settings.model_copy(update={"max_upload_bytes": 4096})
    app = create_app(small, queue=fake_queue)
    tenant, key = make_key("acme")
    sent = 0

    with TestClient(app) as client:
        browser = Browser(client)
        assert browser.post_form("/ui/login", {"api_key": key}).status_code == 303
        token = browser.csrf("/ui/jobs/new")
        boundary = "b0undary"

        def body() -> Any:
            nonlocal sent
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="teacher_file"; filename="t.onnx"\r\n\r\n'
            ).encode()
            for _ in range(64):  # 4 MiB in 64 KiB chunks
                sent += 65536
                yield b"x" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        r = client.post(
            "/ui/jobs/new",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            follow_redirects=False,
        )
        assert r.status_code == 413
    assert models.list_models(db, tenant_id=tenant.id).items == []
    staging = small.upload_tmp_dir
    assert not staging.exists() or not [p for p in staging.iterdir() if p.name.startswith("web-upload-")]


def test_the_same_file_twice_selects_the_first_upload(alice: Browser, npz_bytes: bytes, db: Session) -> None:
    assert alice.tenant
    files = {"teacher_file": ("teacher.onnx", b"this is not a model"), "data_file": ("digits.npz", npz_bytes)}
    _submit(alice, {"device_profile": "cpu-x86"}, files)
    r = _submit(alice, {"device_profile": "cpu-x86"}, {**files, "data_file": ("again.npz", npz_bytes)})
    assert "Transfer set digits.npz was uploaded before (same sha256)" in r.text
    stored = datasets.list_datasets(db, tenant_id=alice.tenant.id).items
    assert len(stored) == 1 and f'<option value="{stored[0].id}" selected>' in r.text


def test_teacher_data_mismatch_is_shown_next_to_the_data_field(
    alice: Browser, db: Session, fake_queue: FakeQueue
) -> None:
    import io

    import numpy as np
    from signature_models import token_classifier_onnx

    assert alice.tenant
    buf = io.BytesIO()
    np.savez(buf, input_ids=np.zeros((20, 12), np.int64), y=np.zeros(20, np.int64))
    files = {"teacher_file": ("tokens.onnx", token_classifier_onnx(seq=16)), "data_file": ("d.npz", buf.getvalue())}
    r = _submit(alice, {"device_profile": "cpu-x86"}, files)
    assert r.status_code == 422
    msg = _field_error(r.text, "data")
    assert "input &#39;input_ids&#39; axis 1 is 16 but data &#39;input_ids&#39; has 12" in msg
    assert "input &#39;attention_mask&#39;" in msg  # both mismatches, next to the same field
    assert fake_queue.sent == []
    # Both uploads were kept and selected; the stored teacher shows its inputs in the picker.
    (model,) = models.list_models(db, tenant_id=alice.tenant.id).items
    assert model.signature is not None and [i["name"] for i in model.signature["inputs"]] == [
        "input_ids",
        "attention_mask",
    ]
    assert "inputs: input_ids, attention_mask" in r.text

    (data,) = datasets.list_datasets(db, tenant_id=alice.tenant.id).items
    again = _submit(alice, {"device_profile": "cpu-x86", "model_id": model.id, "dataset_id": data.id, "method": "rkd"})
    assert again.status_code == 422
    assert "one input and one output only" in _field_error(again.text, "method")
