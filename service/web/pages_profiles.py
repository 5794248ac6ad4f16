"""Device profiles: the built-in ones and the tenant's custom ones, and a form to create one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from edgedistill.contracts import artifact_kinds
from edgedistill.contracts.profiles import builtin_profiles
from edgedistill.contracts.profiles.schema import TARGETS, DeviceClass, DeviceProfile
from edgedistill.service.api.deps import SessionDep
from edgedistill.service.repos import profiles as profiles_repo
from edgedistill.service.repos.errors import Conflict
from edgedistill.service.web import auth, forms
from edgedistill.service.web.auth import UserDep, WebUser
from edgedistill.service.web.templating import render

router = APIRouter(include_in_schema=False)

TARGET_HELP: dict[str, str] = artifact_kinds.target_descriptions()
SCHEMES: dict[str, str] = {
    "qdq_per_channel": "QDQ per-channel (ONNX Runtime)",
    "int8_float_io": "int8 weights and activations, float I/O",
    "full_int8": "full int8, int8 I/O (MCU)",
}
CLASSES: dict[str, str] = {"cpu": "CPU", "mobile": "Mobile / SBC", "mcu": "MCU"}


@dataclass
class ProfileRow:
    profile: DeviceProfile
    builtin: bool
    created_at: datetime | None = None


def _rows(session: Session, user: WebUser) -> tuple[list[ProfileRow], list[ProfileRow]]:
    builtin = [ProfileRow(p, True) for p in builtin_profiles().values()]
    custom = []
    for row in profiles_repo.list_custom_profiles(session, tenant_id=user.tenant_id):
        try:
            custom.append(ProfileRow(DeviceProfile.model_validate(row.spec), False, row.created_at))
        except ValueError:  # a row stored under an older schema: skip rather than break the page
            continue
    return builtin, custom


def _page(
    request: Request,
    session: Session,
    user: WebUser,
    values: dict[str, Any],
    errors: dict[str, str],
    created: str | None = None,
    status_code: int = 200,
) -> Response:
    builtin, custom = _rows(session, user)
    return render(
        request,
        "profiles.html",
        {
            "title": "Device profiles",
            "builtin": builtin,
            "custom": custom,
            "values": values,
            "errors": errors,
            "created": created,
            "targets": list(TARGETS),
            "target_help": TARGET_HELP,
            "schemes": SCHEMES,
            "classes": {c: CLASSES.get(c, c) for c in get_args(DeviceClass)},
            "error_order": [f for f in forms.PROFILE_FIELDS if f in errors],
        },
        status_code=status_code,
    )


EMPTY: dict[str, Any] = {
    **{name: "" for name in forms.PROFILE_FIELDS},
    "device_class": "mcu",
    "int8_scheme": "full_int8",
    "targets": ["onnx_fp32", "onnx_int8", "tflite_int8_full", "c_array"],
    "threads": "1",
    "op_allowlist": "",
}


@router.get("/ui/profiles")
def profiles_page(request: Request, user: UserDep, session: SessionDep, created: str | None = None) -> Response:
    values = dict(EMPTY)
    values["op_allowlist"] = ", ".join(builtin_profiles()["mcu-cortex-m4"].op_allowlist or [])
    return _page(request, session, user, values, {}, created=created)


@router.post("/ui/profiles")
async def create_profile(request: Request, user: UserDep, session: SessionDep) -> Response:
    form = await request.form()
    auth.check_csrf(request, str(form.get(auth.CSRF_FIELD) or ""))
    targets = [str(t) for t in form.getlist("targets")]
    result = forms.device_profile({k: v for k, v in form.items() if isinstance(v, str)}, targets)

    def save() -> Response:
        if result.ok:
            try:
                row = profiles_repo.create_profile(session, tenant_id=user.tenant_id, profile=result.values["profile"])
                session.commit()
            except Conflict as exc:
                session.rollback()
                result.errors["name"] = str(exc)[:1].upper() + str(exc)[1:]
            else:
                return RedirectResponse(f"/ui/profiles?created={row.name}#profile-{row.name}", status_code=303)
        return _page(request, session, user, result.values, result.errors, status_code=422)

    return await anyio.to_thread.run_sync(save)
