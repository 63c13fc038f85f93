"""Tests for ``esb sign``, ``esb verify`` and ``esb pki demo`` (and the PKI of ``esb demo seed``).

Real files and real keys: one demo PKI (esb.security.pki.write_demo_pki) and one package per
module, signed with the agencies' keys; the commands run through CliRunner as an operator or
an auditor would type them.  The commands that read the registry run on both engines.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from esb.domain.receipts import HubReceipt, ReceiptKind
from esb.domain.signatures import SignatureReport
from esb.domain.trace_chain import timestamp
from esb.pipeline.demo_packages import build_edoc, edoc_spec
from esb.pipeline.demo_seed import DEMO_AGENCIES
from esb.security.pki import (
    DemoPki,
    IssuedCertificate,
    issue_signing_certificate,
    load_certificates,
    make_intermediate_ca,
    make_root_ca,
    write_demo_pki,
)
from esb.security.signing_key import SigningKey

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "samples" / "edxml"
PLACEHOLDER_SAMPLE = SAMPLES / "mic_edoc_new_bdt0_vpcp_original.edxml"

A = "000.00.00.H53"
B = "000.00.01.H53"
HUB = "000.00.00.H53"
NOW = datetime.now(UTC).replace(microsecond=0)

Run = Callable[..., Result]


# -- fixtures: the commands, a PKI, packages ----------------------------------------------------


@pytest.fixture(scope="module")
def run(cli: click.Group) -> Run:
    """``run(*args)``: one command without a database (sign, verify)."""
    runner = CliRunner(env={"COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, code: str | None = None) -> Result:
    assert result.exit_code == 1, result.output
    if code is not None:
        assert f"error: {code}: " in result.stderr, result.output
    return result


def report_of(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def fingerprint(pem_file: Path) -> str:
    certificate = load_certificates(pem_file.read_bytes())[0]
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signatures")


@pytest.fixture(scope="module")
def demo_pki(folder: Path) -> DemoPki:
    agencies = [(A, "UBND tỉnh Tây Ninh"), (B, "Văn phòng UBND tỉnh Tây Ninh")]
    return write_demo_pki(folder / "pki", agencies, now=NOW - timedelta(hours=1), hub_organ_id=HUB)


@pytest.fixture(scope="module")
def package_bytes() -> bytes:
    spec = edoc_spec(A, [B], number="2491", promulgated=date.today())
    return build_edoc(spec, "Báo cáo quý IV.\n".encode(), now=NOW)


@pytest.fixture(scope="module")
def unsigned(folder: Path, package_bytes: bytes) -> Path:
    path = folder / "cong-van.edxml"
    path.write_bytes(package_bytes)
    return path


def _sign(source: Path, out: Path, key: SigningKey) -> Path:
    from esb.security.package_signature import sign_package

    sign_package(source, out, key=key)
    return out


@pytest.fixture(scope="module")
def key_a(demo_pki: DemoPki) -> SigningKey:
    return SigningKey.from_files(demo_pki.agency_keys[A], demo_pki.agency_certificates[A])


@pytest.fixture(scope="module")
def signed(folder: Path, unsigned: Path, key_a: SigningKey) -> Path:
    """The package signed by agency A (with the library, not the command)."""
    return _sign(unsigned, folder / "signed-by-a.edxml", key_a)


@dataclass(frozen=True)
class OldPki:
    """A CA valid for years and a signer certificate that expired a month ago."""

    root: Path
    issuing: Path
    key: Path
    cert: Path
    signed: Path
    not_before: datetime
    not_after: datetime


@pytest.fixture(scope="module")
def old_pki(folder: Path, unsigned: Path) -> OldPki:
    directory = folder / "old"
    directory.mkdir()
    root = make_root_ca("Old Root CA", now=NOW - timedelta(days=800), days=3650)
    issuing = make_intermediate_ca(root, "Old Issuing CA", now=NOW - timedelta(days=800))
    not_before, not_after = NOW - timedelta(days=400), NOW - timedelta(days=30)
    leaf = issue_signing_certificate(
        issuing, "Sở Tài chính (old)", now=NOW, agency_code=A, not_before=not_before, not_after=not_after
    )
    paths = OldPki(
        root=directory / "root.pem",
        issuing=directory / "issuing.pem",
        key=directory / "key.pem",
        cert=directory / "cert.pem",
        signed=directory / "signed-expired.edxml",
        not_before=not_before,
        not_after=not_after,
    )
    paths.root.write_bytes(root.certificate_pem())
    paths.issuing.write_bytes(issuing.certificate_pem())
    paths.key.write_bytes(leaf.key_pem())
    paths.cert.write_bytes(leaf.certificate_pem() + issuing.certificate_pem())
    _sign(unsigned, paths.signed, SigningKey(leaf.key, [leaf.certificate, issuing.certificate]))
    return paths


# -- esb sign -----------------------------------------------------------------------------------


def test_sign_writes_next_to_the_file_and_verifies_with_the_demo_trust_dir(
    run: Run, demo_pki: DemoPki, unsigned: Path, folder: Path
) -> None:
    source = folder / "to-sign" / "bao-cao.edxml"
    source.parent.mkdir()
    source.write_bytes(unsigned.read_bytes())
    before = source.read_bytes()
    result = ok(
        run(
            "sign",
            source,
            "--key",
            demo_pki.agency_keys[A],
            "--cert",
            demo_pki.agency_certificates[A],
        )
    )
    out = source.with_name("bao-cao.signed.edxml")
    assert out.is_file()
    assert source.read_bytes() == before  # FILE itself is never changed
    data = out.read_bytes()
    assert str(out) in result.stdout
    assert hashlib.sha256(data).hexdigest() in result.stdout
    assert f"{len(data):,} bytes" in result.stdout
    assert f"UID={A}" in result.stdout  # the signer's subject
    assert "PRIVATE KEY" not in result.output
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left

    verified = ok(run("verify", out, "--trust", demo_pki.trust_dir))
    assert "✔ valid" in verified.stdout
    assert "ok: signature value and digests verified" in verified.stdout
    assert fingerprint(demo_pki.agency_certificates[A]) in verified.stdout
    assert "LGSP Demo Root CA" in verified.stdout  # the issuer chain up to the anchor
    assert "rsa-sha256" in verified.stdout.lower()


def test_sign_to_an_output_with_an_encrypted_key(
    run: Run, demo_pki: DemoPki, unsigned: Path, folder: Path
) -> None:
    from esb.security.pki import load_private_key

    issued = IssuedCertificate(
        load_certificates(demo_pki.agency_certificates[B].read_bytes())[0],
        load_private_key(demo_pki.agency_keys[B].read_bytes()),
    )
    key_file = folder / "b-encrypted.pem"
    key_file.write_bytes(issued.key_pem(b"mat-khau"))
    password = folder / "b-password.txt"
    password.write_bytes(b"mat-khau\n")
    out = folder / "out" / "signed-by-b.edxml"
    args = ("sign", unsigned, "--key", key_file, "--cert", demo_pki.agency_certificates[B], "-o", out)

    refused(run(*args), "Client.BadKey")  # encrypted, and no password given
    assert not out.exists()
    ok(run(*args, "--password-file", password))
    report = report_of(ok(run("verify", out, "--trust", demo_pki.trust_dir, "--json")))
    assert report["signer"]["sha256"] == fingerprint(demo_pki.agency_certificates[B])


def test_sign_refusals(run: Run, demo_pki: DemoPki, unsigned: Path, signed: Path, folder: Path) -> None:
    key_a = ("--key", demo_pki.agency_keys[A], "--cert", demo_pki.agency_certificates[A])
    # already signed: refused, unless --replace
    again = folder / "again.edxml"
    refused(run("sign", signed, *key_a, "-o", again), "Client.AlreadySigned")
    assert not again.exists()
    # never over FILE itself
    overwrite = run("sign", unsigned, *key_a, "-o", unsigned)
    assert overwrite.exit_code == 2, overwrite.output
    # not an edXML package
    text = folder / "notes.txt"
    text.write_text("not xml at all", encoding="utf-8")
    refused(run("sign", text, *key_a, "-o", folder / "notes.signed.edxml"))
    # a key that is not the certificate's
    mismatch = run(
        "sign", unsigned, "--key", demo_pki.agency_keys[B], "--cert", demo_pki.agency_certificates[A]
    )
    refused(mismatch, "Client.BadKey")
    # a missing FILE is a usage error
    assert run("sign", folder / "missing.edxml", *key_a).exit_code == 2


def test_sign_replace_re_signs_with_another_key(
    run: Run, demo_pki: DemoPki, signed: Path, folder: Path
) -> None:
    out = folder / "re-signed-by-b.edxml"
    ok(
        run(
            "sign",
            signed,
            "--key",
            demo_pki.agency_keys[B],
            "--cert",
            demo_pki.agency_certificates[B],
            "--replace",
            "-o",
            out,
        )
    )
    report = report_of(ok(run("verify", out, "--trust", demo_pki.trust_dir, "--json")))
    assert report["signer"]["sha256"] == fingerprint(demo_pki.agency_certificates[B])


# -- esb verify: packages -----------------------------------------------------------------------


def test_verify_json_is_the_signature_report(run: Run, demo_pki: DemoPki, signed: Path) -> None:
    result = ok(run("verify", signed, "--trust", demo_pki.trust_dir, "--json"))
    report = report_of(result)
    assert report["verdict"] == "valid"
    assert report["reason"] == "ok"
    assert report["signer"]["sha256"] == fingerprint(demo_pki.agency_certificates[A])
    assert f"UID={A}" in report["signer"]["subject"]
    assert report["chain"][-1].startswith("CN=LGSP Demo Root CA")
    assert len(report["chain"]) == 3
    assert report["digests"]
    assert report["digest_methods"]
    assert report["weak"] is False
    assert report["checked_at"]
    assert json.loads(SignatureReport.from_dict(report).to_json()) == report  # the stored shape


def test_verify_trust_as_files_and_directories(
    run: Run, demo_pki: DemoPki, signed: Path, old_pki: OldPki
) -> None:
    trust = demo_pki.trust_dir
    as_files = (
        "--trust", trust / "anchors" / "demo-root-ca.pem",
        "--intermediate", trust / "intermediates",
        "--crl", trust / "crls" / "demo-issuing-ca.crl.pem",
    )  # fmt: skip
    assert report_of(ok(run("verify", signed, *as_files, "--json")))["verdict"] == "valid"
    # a plain directory of anchors, without the intermediate the package carries anyway
    assert report_of(ok(run("verify", signed, "--trust", trust / "anchors", "--json")))["verdict"] == "valid"
    # no trust named: nothing to chain to
    untrusted = report_of(refused(run("verify", signed, "--json")))
    assert (untrusted["verdict"], untrusted["reason"]) == ("untrusted", "no-trust-anchors")
    # another CA's anchor does not trust the agency
    other = report_of(refused(run("verify", signed, "--trust", old_pki.root, "--json")))
    assert (other["verdict"], other["reason"]) == ("untrusted", "chain-untrusted")


def test_verify_tampered_package_is_a_digest_mismatch(
    run: Run, demo_pki: DemoPki, signed: Path, folder: Path
) -> None:
    data = signed.read_bytes()
    original = f"Cơ quan {A}".encode()
    assert original in data
    tampered = folder / "tampered.edxml"
    tampered.write_bytes(data.replace(original, f"Cơ quan {B}".encode(), 1))
    result = refused(run("verify", tampered, "--trust", demo_pki.trust_dir))
    assert "✘ invalid" in result.stdout
    assert "digest-mismatch" in result.stdout
    report = report_of(refused(run("verify", tampered, "--trust", demo_pki.trust_dir, "--json")))
    assert (report["verdict"], report["reason"]) == ("invalid", "digest-mismatch")


def test_verify_unsigned_package(run: Run, demo_pki: DemoPki, unsigned: Path) -> None:
    result = refused(run("verify", unsigned, "--trust", demo_pki.trust_dir))
    assert "unsigned" in result.stdout
    assert "no-signature" in result.stdout
    report = report_of(refused(run("verify", unsigned, "--trust", demo_pki.trust_dir, "--json")))
    assert (report["verdict"], report["reason"]) == ("unsigned", "no-signature")
    assert report["signer"] is None


def test_verify_shared_sample_is_a_placeholder(run: Run, demo_pki: DemoPki) -> None:
    if not PLACEHOLDER_SAMPLE.is_file():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    result = refused(run("verify", PLACEHOLDER_SAMPLE, "--trust", demo_pki.trust_dir))
    assert "placeholder" in result.stdout
    report = report_of(refused(run("verify", PLACEHOLDER_SAMPLE, "--trust", demo_pki.trust_dir, "--json")))
    assert report["verdict"] == "placeholder"


def test_verify_at_a_time_when_the_certificate_was_valid(run: Run, old_pki: OldPki) -> None:
    trust = ("--trust", old_pki.root, "--intermediate", old_pki.issuing)
    now = report_of(refused(run("verify", old_pki.signed, *trust, "--json")))
    assert (now["verdict"], now["reason"]) == ("untrusted", "certificate-expired")

    during = (old_pki.not_after - timedelta(days=100)).isoformat()
    then = report_of(ok(run("verify", old_pki.signed, *trust, "--at", during, "--json")))
    assert then["verdict"] == "valid"
    assert then["checked_at"].startswith(during[:10])
    # a date alone is midnight UTC; before not_before the certificate was not yet valid
    before = (old_pki.not_before - timedelta(days=2)).date().isoformat()
    early = report_of(refused(run("verify", old_pki.signed, *trust, "--at", before, "--json")))
    assert early["reason"] == "certificate-not-yet-valid"
    text = refused(run("verify", old_pki.signed, *trust)).stdout
    assert "certificate-expired" in text
    assert "expired at the verification time" in text


def test_verify_signer_cert_pins_the_signer(run: Run, demo_pki: DemoPki, signed: Path) -> None:
    trust = ("--trust", demo_pki.trust_dir)
    mismatch = refused(run("verify", signed, *trust, "--signer-cert", demo_pki.agency_certificates[B]))
    assert "signer-not-registered" in mismatch.stdout
    report = report_of(
        refused(run("verify", signed, *trust, "--signer-cert", demo_pki.agency_certificates[B], "--json"))
    )
    assert (report["verdict"], report["reason"]) == ("untrusted", "signer-not-registered")
    # the right certificate, among others, passes; pinned, it needs no trust anchor at all
    both = (
        "--signer-cert",
        demo_pki.agency_certificates[B],
        "--signer-cert",
        demo_pki.agency_certificates[A],
    )
    assert report_of(ok(run("verify", signed, *trust, *both, "--json")))["verdict"] == "valid"
    pinned = ("--signer-cert", demo_pki.agency_certificates[A])
    assert report_of(ok(run("verify", signed, *pinned, "--json")))["verdict"] == "valid"


def test_verify_usage_errors_exit_2(run: Run, demo_pki: DemoPki, signed: Path, folder: Path) -> None:
    missing = run("verify", folder / "no-such-file.edxml", "--trust", demo_pki.trust_dir)
    assert missing.exit_code == 2, missing.output
    assert "no-such-file.edxml" in missing.stderr
    directory = run("verify", folder, "--trust", demo_pki.trust_dir)
    assert directory.exit_code == 2, directory.output
    assert run("verify", signed, "--at", "yesterday").exit_code == 2
    assert run("verify", signed, "--trust", folder / "no-such-anchor.pem").exit_code == 2
    garbage = folder / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert run("verify", signed, "--trust", garbage).exit_code == 2
    assert run("verify", signed, "--signer-cert", garbage).exit_code == 2


# -- esb verify: receipts and bundles -----------------------------------------------------------


def _receipt() -> HubReceipt:
    return HubReceipt(
        receipt_id="5f0c7c3e-8d7a-4c55-9d55-0b0e8f3b8a11",
        kind=ReceiptKind.ACCEPTED,
        hub_organ_id=HUB,
        hub_document_id="HD2026112100000001",
        document_id=f"{A},2026/11/21,2491/BC-DEMO",
        message_type="edoc",
        sender=A,
        recipients=(B, "000.00.00.G22"),
        accepted_sha256="a" * 64,
        accepted_size=12_345,
        delivered_sha256="b" * 64,
        event_time=timestamp(NOW - timedelta(seconds=1)),
        issued_at=timestamp(NOW),
        signature_verdict="valid",
        signature_reason="ok",
        signer_sha256="c" * 64,
        trace_seq=42,
        trace_hash="d" * 64,
    )


@pytest.fixture(scope="module")
def receipt_file(demo_pki: DemoPki, folder: Path) -> Path:
    from esb.security.hub_receipts import sign_receipt

    hub = SigningKey.from_files(demo_pki.hub_key, demo_pki.hub_certificate)
    path = folder / "receipt.xml"
    path.write_bytes(sign_receipt(_receipt(), hub))
    return path


def test_verify_a_receipt(run: Run, demo_pki: DemoPki, receipt_file: Path, folder: Path) -> None:
    receipt = _receipt()
    result = ok(run("verify", receipt_file, "--trust", demo_pki.trust_dir))
    for fact in (
        receipt.hub_document_id,
        receipt.accepted_sha256,
        receipt.trace_hash,
        "accepted",
        "000.00.00.G22",
        "42",
    ):
        assert fact in result.stdout
    assert "✔ valid" in result.stdout
    assert fingerprint(demo_pki.hub_certificate) in result.stdout

    data = report_of(ok(run("verify", receipt_file, "--trust", demo_pki.trust_dir, "--json")))
    assert set(data) == {"receipt", "report"}
    assert data["report"]["verdict"] == "valid"
    assert data["receipt"]["kind"] == "accepted"
    assert data["receipt"]["hub_document_id"] == receipt.hub_document_id
    assert data["receipt"]["recipients"] == list(receipt.recipients)
    assert data["receipt"]["trace_seq"] == 42

    # pinned to another certificate than the hub's: not the hub
    pins = ("--signer-cert", demo_pki.agency_certificates[A], "--json")
    pinned = report_of(refused(run("verify", receipt_file, "--trust", demo_pki.trust_dir, *pins)))
    assert pinned["report"]["verdict"] != "valid"
    assert pinned["receipt"]["hub_document_id"] == receipt.hub_document_id
    # tampered: the signature no longer verifies
    tampered = folder / "receipt-tampered.xml"
    tampered.write_bytes(receipt_file.read_bytes().replace(b"a" * 64, b"e" * 64, 1))
    assert (
        report_of(refused(run("verify", tampered, "--trust", demo_pki.trust_dir, "--json")))["report"][
            "verdict"
        ]
        == "invalid"
    )


def test_verify_a_bundle(run: Run, demo_pki: DemoPki, folder: Path) -> None:
    unreadable = folder / "broken.zip"
    unreadable.write_bytes(b"PK\x03\x04" + secrets.token_bytes(64))
    refused(run("verify", unreadable, "--trust", demo_pki.trust_dir), "Client.BundleUnreadable")

    bundle = folder / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format": "lgsp-esb-evidence/1", "files": {}}))
        archive.writestr("document.json", "{}")
    result = refused(run("verify", bundle, "--trust", demo_pki.trust_dir))
    assert "✘ failed" in result.stdout
    assert "check(s) failed" in result.stdout
    data = report_of(refused(run("verify", bundle, "--trust", demo_pki.trust_dir, "--json")))
    assert data["ok"] is False
    assert data["checks"]
    assert all(set(c) == {"name", "ok", "detail"} for c in data["checks"])
    assert not all(c["ok"] for c in data["checks"])


# -- esb pki demo (both engines) ----------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def esb(cli: click.Group, database_url: str, data_dir: Path, master_key: str) -> Run:
    """``esb(*args)``: one command on this test's database, with a random master key."""
    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str | Path) -> Result:
        command = [str(a) for a in args] + ["--database-url", database_url, "--data-dir", str(data_dir)]
        return runner.invoke(cli, command, catch_exceptions=False)

    return invoke


