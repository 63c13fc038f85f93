from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Hub


def test_x(hub: Hub) -> None:
    assert hub.caller("000.00.00.H53").agency_code == "000.00.00.H53"
