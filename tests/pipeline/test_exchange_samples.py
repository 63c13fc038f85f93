"""Real edXML packages (/work/shared/samples/edxml, see its README.md) sent through the hub.

The verdict for each file is written out in ``SAMPLES``, not computed: a change in the reader,
the registry or the exchange that changes what happens to a real package shows up here.
The agencies a file names are registered first, when the registry accepts their codes; VXP
system ids (``vxp.saas.03``) and codes such as ``28.22.H17`` or ``002.00.20.H13`` are neither
QCVN 102 nor QĐ 20 codes, so they cannot be registered, and a package naming them cannot be
sent in their name by anyone who authenticated (it is sent here with a caller made by hand).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from esb.domain.access import Caller
from esb.domain.agencies import AgencyRecord
from esb.domain.edxml_model import EdocPackage
from esb.domain.exchange import DeliveryState, MessageType, envelope_of
from esb.errors import EsbError, InvalidIdentifier
from esb.xml_processing.edxml_reader import read_package

if TYPE_CHECKING:
    from conftest import Hub

SAMPLES_DIR = Path("/work/shared/samples/edxml")
HUB_ORGAN_ID = "000.00.00.H53"
G22, H41, H14, G17 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17"
THE_REVOCATION = "mic_edoc_revocation_bdt1.edxml"
ITS_DOCUMENT_ID = "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
ACCEPTED = "accepted"


@dataclass(frozen=True)
class Sample:
    name: str
    operation: str  # SendDocument or SendStatus
    sender: str  # From/OrganId: the agency it is sent as
    recipients: tuple[str, ...]  # To/OrganId, or a status's ResponseFor/OrganId
    verdict: str  # "accepted" or the fault code
    before_revocation: str = ACCEPTED  # statuses: the verdict before their document was sent


SAMPLES = (
    # Refused by the reader: U+FFFD-mangled PDF inside the base64.
    Sample(
        "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml",
        "SendDocument",
        "vxp.saas.03",
        ("vxp.saas.03",),
        "Client.EdxmlAttachmentCorrupted",
    ),
    # Readable, but its recipient is a VXP system id no registry entry can have.
    Sample(
        "mic_edoc_minimal_gateway_test.edxml",
        "SendDocument",
        "vxp.saas.03",
        ("vxp.saas.03",),
        "Client.UnknownRecipient",
    ),
    Sample("mic_edoc_new_bdt0.edxml", "SendDocument", "000.00.11.H53", ("000.00.01.A53",), ACCEPTED),
    # To 28.22.H17 is made up and not a conforming code.
    Sample(
        "mic_edoc_new_bdt0_vpcp_original.edxml",
        "SendDocument",
        "000.00.00.A80",
        ("28.22.H17",),
        "Client.UnknownRecipient",
    ),
    Sample(
        "mic_edoc_new_multi_recipient_zipped_edxml_attachment.edxml",
        "SendDocument",
        G22,
        (H41, H14, G17),
        ACCEPTED,
    ),
    Sample(
        "mic_edoc_received_via_axis_2_traces.edxml",
        "SendDocument",
        "000.00.15.H51",
        ("000.00.15.H51",),
        ACCEPTED,
    ),
    Sample("mic_edoc_replacement_bdt3.edxml", "SendDocument", G22, (H41, H14, G17), ACCEPTED),
    Sample(THE_REVOCATION, "SendDocument", G22, (H41, H14, G17), ACCEPTED),
    Sample("mic_edoc_update_bdt2.edxml", "SendDocument", G22, (H41, H14, G17), ACCEPTED),
    # Refused by the parser: xlink prefix used without a declaration.
    Sample(
        "mic_edoc_vxp_sdk_template_placeholder.edxml",
        "SendDocument",
        "002.00.20.H13",
        ("000.00.15.H51",),
        "Client.XmlNotNamespaceWellFormed",
    ),
    # Statuses about the revocation's DocumentId: from a recipient (H41) to the sender (G22)...
    Sample("mic_status_01_alt.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"),
    Sample("mic_status_01_inbox.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"),
    Sample(
        "mic_status_02_rejection.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"
    ),
    Sample(
        "mic_status_03_acceptance.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"
    ),
    Sample(
        "mic_status_04_assignment.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"
    ),
    Sample(
        "mic_status_05_processing.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"
    ),
    Sample("mic_status_06_finish.edxml", "SendStatus", H41, (G22,), ACCEPTED, "Client.StatusUnknownDocument"),
    # ... and 13 the other way: the sender asks the recipient to give it back.
    Sample(
        "mic_status_13_cancellation.edxml",
        "SendStatus",
        G22,
        (H41,),
        ACCEPTED,
        "Client.StatusUnknownDocument",
    ),
    Sample(
        "mic_status_15_change_acceptance.edxml",
        "SendStatus",
        H41,
        (G22,),
        ACCEPTED,
        "Client.StatusUnknownDocument",
    ),
    Sample(
        "mic_status_16_change_rejection.edxml",
        "SendStatus",
        H41,
        (G22,),
        ACCEPTED,
        "Client.StatusUnknownDocument",
    ),
)
BY_NAME = {sample.name: sample for sample in SAMPLES}
REFUSED_BY_THE_READER = {
    "ANTIEXAMPLE_mic_edoc_corrupted_binary.edxml",
    "mic_edoc_vxp_sdk_template_placeholder.edxml",
}
UNREGISTRABLE = {"vxp.saas.03", "28.22.H17", "002.00.20.H13"}


def data(sample: Sample) -> bytes:
    return (SAMPLES_DIR / sample.name).read_bytes()


def send(hub: Hub, sample: Sample) -> str:
    """Send the sample with its operation as its From agency; the hub id, or the fault code."""
    caller = hub.callers.get(sample.sender) or Caller(
        sample.sender, hub.caller(G22).application_id, "QLVB", None
    )
    operation = hub.exchange.send_document if sample.operation == "SendDocument" else hub.exchange.send_status
    try:
        receipt = operation(caller, package=data(sample))
    except EsbError as exc:
        return exc.code
    assert receipt.sha256 == hashlib.sha256(data(sample)).hexdigest()
    assert [r.organ_id for r in receipt.recipients] == list(sample.recipients)
    assert {r.state for r in receipt.recipients} == {DeliveryState.PENDING}
    return receipt.hub_document_id


def register_the_agencies(hub: Hub) -> None:
    for code in sorted({c for s in SAMPLES for c in (s.sender, *s.recipients)} - UNREGISTRABLE):
        if code not in hub.callers:
            hub.register(code)


# -- without the hub ---------------------------------------------------------------------------------------


def test_the_table_names_every_sample_once() -> None:
    assert sorted(BY_NAME) == sorted(path.name for path in SAMPLES_DIR.glob("*.edxml"))
    assert len(BY_NAME) == len(SAMPLES)


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name.removesuffix(".edxml") for s in SAMPLES])
def test_the_table_agrees_with_the_reader(sample: Sample) -> None:
    if sample.name in REFUSED_BY_THE_READER:
        with pytest.raises(EsbError) as caught:
            read_package(SAMPLES_DIR / sample.name)
        assert caught.value.code == sample.verdict
        return
    envelope = envelope_of(read_package(SAMPLES_DIR / sample.name).package)
    assert envelope.message_type is (
        MessageType.EDOC if sample.operation == "SendDocument" else MessageType.STATUS
    )
    assert (envelope.sender, envelope.recipients) == (sample.sender, sample.recipients)
    if sample.operation == "SendStatus":
        assert envelope.refers_to_document_id == ITS_DOCUMENT_ID
        assert envelope.refers_to_sender == G22


def test_the_registry_refuses_the_nonconforming_codes() -> None:
    for code in sorted(UNREGISTRABLE):
        with pytest.raises(InvalidIdentifier):
            AgencyRecord(code, "Không chuẩn")


# -- through the hub ---------------------------------------------------------------------------------------


def send_edoc_and_fetch(hub: Hub, sample: Sample) -> str:
    """Send an edoc sample; when accepted, every recipient fetches it.  The verdict or hub id."""
    stored = (hub.row_counts(), hub.blobs())
    outcome = send(hub, sample)
    if sample.verdict != ACCEPTED:
        assert (hub.row_counts(), hub.blobs()) == stored, sample.name  # nothing stored
        return outcome
    packages: set[bytes] = set()
    for recipient in sample.recipients:
        items = {i.hub_document_id: i for i in hub.exchange.pending(hub.caller(recipient), MessageType.EDOC)}
        assert outcome in items, (sample.name, recipient)
        fetched = hub.exchange.get_document(hub.caller(recipient), outcome)
        assert fetched.package is not None
        assert hashlib.sha256(fetched.package).hexdigest() == items[outcome].sha256
        packages.add(fetched.package)
    (package,) = packages  # every recipient gets the same bytes
    delivered = read_package(package).package
    assert isinstance(delivered, EdocPackage)
    assert delivered.trace_headers[-1].organ_id == HUB_ORGAN_ID, sample.name  # the hub's TraceHeader
    return outcome


def test_every_sample_through_the_hub(hub: Hub) -> None:
    """Statuses are refused while their document is unknown, accepted once the revocation (the
    first package with that DocumentId) was sent; then every other edoc, in table order."""
    register_the_agencies(hub)
    statuses = [s for s in SAMPLES if s.operation == "SendStatus"]

    before = {s.name: send(hub, s) for s in statuses}
    assert before == {s.name: s.before_revocation for s in statuses}
    assert hub.row_counts() == (0, 0, 0)
    assert hub.blobs() == []

    revocation = send_edoc_and_fetch(hub, BY_NAME[THE_REVOCATION])
    after = {s.name: send(hub, s) for s in statuses}
    assert {
        name: ACCEPTED if not outcome.startswith("Client.") else outcome for name, outcome in after.items()
    } == {s.name: s.verdict for s in statuses}

    verdicts = {THE_REVOCATION: ACCEPTED}
    for sample in SAMPLES:
        if sample.operation == "SendDocument" and sample.name != THE_REVOCATION:
            outcome = send_edoc_and_fetch(hub, sample)
            verdicts[sample.name] = outcome if outcome.startswith("Client.") else ACCEPTED
    assert verdicts == {s.name: s.verdict for s in SAMPLES if s.operation == "SendDocument"}

    to_sender = hub.exchange.pending(hub.caller(G22), MessageType.STATUS)
    to_recipient = hub.exchange.pending(hub.caller(H41), MessageType.STATUS)
    assert sorted(i.hub_document_id for i in to_sender + to_recipient) == sorted(after.values())
    assert {i.relates_to for i in to_sender + to_recipient} == {revocation}
    assert [i.status_code.value if i.status_code else None for i in to_recipient] == ["13"]
    codes = sorted(i.status_code.value for i in to_sender if i.status_code is not None)
    assert codes == ["01", "01", "02", "03", "04", "05", "06", "15", "16"]
    for item in to_sender + to_recipient:  # delivered exactly as sent
        recipient = G22 if item in to_sender else H41
        fetched = hub.exchange.get_document(hub.caller(recipient), item.hub_document_id)
        name = next(n for n, hub_id in after.items() if hub_id == item.hub_document_id)
        assert fetched.package == data(BY_NAME[name])
    _, events = hub.exchange.trace(hub.caller(H14), hub_id=revocation)
    assert sum(e.kind.value == "status" for e in events) == len(statuses)
