"""Demo data: agencies of two provinces (Tây Ninh H53, Hậu Giang H30) and a ministry, each
agency's QLVB application and one key pair per application.

The codes are the real-looking ones of docs/edxml-reference.md §2.1.  Seeding twice is
harmless: what exists is kept, and fresh keys are issued only to applications that have none
(the credentials of existing keys cannot be printed again: their secrets are sealed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from esb.domain.agencies import AgencyRecord
from esb.pipeline.registration import Registration
from esb.storage import registry

DEMO_AGENCIES: tuple[AgencyRecord, ...] = (
    AgencyRecord("000.00.00.H53", "UBND tỉnh Tây Ninh", qd20_code="H53", email="ubnd@tayninh.gov.vn"),
    AgencyRecord("000.00.01.H53", "Văn phòng UBND tỉnh Tây Ninh", qd20_code="H53.01"),
    AgencyRecord("000.01.01.H53", "Ban Tiếp công dân tỉnh Tây Ninh", qd20_code="H53.01.01"),
    AgencyRecord("000.00.32.H53", "UBND huyện Châu Thành", qd20_code="H53.32"),
    AgencyRecord("000.05.32.H53", "Phòng Nội vụ huyện Châu Thành", qd20_code="H53.32.05"),
    AgencyRecord("000.00.00.H30", "UBND tỉnh Hậu Giang", qd20_code="H30", email="ubnd@haugiang.gov.vn"),
    AgencyRecord("000.00.01.H30", "Văn phòng UBND tỉnh Hậu Giang", qd20_code="H30.01"),
    AgencyRecord("000.00.00.G22", "Văn phòng Chính phủ", qd20_code="G22"),
)

DEMO_APPLICATION = "QLVB"


@dataclass(frozen=True)
class DemoCredential:
    agency: str
    name: str
    application: str
    accessKey: str
    secretKey: str = field(repr=False)

    def as_json(self) -> dict[str, str]:
        return {
            "agency": self.agency,
            "name": self.name,
            "application": self.application,
            "accessKey": self.accessKey,
            "secretKey": self.secretKey,
            "algorithm": "HMAC-SHA256",
        }


def seed_demo(registration: Registration) -> list[DemoCredential]:
    """Register the demo agencies and applications; the credentials of keys issued now."""
    database = registration.database
    with database.transaction() as session:
        known = {record.code for record in DEMO_AGENCIES if registry.find_agency(session, record.code)}
    for record in DEMO_AGENCIES:
        if record.code not in known:
            registration.add_agency(record)
    credentials: list[DemoCredential] = []
    for record in DEMO_AGENCIES:
        with database.transaction() as session:
            application = registry.find_application(session, record.code, DEMO_APPLICATION)
            has_keys = application is not None and any(
                key.revoked_at is None and key.valid_until is None for key in application.keys
            )
        if application is None:
            registration.register_application(
                record.code, DEMO_APPLICATION, developer="Demo", endpoint=None, certificate=None
            )
        if not has_keys:
            issued = registration.issue_key(record.code, DEMO_APPLICATION)
            credentials.append(
                DemoCredential(
                    record.code, record.name, DEMO_APPLICATION, issued.access_key, issued.secret_key or ""
                )
            )
    return credentials
