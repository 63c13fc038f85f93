from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from esb.pipeline.demo_packages import build_edoc, edoc_spec


def test_smoke(parties: Any) -> None:
    t = time.monotonic()
    a, b = parties(2)
    print("parties", time.monotonic() - t)
    spec = edoc_spec(a.code, [b.code], number="1", promulgated=date(2024, 5, 1))
    package = build_edoc(spec, b"x" * 3000, now=datetime.now(UTC))
    t = time.monotonic()
    receipt = a.service.SendDocument(package=package)
    print(receipt)
    items = b.service.GetPendingDocuments("edoc")
    print(type(items), items)
    doc = b.service.GetDocument(items[0].hubDocumentId)
    print(type(doc.package), len(doc.package))
    print(a.service.GetTrace(hubDocumentId=receipt.hubDocumentId))
    print(time.monotonic() - t)