def _certificates(esb: Run) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(ok(esb("agency", "certificate", "list", "--json")).stdout)
    return data


def test_pki_demo_needs_registered_agencies(esb: Run, data_dir: Path) -> None:
    result = refused(esb("pki", "demo"), "Client.NotRegistered")
    assert "esb demo seed" in result.stderr
    assert not (data_dir / "trust" / "anchors").exists()


def test_pki_demo_writes_and_registers(
    esb: Run, run: Run, data_dir: Path, unsigned: Path, tmp_path: Path
) -> None:
    ok(esb("agency", "add", A, "UBND tỉnh Tây Ninh"))
    ok(esb("agency", "add", B, "Văn phòng UBND tỉnh Tây Ninh"))
    result = ok(esb("pki", "demo"))
    trust = data_dir / "trust"
    assert (trust / "anchors" / "demo-root-ca.pem").is_file()
    assert (trust / "intermediates" / "demo-issuing-ca.pem").is_file()
    assert (trust / "crls" / "demo-issuing-ca.crl.pem").is_file()
    for key in (
        data_dir / "hub" / "key.pem",
        data_dir / "agencies" / A / "key.pem",
        data_dir / "agencies" / B / "key.pem",
    ):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().split(b"\n")[1].decode() not in result.output  # no key material shown
    assert "PRIVATE KEY" not in result.output
    assert f"agencies/{A}/key.pem, cert.pem" in result.stdout
    assert f"demo PKI written to {data_dir}" in result.stdout
    assert "restart" in result.stdout  # esb serve finds trust/ and hub/ at their default places

    listed = _certificates(esb)
    cert_a = data_dir / "agencies" / A / "cert.pem"
    assert {(c["agency"], c["sha256"], c["state"]) for c in listed} == {
        (A, fingerprint(cert_a), "active"),
        (B, fingerprint(data_dir / "agencies" / B / "cert.pem"), "active"),
    }

    # the written keys sign packages that verify against the written trust dir
    out = tmp_path / "signed.edxml"
    ok(run("sign", unsigned, "--key", data_dir / "agencies" / A / "key.pem", "--cert", cert_a, "-o", out))
    ok(run("verify", out, "--trust", trust, "--signer-cert", cert_a))

    # a second run is refused; --overwrite makes new keys and replaces the registrations
    root_before = (trust / "anchors" / "demo-root-ca.pem").read_bytes()
    again = refused(esb("pki", "demo"), "Client.PkiExists")
    assert "--overwrite" in again.stderr
    assert (trust / "anchors" / "demo-root-ca.pem").read_bytes() == root_before
    ok(esb("pki", "demo", "--overwrite"))
    assert (trust / "anchors" / "demo-root-ca.pem").read_bytes() != root_before
    after = _certificates(esb)
    active = {(c["agency"], c["sha256"]) for c in after if c["state"] == "active"}
    assert active == {
        (A, fingerprint(cert_a)),
        (B, fingerprint(data_dir / "agencies" / B / "cert.pem")),
    }
    assert sum(1 for c in after if c["state"] == "removed") == 2
    # the old signature no longer chains to the new anchor, nor matches the registered certificate
    assert report_of(refused(run("verify", out, "--trust", trust, "--json")))["verdict"] == "untrusted"


