"""The Auth service over real HTTP, gunicorn-served, on SQLite and PostgreSQL, with zeep as the client.

Covers the session-header path, WS-Security (zeep BinarySignature, RSA-SHA256) with a
certificate registered to an application, the six-step flow between two applications, typed
fault details, replay and clock skew, and the WSGI guard as seen by a client.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import zeep
from hmac_signing import hmac_signed
from lxml import etree
from zeep.exceptions import Fault
from zeep.plugins import HistoryPlugin

from esb.clients.zeep_wsse import signed_requests
from esb.soap.app import SERVICES, interface_document

NS = "urn:lgsp-esb:auth:1"
SOURCE = "000.00.00.H53"  # UBND tỉnh Tây Ninh
DESTINATION = "000.00.00.H30"  # UBND tỉnh Hậu Giang
OTHER = "000.00.00.G22"
HARDENED = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True, strict=True)


def fault_detail(client: zeep.Client, fault: Fault) -> Any:
    assert fault.detail is not None
    return client.get_element(f"{{{NS}}}EsbFault").parse(fault.detail[0], client.wsdl.types)


@pytest.fixture
def client(live_server: Any) -> zeep.Client:
    return zeep.Client(live_server.wsdl(), settings=HARDENED)


def test_authenticate_then_call_with_the_session_header(live_server: Any, client: zeep.Client) -> None:
    credential = live_server.credential(SOURCE)
    ticket = client.service.Authenticate(**hmac_signed(credential))
    assert ticket.agency == SOURCE
    assert ticket.application == "QLVB"
    assert ticket.expiresAt > datetime.now(UTC) + timedelta(minutes=25)

    me = client.service.WhoAmI(_soapheaders={"AuthHeader": {"sessionToken": ticket.sessionToken}})
    assert (me.agency, me.accessKey, me.certificateSha256) == (SOURCE, credential.accessKey, None)


def test_rejections_are_typed_faults_with_stable_codes(live_server: Any, client: zeep.Client) -> None:
    credential = live_server.credential(SOURCE)
    request = hmac_signed(credential)
    client.service.Authenticate(**request)

    with pytest.raises(Fault) as replay:
        client.service.Authenticate(**request)
    detail = fault_detail(client, replay.value)
    assert replay.value.code.endswith("Client.ReplayDetected")
    assert detail.code == "Client.ReplayDetected"
    assert len(detail.reference) == 12

    wrong = {**hmac_signed(credential), "signature": base64.b64encode(b"x" * 32).decode()}
    with pytest.raises(Fault) as bad_signature:
        client.service.Authenticate(**wrong)
    unknown = {**hmac_signed(credential), "accessKey": "AK" + "A" * 20}
    with pytest.raises(Fault) as unknown_key:
        client.service.Authenticate(**unknown)
    # No "key exists" oracle: the same code and the same words.
    assert fault_detail(client, bad_signature.value).code == "Client.AuthenticationFailed"
    assert fault_detail(client, unknown_key.value).code == "Client.AuthenticationFailed"
    assert bad_signature.value.message == unknown_key.value.message


def test_clock_skew_fault_tells_the_server_time(live_server: Any, client: zeep.Client) -> None:
    late = datetime.now(UTC) - timedelta(minutes=10)
    with pytest.raises(Fault) as skew:
        client.service.Authenticate(**hmac_signed(live_server.credential(SOURCE), at=late))
    detail = fault_detail(client, skew.value)
    assert detail.code == "Client.ClockSkew"
    assert abs(detail.serverTime - datetime.now(UTC)) < timedelta(seconds=30)
    assert "server time is" in skew.value.message
    assert abs(client.service.GetServerTime() - datetime.now(UTC)) < timedelta(seconds=30)


def test_six_step_flow_between_two_applications(live_server: Any, client: zeep.Client) -> None:
    source, destination = live_server.credential(SOURCE), live_server.credential(DESTINATION)
    # 1-2: the source asks for a session key towards the destination.
    ticket = client.service.Authenticate(**hmac_signed(source, target=DESTINATION))
    assert ticket.target == DESTINATION
    # 3: the source presents it to the destination (outside the hub).
    # 4-5: the destination, signing with its own key, asks the hub to confirm.
    own = hmac_signed(destination, target=ticket.sessionToken)
    own.pop("target")
    confirmation = client.service.VerifyAccess(ticket.sessionToken, source.accessKey, own)
    assert confirmation.requesterAgency == SOURCE
    assert confirmation.requesterAccessKey == source.accessKey
    assert confirmation.destinationAgency == DESTINATION
    # A third agency cannot use the source's session key.
    other = hmac_signed(live_server.credential(OTHER), target=ticket.sessionToken)
    other.pop("target")
    with pytest.raises(Fault) as denied:
        client.service.VerifyAccess(ticket.sessionToken, None, other)
    assert fault_detail(client, denied.value).code == "Client.AccessDenied"
    # A session towards an agency is not a key to the hub's own services.
    with pytest.raises(Fault) as wrong_use:
        client.service.WhoAmI(_soapheaders={"AuthHeader": {"sessionToken": ticket.sessionToken}})
    assert fault_detail(client, wrong_use.value).code == "Client.AccessDenied"


def test_ws_security_with_the_registered_certificate(live_server: Any, pki: Any) -> None:
    runtime = live_server.runtime()
    try:
        runtime.registration.register_application(
            OTHER, f"Portal-{live_server.engine}", certificate=pki.client.cert_path.read_bytes()
        )
    finally:
        runtime.database.dispose()
    history = HistoryPlugin()
    client = zeep.Client(
        live_server.wsdl(),
        settings=HARDENED,
        wsse=signed_requests(str(pki.client.key_path), str(pki.client.cert_path)),
        plugins=[history],
    )
    me = client.service.WhoAmI()
    assert me.agency == OTHER
    assert me.certificateSha256 == pki.client.sha256
    assert me.accessKey is None

    # The very same signed bytes again: refused by the replay cache shared by all workers.
    replayed = etree.tostring(history.last_sent["envelope"])
    answer = requests.post(
        live_server.wsdl().split("?")[0], data=replayed, headers={"Content-Type": "text/xml"}, timeout=10
    )
    assert answer.status_code == 500
    assert b"<tns:code>Client.ReplayDetected</tns:code>" in answer.content

    # A certificate nobody registered: refused without saying more.
    stranger = zeep.Client(
        live_server.wsdl(),
        settings=HARDENED,
        wsse=signed_requests(str(pki.attacker.key_path), str(pki.attacker.cert_path)),
    )
    with pytest.raises(Fault) as unknown:
        stranger.service.WhoAmI()
    assert fault_detail(stranger, unknown.value).code == "Client.AuthenticationFailed"

    # zeep's defaults (RSA-SHA1/SHA1) are refused unless an operator allows legacy clients.
    legacy = zeep.Client(
        live_server.wsdl(),
        settings=HARDENED,
        wsse=signed_requests(str(pki.client.key_path), str(pki.client.cert_path), legacy_sha1=True),
    )
    with pytest.raises(Fault) as weak:
        legacy.service.WhoAmI()
    assert fault_detail(legacy, weak.value).code == "Client.WsseAlgorithmForbidden"


def test_signature_wrapping_over_http_is_refused(live_server: Any, pki: Any) -> None:
    """The signed Body moved into a header and an evil Body put in its place."""
    history = HistoryPlugin()
    client = zeep.Client(
        live_server.wsdl(),
        settings=HARDENED,
        wsse=signed_requests(str(pki.client.key_path), str(pki.client.cert_path)),
        plugins=[history],
    )
    client.service.GetServerTime()  # only to capture a validly signed envelope
    envelope = history.last_sent["envelope"]
    soap = "http://schemas.xmlsoap.org/soap/envelope/"
    body = envelope.find(f"{{{soap}}}Body")
    header = envelope.find(f"{{{soap}}}Header")
    envelope.remove(body)
    wrapper = etree.SubElement(header, "{urn:attacker}Wrapper")
    wrapper.append(body)
    evil = etree.SubElement(envelope, f"{{{soap}}}Body")
    etree.SubElement(evil, f"{{{NS}}}WhoAmI")
    answer = requests.post(
        live_server.wsdl().split("?")[0],
        data=etree.tostring(envelope),
        headers={"Content-Type": "text/xml"},
        timeout=10,
    )
    assert answer.status_code == 500
    assert b"<tns:code>Client.WsseNotSigned</tns:code>" in answer.content


def test_the_wsdl_address_is_pinned_and_the_document_is_the_exported_one(live_server: Any) -> None:
    served = requests.get(live_server.wsdl(), headers={"Host": "evil.example:666"}, timeout=10)
    assert served.status_code == 200
    assert served.content == interface_document(SERVICES[0], live_server.base_url)
    assert b"evil.example" not in served.content
    assert f'location="{live_server.base_url}/soap/Auth"'.encode() in served.content
    assert requests.get(live_server.url("/healthz"), timeout=10).json()["status"] == "ok"


GUARD_CASES = {
    "doctype": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
        "text/xml",
        500,
        "Client.XmlDtdForbidden",
    ),
    "multipart": (b"--b\r\n\r\n--b--", 'multipart/related; boundary="b"', 415, "Client.UnsupportedMediaType"),
    "not a soap envelope": (b"<hello/>", "text/xml", 500, "Client.InvalidSoap"),
    "soap 1.2": (
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x/></e:Body></e:Envelope>',
        "application/soap+xml",
        500,
        "Client.InvalidSoap",
    ),
    "unknown mustUnderstand header": (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header>'
        b'<r:Routing xmlns:r="urn:x" s:mustUnderstand="1"/></s:Header>'
        b'<s:Body><a:GetServerTime xmlns:a="urn:lgsp-esb:auth:1"/></s:Body></s:Envelope>',
        "text/xml",
        500,
        "Client.MustUnderstand",
    ),
    "AuthHeader with two tokens": (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="urn:lgsp-esb:auth:1">'
        b"<s:Header><a:AuthHeader><a:sessionToken>one</a:sessionToken><a:sessionToken>two</a:sessionToken>"
        b"</a:AuthHeader></s:Header><s:Body><a:WhoAmI/></s:Body></s:Envelope>",
        "text/xml",
        500,
        "Client.InvalidHeader",
    ),
    "missing argument": (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="urn:lgsp-esb:auth:1">'
        b"<s:Body><a:Authenticate><a:accessKey>AK</a:accessKey></a:Authenticate></s:Body></s:Envelope>",
        "text/xml",
        500,
        "Client.SchemaValidationError",
    ),
    "too large": (b"<x>" + b"a" * (11 * 1024 * 1024) + b"</x>", "text/xml", 413, "Client.RequestTooLarge"),
}


@pytest.mark.parametrize("case", list(GUARD_CASES))
def test_the_guard_refuses_before_spyne_parses(live_server: Any, case: str) -> None:
    body, content_type, status, code = GUARD_CASES[case]
    answer = requests.post(
        live_server.url("/soap/Auth"), data=body, headers={"Content-Type": content_type}, timeout=20
    )
    assert answer.status_code == status
    assert f"<tns:code>{code}</tns:code>".encode() in answer.content
    assert b"Traceback" not in answer.content
    assert b"/etc/passwd" not in answer.content


def test_no_traceback_in_server_log_for_client_faults(live_server: Any, client: zeep.Client) -> None:
    with pytest.raises(Fault):
        client.service.Authenticate(**{**hmac_signed(live_server.credential(SOURCE)), "algorithm": "MD5"})
    log = live_server.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log
    for credential in live_server.credentials:
        assert credential.secretKey not in log
