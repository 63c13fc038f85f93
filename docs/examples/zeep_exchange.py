"""A whole document exchange between two demo agencies, with zeep.

    ./scripts/demo                       # terminal 1: seeds the demo and serves on :8080
    .venv/bin/python docs/examples/zeep_exchange.py [demo-credentials.json] [http://127.0.0.1:8080]

UBND tỉnh Tây Ninh (000.00.00.H53) sends an official letter with one attachment to UBND tỉnh
Hậu Giang (000.00.00.H30).  Hậu Giang's QLVB lists its mailbox, fetches the package, checks
its SHA-256, confirms, and reports statuses 01 → 03 → 04 → 05 → 06; Tây Ninh's QLVB reads
them and prints the document's trace.  See docs/document-exchange.md.
"""
# ruff: noqa: E501 - the package templates read better one element per line

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import zeep

SENDER, RECIPIENT = "000.00.00.H53", "000.00.00.H30"
VN = timezone(timedelta(hours=7))

EDOC = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
 <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLHeader>
   <edXML:MessageHeader>
    <edXML:From><edXML:OrganId>{sender}</edXML:OrganId><edXML:OrganName>UBND tỉnh Tây Ninh</edXML:OrganName></edXML:From>
    <edXML:To><edXML:OrganId>{recipient}</edXML:OrganId><edXML:OrganName>UBND tỉnh Hậu Giang</edXML:OrganName></edXML:To>
    <edXML:DocumentId>{document_id}</edXML:DocumentId>
    <edXML:Code><edXML:CodeNumber>{number}</edXML:CodeNumber><edXML:CodeNotation>UBND-VP</edXML:CodeNotation></edXML:Code>
    <edXML:PromulgationInfo><edXML:Place>Tây Ninh</edXML:Place><edXML:PromulgationDate>{date}</edXML:PromulgationDate></edXML:PromulgationInfo>
    <edXML:DocumentType><edXML:Type>1</edXML:Type><edXML:TypeName>Công văn</edXML:TypeName></edXML:DocumentType>
    <edXML:Subject>V/v phối hợp triển khai liên thông văn bản điện tử</edXML:Subject>
    <edXML:OtherInfo><edXML:Priority>1</edXML:Priority></edXML:OtherInfo>
   </edXML:MessageHeader>
   <edXML:TraceHeaderList>
    <edXML:TraceHeader><edXML:OrganId>{sender}</edXML:OrganId><edXML:Timestamp>{now}</edXML:Timestamp></edXML:TraceHeader>
    <edXML:Bussiness><edXML:BussinessDocType>0</edXML:BussinessDocType></edXML:Bussiness>
   </edXML:TraceHeaderList>
  </edXML:edXMLHeader>
  <edXML:edXMLBody>
   <edXML:edXMLManifest version="1.0">
    <edXML:Reference><edXML:ContentId>cid:cong-van-1</edXML:ContentId><edXML:ContentType>text/plain</edXML:ContentType>
     <edXML:AttachmentName>cong-van.txt</edXML:AttachmentName></edXML:Reference>
   </edXML:edXMLManifest>
  </edXML:edXMLBody>
 </edXML:edXMLEnvelope>
 <AttachmentEncoded>
  <Attachment><ContentId>cid:cong-van-1</ContentId><AttachmentName>cong-van.txt</AttachmentName>
   <ContentType>text/plain</ContentType><ContentTransferEncoded>{attachment}</ContentTransferEncoded></Attachment>
 </AttachmentEncoded>
</edXML>
"""

STATUS = """<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
 <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
  <edXML:edXMLHeader>
   <edXML:MessageHeader>
    <edXML:From><edXML:OrganId>{sender}</edXML:OrganId><edXML:OrganName>UBND tỉnh Hậu Giang</edXML:OrganName></edXML:From>
    <edXML:ResponseFor><edXML:OrganId>{original_sender}</edXML:OrganId><edXML:Code>{number}/UBND-VP</edXML:Code>
     <edXML:DocumentId>{document_id}</edXML:DocumentId><edXML:PromulgationDate>{date}</edXML:PromulgationDate></edXML:ResponseFor>
    <edXML:StaffInfo><edXML:Department>Văn thư</edXML:Department><edXML:Staff>Lê Văn C</edXML:Staff></edXML:StaffInfo>
    <edXML:StatusCode>{code}</edXML:StatusCode>
    <edXML:Timestamp>{now}</edXML:Timestamp>
   </edXML:MessageHeader>
  </edXML:edXMLHeader>
 </edXML:edXMLEnvelope>