def test_pki_demo_elsewhere_for_chosen_agencies(esb: Run, data_dir: Path, tmp_path: Path) -> None:
    ok(esb("agency", "add", A, "UBND tỉnh Tây Ninh"))
    ok(esb("agency", "add", B, "Văn phòng UBND tỉnh Tây Ninh"))
    out = tmp_path / "elsewhere"
    result = ok(esb("pki", "demo", "--out", out, "--agency", B))
    assert (out / "trust" / "anchors" / "demo-root-ca.pem").is_file()
    assert sorted(p.name for p in (out / "agencies").iterdir()) == [B]
    assert f"ESB_TRUST_DIR={out / 'trust'}" in result.stdout
    assert [(c["agency"], c["state"]) for c in _certificates(esb)] == [(B, "active")]
    refused(
        esb("pki", "demo", "--out", tmp_path / "third", "--agency", "000.00.99.H53"), "Client.NotRegistered"
    )


def test_demo_seed_creates_the_pki_and_registers_certificates(
    esb: Run, run: Run, data_dir: Path, unsigned: Path, tmp_path: Path
) -> None:
    credentials = tmp_path / "demo-credentials.json"
    result = ok(esb("demo", "seed", "--credentials-out", credentials))
    root = data_dir / "trust" / "anchors" / "demo-root-ca.pem"
    assert root.is_file()
    assert f"{data_dir / 'agencies'}/<code>/key.pem" in " ".join(result.stdout.split())
    listed = _certificates(esb)
    assert sorted(c["agency"] for c in listed) == sorted(r.code for r in DEMO_AGENCIES)
    for entry in listed:
        assert entry["sha256"] == fingerprint(data_dir / "agencies" / entry["agency"] / "cert.pem")
        assert entry["state"] == "active"
    # the hub key in the data dir is the demo one, chained to the demo anchor
    hub = load_certificates((data_dir / "hub" / "cert.pem").read_bytes())[0]
    assert hub.issuer.rfc4514_string().startswith("CN=LGSP Demo Issuing CA")

    out = tmp_path / "signed.edxml"
    ok(
        run(
            "sign",
            unsigned,
            "--key",
            data_dir / "agencies" / A / "key.pem",
            "--cert",
            data_dir / "agencies" / A / "cert.pem",
            "-o",
            out,
        )
    )
    ok(run("verify", out, "--trust", data_dir / "trust"))

    # seeding again keeps the PKI and registers nothing new
    before = root.read_bytes()
    ok(esb("demo", "seed", "--credentials-out", credentials))
    assert root.read_bytes() == before
    assert _certificates(esb) == listed


