"""The signed Notify of callback pushes (esb.security.notification_signature): round trip, every
field covered, pinned or chained trust, and malformed requests refused with a clear code."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lxml import etree

from esb.domain.notifications import Notification, NotificationKind
from esb.domain.signatures import Verdict
from esb.errors import ClientError
from esb.security import pki
from esb.security.notification_signature import (
    NOTIFY_NS,
    SOAP_ENV,
    notify_element,
    parse_notify,
    sign_notify,
    verify_notify,
)
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)
SENT = NOW + timedelta(seconds=2)
NOTICE = Notification(
    id=1042,
    agency="000.00.01.H53",
    kind=NotificationKind.DOCUMENT,
    hub_document_id="7c0e9a1e-5b7e-4d0c-9c57-2f7f5d1f8a10",
    sender="000.00.00.G22",
    recipient="000.00.01.H53",
    message_type="edoc",
    priority=3,
    detail=None,
    at=NOW,
)
EDITS: dict[str, Any] = {
    "id": 1043,
    "agency": "000.00.00.H30",
    "kind": NotificationKind.STATUS,
    "hub_document_id": "00000000-0000-0000-0000-000000000000",
    "sender": "000.00.00.H53",
    "recipient": "000.00.00.H30",
    "message_type": "status",
    "priority": 0,
    "detail": "an explanation",
    "at": NOW - timedelta(seconds=1),
}


@dataclass(frozen=True)
class Keys:
    hub: SigningKey
    other: SigningKey
    trust: TrustStore


@pytest.fixture(scope="module")
def keys() -> Keys:
    start = NOW - timedelta(days=30)
    root = pki.make_root_ca("Province Root CA", now=start)
    hub = pki.issue_signing_certificate(root, "LGSP hub", now=start)
    other = pki.issue_signing_certificate(root, "Not the hub", now=start)
    return Keys(
        SigningKey(hub.key, [hub.certificate]),
        SigningKey(other.key, [other.certificate]),
        TrustStore.of(anchors=[root.certificate]),
    )


def test_round_trip(keys: Keys) -> None:
    data = sign_notify(NOTICE, keys.hub, sent_at=SENT)
    check = verify_notify(data, hub_certificates=[keys.hub.sha256])
    assert (check.report.verdict, check.report.reason) == (Verdict.VALID, "ok")
    assert check.message is not None
    assert check.message.notification == NOTICE
    assert check.message.sent_at == SENT
    assert parse_notify(data) == check.message
    # Chained to the province's CA instead of pinned.
    assert verify_notify(data, trust=keys.trust).report.verdict is Verdict.VALID


def test_optional_fields_are_left_out_and_read_back(keys: Keys) -> None:
    report = dataclasses.replace(
        NOTICE, kind=NotificationKind.UNDELIVERABLE, recipient=None, detail="đơn vị nhận ngoại tuyến quá 24 h"
    )
    data = sign_notify(report, keys.hub, sent_at=SENT)
    assert b"<to>" not in data
    check = verify_notify(data, hub_certificates=[keys.hub.sha256])
    assert check.report.verdict is Verdict.VALID
    assert check.message is not None
    assert check.message.notification == report


@pytest.mark.parametrize("field", sorted(EDITS))
def test_every_field_is_covered(keys: Keys, field: str) -> None:
    """Swap one field's element for that of a differently valued notice: the digest breaks."""
    data = sign_notify(NOTICE, keys.hub, sent_at=SENT)
    root = etree.fromstring(data)
    notify = root[0][0]
    edited = notify_element(dataclasses.replace(NOTICE, **{field: EDITS[field]}), SENT)
    original_names = [etree.QName(child).localname for child in notify]
    for new in edited:
        name = etree.QName(new).localname
        if name in original_names:
            old = notify[original_names.index(name)]
            if old.text != new.text:
                old.text = new.text
        else:  # an optional field the original did not have: insert it in its place
            notify.insert(list(edited).index(new), new)
    tampered = etree.tostring(root)
    assert tampered != data
    check = verify_notify(tampered, hub_certificates=[keys.hub.sha256])
    assert check.report.reason == "digest-mismatch"


def test_only_the_pinned_hub_is_trusted(keys: Keys) -> None:
    forged = sign_notify(NOTICE, keys.other, sent_at=SENT)
    assert verify_notify(forged, hub_certificates=[keys.hub.sha256]).report.reason == "signer-not-registered"
    genuine = sign_notify(NOTICE, keys.hub, sent_at=SENT)
    assert verify_notify(genuine).report.reason == "no-trust-anchors"


def test_unsigned_and_doubly_signed(keys: Keys) -> None:
    data = sign_notify(NOTICE, keys.hub, sent_at=SENT)
    root = etree.fromstring(data)
    notify = root[0][0]
    signature = notify[-1]
    notify.remove(signature)
    unsigned = etree.tostring(root)
    assert verify_notify(unsigned, hub_certificates=[keys.hub.sha256]).report.reason == "no-signature"
    notify.append(signature)
    notify.append(copy.deepcopy(signature))
    doubled = etree.tostring(root)
    assert verify_notify(doubled, hub_certificates=[keys.hub.sha256]).report.reason == "multiple-signatures"


def _envelope(body: str) -> bytes:
    return f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>{body}</soap:Body></soap:Envelope>'.encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml",
        b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',
        f'<Notify xmlns="{NOTIFY_NS}"/>'.encode(),
        _envelope(""),
        _envelope(f'<Notify xmlns="{NOTIFY_NS}"/><Notify xmlns="{NOTIFY_NS}"/>'),
        _envelope('<Notify xmlns="urn:other"/>'),
        _envelope(f'<Notify xmlns="{NOTIFY_NS}"><notificationId>1</notificationId></Notify>'),
        _envelope(
            f'<Notify xmlns="{NOTIFY_NS}"><kind>document</kind><notificationId>1</notificationId></Notify>'
        ),
    ],
)
def test_malformed_requests_are_refused(data: bytes) -> None:
    for check in (parse_notify, verify_notify):
        with pytest.raises(ClientError) as refused:
            check(data)
        assert refused.value.code == "Client.NotifyMalformed"


def test_unreadable_fields_still_get_a_report_when_a_time_is_given(keys: Keys) -> None:
    data = sign_notify(NOTICE, keys.hub, sent_at=SENT).replace(b"<priority>3<", b"<priority>high<")
    with pytest.raises(ClientError) as refused:
        verify_notify(data, hub_certificates=[keys.hub.sha256])
    assert refused.value.code == "Client.NotifyMalformed"
    check = verify_notify(data, hub_certificates=[keys.hub.sha256], at=SENT)
    assert check.message is None
    assert check.report.reason == "digest-mismatch"