</edXML>
"""


def string_to_sign(access_key: str, timestamp: str, nonce: str, algorithm: str, target: str = "") -> bytes:
    return "\n".join((access_key, timestamp, nonce, algorithm, target)).encode("utf-8")


def session(auth: zeep.Client, credential: dict[str, str]) -> dict[str, Any]:
    """Authenticate (HMAC-SHA256) and return the SOAP header every exchange call carries."""
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    nonce = secrets.token_hex(12)
    message = string_to_sign(credential["accessKey"], timestamp, nonce, "HMAC-SHA256")
    signature = base64.b64encode(hmac.new(credential["secretKey"].encode(), message, hashlib.sha256).digest())
    ticket = auth.service.Authenticate(
        accessKey=credential["accessKey"],
        timestamp=timestamp,
        nonce=nonce,
        algorithm="HMAC-SHA256",
        signature=signature.decode(),
    )
    return {"AuthHeader": {"sessionToken": ticket.sessionToken}}


def main() -> None:
    credentials_file = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-credentials.json")
    base_url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
    credentials = {c["agency"]: c for c in json.loads(credentials_file.read_text(encoding="utf-8"))}

    settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    auth = zeep.Client(f"{base_url}/soap/Auth?wsdl", settings=settings)
    exchange = zeep.Client(f"{base_url}/soap/DocumentExchange?wsdl", settings=settings).service
    as_sender, as_recipient = session(auth, credentials[SENDER]), session(auth, credentials[RECIPIENT])

    now = datetime.now(VN)
    number = str(secrets.randbelow(900_000) + 100_000)  # a new document each run
    fields = {
        "sender": SENDER,
        "recipient": RECIPIENT,
        "number": number,
        "date": now.strftime("%Y/%m/%d"),
        "now": now.strftime("%Y/%m/%d %H:%M:%S"),
        "document_id": f"{SENDER},{now:%Y/%m/%d},{number}/UBND-VP",
    }
    letter = "Kính gửi UBND tỉnh Hậu Giang: đề nghị phối hợp triển khai liên thông.".encode()
    package = EDOC.format(**fields, attachment=base64.b64encode(letter).decode()).encode("utf-8")

    # 1. Tây Ninh sends: the call returns once the package is durably stored.
    receipt = exchange.SendDocument(edxmlPackage=package, _soapheaders=as_sender)
    hub_id = receipt.hubDocumentId
    print(f"sent {fields['document_id']} as {hub_id}, sha256 {receipt.sha256[:16]}…")

    # 2. Hậu Giang lists its mailbox, fetches, checks the digest, confirms.
    pending = exchange.GetPendingDocuments(messageType="edoc", _soapheaders=as_recipient) or []
    item = next(i for i in pending if i.hubDocumentId == hub_id)
    print(f"{RECIPIENT} has it pending: from {item['from']}, priority {item.priority}, {item.size} bytes")
    fetched = exchange.GetDocument(hubDocumentId=hub_id, _soapheaders=as_recipient)
    digest = hashlib.sha256(fetched.edxmlPackage).hexdigest()
    if not digest == fetched.sha256 == item.sha256:
        raise SystemExit("the package was altered in transit: do not confirm it")
    confirmation = exchange.ConfirmReceived(
        hubDocumentId=hub_id, sha256=digest, outcome="done", _soapheaders=as_recipient
    )
    print(f"{RECIPIENT} confirmed: {confirmation.state}")

    # 3. Hậu Giang reports each step of handling; Tây Ninh reads and confirms each status.
    for code in ("01", "03", "04", "05", "06"):
        stamp = datetime.now(VN).strftime("%Y/%m/%d %H:%M:%S")
        status_fields = {**fields, "sender": RECIPIENT, "original_sender": SENDER, "code": code, "now": stamp}
        status = STATUS.format(**status_fields).encode("utf-8")
        exchange.SendStatus(edxmlPackage=status, _soapheaders=as_recipient)
    # An empty mailbox comes back as None in zeep: hence "or []".
    for notice in exchange.GetPendingDocuments(messageType="status", _soapheaders=as_sender) or []:
        if notice.relatesTo != hub_id:
            continue
        body = exchange.GetDocument(hubDocumentId=notice.hubDocumentId, _soapheaders=as_sender).edxmlPackage
        exchange.ConfirmReceived(
            hubDocumentId=notice.hubDocumentId,
            sha256=hashlib.sha256(body).hexdigest(),
            outcome="done",
            _soapheaders=as_sender,
        )
        print(f"{SENDER} received status {notice.statusCode}: {notice.subject}")

    # 4. The trace: what happened, when, by whom, with which digest; the content is gone.
    trace = exchange.GetTrace(hubDocumentId=hub_id, _soapheaders=as_sender)
    for event in trace.event:
        who = event.actor + (f" → {event.recipient}" if event.recipient else "")
        note = event.detail if event.kind == "status" else ""
        print(
            f"  {event.at.astimezone(VN):%H:%M:%S} {event.kind:<10} {who:<36} {(event.sha256 or '')[:12]:<12} {note}"
        )


if __name__ == "__main__":
    main()