def test_demo_seed_replaces_only_a_hub_key_the_hub_made_itself(
    esb: Run, data_dir: Path, tmp_path: Path
) -> None:
    ok(esb("agency", "list"))  # opening the runtime makes a self-signed hub key in the data dir
    made = load_certificates((data_dir / "hub" / "cert.pem").read_bytes())[0]
    assert made.issuer == made.subject
    ok(esb("demo", "seed", "--credentials-out", tmp_path / "credentials.json"))
    hub = load_certificates((data_dir / "hub" / "cert.pem").read_bytes())[0]
    assert hub.issuer.rfc4514_string().startswith("CN=LGSP Demo Issuing CA")
    assert (data_dir / "trust" / "anchors" / "demo-root-ca.pem").is_file()


def test_demo_seed_keeps_a_hub_key_issued_by_a_ca(
    esb: Run, data_dir: Path, demo_pki: DemoPki, tmp_path: Path
) -> None:
    (data_dir / "hub").mkdir(parents=True)
    key, cert = data_dir / "hub" / "key.pem", data_dir / "hub" / "cert.pem"
    key.write_bytes(demo_pki.hub_key.read_bytes())
    key.chmod(0o600)
    cert.write_bytes(demo_pki.hub_certificate.read_bytes())
    result = ok(esb("demo", "seed", "--credentials-out", tmp_path / "credentials.json"))
    assert "No demo PKI was written" in result.stdout
    assert cert.read_bytes() == demo_pki.hub_certificate.read_bytes()
    assert key.read_bytes() == demo_pki.hub_key.read_bytes()
    assert not (data_dir / "trust").exists()
    assert _certificates(esb) == []


