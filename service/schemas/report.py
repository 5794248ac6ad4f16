"""GET /jobs/{id}/report: the pipeline's typed report (edgedistill.contracts.report) plus the `devices`
section the API merges in from the measurement rows when the report is read."""

from __future__ import annotations

from pydantic import Field

from edgedistill.contracts.report import Report
from edgedistill.service.schemas.comparison import DevicesSection


class JobReportOut(Report):
    devices: DevicesSection = Field(description="Host vs each device, judged at read time (not stored)")

    @classmethod
    def of(cls, report: Report, devices: DevicesSection) -> JobReportOut:
        # Through the JSON forms, so the response carries the keys the engine wrote (exclude_unset) and
        # every key of the devices section.
        return cls.model_validate({**report.as_json(), "devices": devices.model_dump(mode="json")})
