"""Fixtures of the storage tests: one registered application with a key, on each engine."""

from __future__ import annotations

import pytest

from esb.domain.agencies import AgencyRecord
from esb.wiring import Runtime


@pytest.fixture
def issued_key(runtime: Runtime) -> str:
    """The access key of application QLVB of 000.00.00.H53, on the runtime's database."""
    runtime.registration.add_agency(AgencyRecord("000.00.00.H53", "UBND tỉnh Tây Ninh"))
    runtime.registration.register_application("000.00.00.H53", "QLVB")
    return runtime.registration.issue_key("000.00.00.H53", "QLVB").access_key