def test_verify_an_evidence_bundle_of_a_signed_document(
    esb: Run, run: Run, data_dir: Path, database_url: str, master_key: str, unsigned: Path, tmp_path: Path
) -> None:
    """The whole path: demo seed, a package signed by A sent to B, its bundle exported and verified."""
    from esb.domain.access import Caller
    from esb.pipeline.audit import export_evidence
    from esb.settings import Settings
    from esb.storage import registry
    from esb.wiring import build_runtime

    ok(esb("demo", "seed", "--credentials-out", tmp_path / "credentials.json"))
    package = tmp_path / "signed.edxml"
    keys = data_dir / "agencies" / A
    ok(run("sign", unsigned, "--key", keys / "key.pem", "--cert", keys / "cert.pem", "-o", package))

    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url, master_key=master_key))
    try:
        with runtime.database.transaction() as session:
            application = registry.get_application(session, A, "QLVB")
            caller = Caller(A, application.id, application.name, "AK-test")
        accepted = runtime.exchange.send_document(caller, package=package.read_bytes())
        assert runtime.exchange.receipts is not None
        bundle = tmp_path / "evidence.zip"
        export_evidence(
            runtime.database, runtime.exchange.receipts, accepted.hub_document_id, bundle, exported_by="test"
        )
    finally:
        runtime.database.dispose()

    trust = ("--trust", data_dir / "trust")
    result = ok(run("verify", bundle, *trust, "--package", package))
    assert "every check passed" in result.stdout
    assert accepted.hub_document_id in result.stdout
    checked = report_of(ok(run("verify", bundle, *trust, "--json")))
    assert checked["ok"] is True
    assert checked["hub_document_id"] == accepted.hub_document_id
    assert checked["checks"]
    # the receipt inside the bundle is a file esb verify recognises on its own
    with zipfile.ZipFile(bundle) as archive:
        name = next(n for n in archive.namelist() if n.startswith("receipts/"))
        receipt = tmp_path / "receipt.xml"
        receipt.write_bytes(archive.read(name))
    facts = report_of(ok(run("verify", receipt, *trust, "--json")))
    assert facts["receipt"]["hub_document_id"] == accepted.hub_document_id
    assert facts["receipt"]["signature_verdict"] == "valid"
    # another package than the one the receipts name: a check fails
    other = report_of(refused(run("verify", bundle, *trust, "--package", unsigned, "--json")))
    assert other["ok"] is False
