"""Tests for ``esb agency | app | keys | db`` and ``esb demo seed`` through CliRunner, on both engines.

Every test that touches the database takes ``database_url`` (tests/conftest.py), so it runs
on SQLite and on PostgreSQL; the commands get ``--database-url`` and ``--data-dir`` as an
operator would pass them, and the master key through ``ESB_MASTER_KEY``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, text

from esb.cli.registry_commands import DurationType
from esb.security.pki import (
    IssuedCertificate,
    issue_signing_certificate,
    make_intermediate_ca,
    make_root_ca,
)

Esb = Callable[..., Result]

TAY_NINH = "000.00.00.H53"
TAY_NINH_OFFICE = "000.00.01.H53"
SECRET_LINE = re.compile(r"^secret key: (\S+)$", re.MULTILINE)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def esb(cli: click.Group, database_url: str, data_dir: Path) -> Esb:
    """``esb(*args)``: one command on this test's database, with a random master key."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    runner = CliRunner(env={"ESB_MASTER_KEY": master_key, "COLUMNS": "250", "NO_COLOR": "1"})

    def invoke(*args: str | Path) -> Result:
        command = [str(a) for a in args] + ["--database-url", database_url, "--data-dir", str(data_dir)]
        return runner.invoke(cli, command, catch_exceptions=False)

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, code: str) -> Result:
    assert result.exit_code == 1, result.output
    assert f"error: {code}: " in result.stderr
    return result


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def agencies(esb: Esb, *options: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = as_json(esb("agency", "list", "--json", *options))
    return data


def issue_secret(esb: Esb, agency: str = TAY_NINH, application: str = "QLVB") -> tuple[str, str, Result]:
    """(access key, secret key, result) of ``esb keys issue``."""
    result = ok(esb("keys", "issue", agency, application))
    match = SECRET_LINE.search(result.stdout)
    assert match is not None, result.output
    access = re.search(r"access key\s+│?\s*(AK[A-Z2-7]{20})", result.stdout)
    assert access is not None, result.output
    return access.group(1), match.group(1), result


@pytest.fixture
def registered(esb: Esb) -> Esb:
    """Tây Ninh's People's Committee with a QLVB application."""
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh", "--email", "ubnd@tayninh.gov.vn"))
    ok(esb("app", "register", TAY_NINH, "QLVB", "--developer", "VNPT"))
    return esb


Identity = tuple[x509.Certificate, rsa.RSAPrivateKey]


@pytest.fixture(scope="module")
def certificate(self_signed: Any) -> Identity:
    return self_signed()


# esb agency -----------------------------------------------------------------------------------


def test_agency_add_list_lock_unlock(esb: Esb) -> None:
    result = ok(
        esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh", "--qd20-code", "H53", "--address", "Tây Ninh")
    )
    assert TAY_NINH in result.stdout
    ok(esb("agency", "add", TAY_NINH_OFFICE, "Văn phòng UBND tỉnh Tây Ninh", "--email", "vp@tayninh.gov.vn"))

    listed = agencies(esb)
    assert [a["code"] for a in listed] == [TAY_NINH, TAY_NINH_OFFICE]
    first, second = listed
    assert (first["name"], first["qd20_code"], first["address"], first["state"]) == (
        "UBND tỉnh Tây Ninh",
        "H53",
        "Tây Ninh",
        "active",
    )
    assert first["account"] == f"{TAY_NINH}@lgsp.example.gov.vn"
    assert second["parent_code"] == TAY_NINH  # derived from the code
    assert second["email"] == "vp@tayninh.gov.vn"

    table = ok(esb("agency", "list")).stdout
    assert "Văn phòng UBND tỉnh Tây Ninh" in table
    assert "2 registered" in table

    assert "locked" in ok(esb("agency", "lock", TAY_NINH_OFFICE)).stdout
    assert [a["code"] for a in agencies(esb, "--state", "locked")] == [TAY_NINH_OFFICE]
    assert [a["code"] for a in agencies(esb, "--state", "active")] == [TAY_NINH]
    ok(esb("agency", "unlock", TAY_NINH_OFFICE))
    assert agencies(esb, "--state", "locked") == []

    assert [a["code"] for a in agencies(esb, "--limit", "1")] == [TAY_NINH]
    assert [a["code"] for a in agencies(esb, "--limit", "1", "--offset", "1")] == [TAY_NINH_OFFICE]
    assert [a["code"] for a in agencies(esb, "--prefix", "000.00.01")] == [TAY_NINH_OFFICE]
    assert [a["code"] for a in agencies(esb, "--prefix", "Văn phòng")] == [TAY_NINH_OFFICE]


def test_agency_add_twice_is_refused(esb: Esb) -> None:
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    result = refused(esb("agency", "add", TAY_NINH, "Another name"), "Client.AlreadyRegistered")
    assert TAY_NINH in result.stderr
    assert [a["name"] for a in agencies(esb)] == ["UBND tỉnh Tây Ninh"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("not-a-code", "Tên"), "Client.InvalidIdentifier"),
        (("000.05.00.H53", "A gap in the hierarchy"), "Client.InvalidIdentifier"),
        ((TAY_NINH, "   "), "Client.InvalidIdentifier"),
        ((TAY_NINH, "UBND", "--email", "not-an-address"), "Client.InvalidIdentifier"),
    ],
)
def test_agency_add_invalid(esb: Esb, args: tuple[str, ...], code: str) -> None:
    refused(esb("agency", "add", *args), code)
    assert agencies(esb) == []


def test_agency_lock_unknown(esb: Esb) -> None:
    refused(esb("agency", "lock", TAY_NINH), "Client.NotRegistered")


# esb agency certificate | policy ----------------------------------------------------------------


@dataclass(frozen=True)
class SigningFiles:
    """Certificate files made once per module with esb.security.pki (the keys stay in memory)."""

    chain: Path  # leaf then issuing CA, PEM
    other_der: Path  # a second leaf, DER
    ca: Path  # the issuing CA itself
    expired: Path
    encipherment: Path  # keyEncipherment only: may not sign documents
    garbage: Path
    chain_sha256: str
    other_sha256: str


def _sha256(certificate: IssuedCertificate) -> str:
    return hashlib.sha256(certificate.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.fixture(scope="module")
def signing_files(tmp_path_factory: pytest.TempPathFactory) -> SigningFiles:
    folder = tmp_path_factory.mktemp("signing-certificates")
    now = datetime.now(UTC) - timedelta(hours=1)
    root = make_root_ca("Test Root CA", now=now)
    issuing = make_intermediate_ca(root, "Test Issuing CA", now=now)
    leaf = issue_signing_certificate(issuing, "UBND tỉnh Tây Ninh", now=now, agency_code=TAY_NINH)
    other = issue_signing_certificate(issuing, "UBND tỉnh Tây Ninh (2)", now=now, agency_code=TAY_NINH)
    expired = issue_signing_certificate(
        issuing, "old", now=now, not_before=now - timedelta(days=400), not_after=now - timedelta(days=1)
    )
    encipherment = issue_signing_certificate(issuing, "enc", now=now, key_usage="encipherment-only")
    files = SigningFiles(
        chain=folder / "chain.pem",
        other_der=folder / "other.der",
        ca=folder / "ca.pem",
        expired=folder / "expired.pem",
        encipherment=folder / "encipherment.pem",
        garbage=folder / "garbage.pem",
        chain_sha256=_sha256(leaf),
        other_sha256=_sha256(other),
    )
    files.chain.write_bytes(leaf.certificate_pem() + issuing.certificate_pem())
    files.other_der.write_bytes(other.certificate.public_bytes(serialization.Encoding.DER))
    files.ca.write_bytes(issuing.certificate_pem())
    files.expired.write_bytes(expired.certificate_pem())
    files.encipherment.write_bytes(encipherment.certificate_pem())
    files.garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return files


def certificates(esb: Esb, *args: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = as_json(esb("agency", "certificate", "list", *args, "--json"))
    return data


def test_agency_certificate_add_list_remove(esb: Esb, signing_files: SigningFiles) -> None:
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    ok(esb("agency", "add", TAY_NINH_OFFICE, "Văn phòng UBND tỉnh Tây Ninh"))
    added = ok(esb("agency", "certificate", "add", TAY_NINH, signing_files.chain))
    assert signing_files.chain_sha256 in added.stdout
    assert "active" in added.stdout
    refused(esb("agency", "certificate", "add", TAY_NINH, signing_files.chain), "Client.AlreadyRegistered")
    ok(esb("agency", "certificate", "add", TAY_NINH, signing_files.other_der))  # DER is fine too

    listed = certificates(esb, TAY_NINH)
    assert [(c["agency"], c["sha256"], c["state"]) for c in listed] == [
        (TAY_NINH, signing_files.chain_sha256, "active"),
        (TAY_NINH, signing_files.other_sha256, "active"),
    ]
    first = listed[0]
    assert first["subject"] == f"UID={TAY_NINH},CN=UBND tỉnh Tây Ninh,C=VN"
    assert first["issuer"].startswith("CN=Test Issuing CA")
    assert datetime.fromisoformat(first["not_after"]) > datetime.now(UTC)
    assert first["added_at"] is not None
    assert first["removed_at"] is None
    assert certificates(esb, TAY_NINH_OFFICE) == []
    assert len(certificates(esb)) == 2  # every agency
    table = ok(esb("agency", "certificate", "list")).stdout
    assert signing_files.other_sha256 in table
    assert "2 certificate(s), 2 active" in table

    # removed by a prefix of its fingerprint; the removal is kept in the list
    removed = ok(esb("agency", "certificate", "remove", TAY_NINH, signing_files.chain_sha256[:12].upper()))
    assert "removed" in removed.stdout
    after = {c["sha256"]: c for c in certificates(esb, TAY_NINH)}
    assert after[signing_files.chain_sha256]["state"] == "removed"
    assert after[signing_files.chain_sha256]["removed_at"] is not None
    assert after[signing_files.other_sha256]["state"] == "active"
    refused(
        esb("agency", "certificate", "remove", TAY_NINH, signing_files.chain_sha256), "Client.NotRegistered"
    )
    refused(esb("agency", "certificate", "remove", TAY_NINH, "abc"), "Client.InvalidRequest")
    refused(
        esb("agency", "certificate", "remove", TAY_NINH_OFFICE, signing_files.other_sha256),
        "Client.NotRegistered",
    )
    # registering a removed certificate again makes it active again
    ok(esb("agency", "certificate", "add", TAY_NINH, signing_files.chain))
    assert {c["state"] for c in certificates(esb, TAY_NINH)} == {"active"}


def test_agency_certificate_add_refusals(esb: Esb, signing_files: SigningFiles) -> None:
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    garbage = refused(
        esb("agency", "certificate", "add", TAY_NINH, signing_files.garbage), "Client.BadCertificate"
    )
    assert "not a readable X.509 certificate" in garbage.stderr
    ca = refused(esb("agency", "certificate", "add", TAY_NINH, signing_files.ca), "Client.BadCertificate")
    assert "is a CA certificate" in ca.stderr
    expired = refused(
        esb("agency", "certificate", "add", TAY_NINH, signing_files.expired), "Client.BadCertificate"
    )
    assert "expired" in expired.stderr
    usage = refused(
        esb("agency", "certificate", "add", TAY_NINH, signing_files.encipherment), "Client.BadCertificate"
    )
    assert "may not sign documents" in usage.stderr
    refused(esb("agency", "certificate", "add", TAY_NINH_OFFICE, signing_files.chain), "Client.NotRegistered")
    refused(esb("agency", "certificate", "list", TAY_NINH_OFFICE), "Client.NotRegistered")
    assert certificates(esb) == []
    missing = esb("agency", "certificate", "add", TAY_NINH, signing_files.chain.with_name("missing.pem"))
    assert missing.exit_code == 2, missing.output


def test_agency_policy_set_and_clear(esb: Esb) -> None:
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    ok(esb("agency", "add", TAY_NINH_OFFICE, "Văn phòng UBND tỉnh Tây Ninh"))
    assert [a["signature_policy"] for a in agencies(esb)] == [None, None]
    assert "(default)" in ok(esb("agency", "list")).stdout

    result = ok(esb("agency", "policy", TAY_NINH, "require"))
    assert "require" in result.stdout
    assert [a["signature_policy"] for a in agencies(esb)] == ["require", None]
    table = ok(esb("agency", "list")).stdout
    assert re.search(rf"{re.escape(TAY_NINH)}.*│\s*require\s*│", table), table
    ok(esb("agency", "policy", TAY_NINH_OFFICE, "off"))
    assert [a["signature_policy"] for a in agencies(esb)] == ["require", "off"]

    cleared = ok(esb("agency", "policy", TAY_NINH, "default"))
    assert "follows the hub's default policy (record)" in cleared.stdout
    assert [a["signature_policy"] for a in agencies(esb)] == [None, "off"]

    assert esb("agency", "policy", TAY_NINH, "sometimes").exit_code == 2
    refused(esb("agency", "policy", "000.00.99.H53", "record"), "Client.NotRegistered")


# esb agency import ----------------------------------------------------------------------------

VIETNAMESE_CSV = (
    "Mã định danh,Tên cơ quan,Mã QĐ 20,Địa chỉ,Email,Trạng thái\n"
    '000.00.00.H53,Ủy ban nhân dân tỉnh Tây Ninh,,"Số 83, Phạm Tung, TP. Tây Ninh",ubnd@tayninh.gov.vn,\n'
    "000.00.01.H53,Văn phòng Đoàn ĐBQH và HĐND tỉnh,,Tây Ninh,,locked\n"
    "000.00.32.H53,UBND huyện Châu Thành,,,,\n"
    ",,,,,\n"  # a blank spreadsheet row: skipped
)


def test_import_csv_with_vietnamese_headers(esb: Esb, tmp_path: Path) -> None:
    file = tmp_path / "danh-muc.csv"
    file.write_bytes(b"\xef\xbb\xbf" + VIETNAMESE_CSV.encode("utf-8"))  # Excel writes a BOM
    result = ok(esb("agency", "import", file))
    assert re.search(r"│\s+3\s+│\s+3\s+│\s+0\s+│", result.stdout), result.stdout  # rows, new, updated

    listed = {a["code"]: a for a in agencies(esb)}
    assert set(listed) == {"000.00.00.H53", "000.00.01.H53", "000.00.32.H53"}
    assert listed["000.00.00.H53"]["name"] == "Ủy ban nhân dân tỉnh Tây Ninh"
    assert listed["000.00.00.H53"]["address"] == "Số 83, Phạm Tung, TP. Tây Ninh"
    assert listed["000.00.00.H53"]["email"] == "ubnd@tayninh.gov.vn"
    assert listed["000.00.01.H53"]["name"] == "Văn phòng Đoàn ĐBQH và HĐND tỉnh"
    assert listed["000.00.01.H53"]["state"] == "locked"
    assert listed["000.00.32.H53"]["parent_code"] == "000.00.00.H53"


def test_import_csv_semicolons_and_ascii_headers(esb: Esb, tmp_path: Path) -> None:
    file = tmp_path / "list.txt"
    file.write_text("ma_dinh_danh;ten;qd20\nH53.01;Văn phòng UBND tỉnh;H53.01\n", encoding="utf-8")
    ok(esb("agency", "import", file, "--format", "csv"))
    assert [(a["code"], a["qd20_code"]) for a in agencies(esb)] == [("H53.01", "H53.01")]


@pytest.mark.parametrize("wrapped", [False, True], ids=["list", "object"])
def test_import_json(esb: Esb, tmp_path: Path, wrapped: bool) -> None:
    items = [
        {"code": "000.00.00.H30", "name": "UBND tỉnh Hậu Giang", "email": "ubnd@haugiang.gov.vn"},
        {"organId": "000.00.01.H30", "organName": "Văn phòng UBND tỉnh Hậu Giang", "unknown": 1},
    ]
    file = tmp_path / "agencies.json"
    file.write_text(
        json.dumps({"agencies": items} if wrapped else items, ensure_ascii=False), encoding="utf-8"
    )
    ok(esb("agency", "import", file))
    assert [(a["code"], a["name"]) for a in agencies(esb)] == [
        ("000.00.00.H30", "UBND tỉnh Hậu Giang"),
        ("000.00.01.H30", "Văn phòng UBND tỉnh Hậu Giang"),
    ]


def test_import_with_bad_rows_imports_nothing(esb: Esb, tmp_path: Path) -> None:
    file = tmp_path / "bad.csv"
    file.write_text(
        "code,name,email\n"
        "000.00.00.H53,UBND tỉnh Tây Ninh,\n"
        "000.00.XX.H53,Sai mã,\n"  # line 3
        "000.00.01.H53,Văn phòng,not-an-email\n"  # line 4
        "000.00.02.H53,,\n"  # line 5: no name
        "000.00.00.H53,Trùng mã,\n",  # line 6: the code of line 2 again
        encoding="utf-8",
    )
    result = refused(esb("agency", "import", file), "Client.ImportInvalid")
    assert "nothing was imported" in result.stderr
    for line in ("line 3: ", "line 4: ", "line 5: ", "line 6: "):
        assert line in result.stderr
    assert "line 2: " not in result.stderr
    assert "first at line 2" in result.stderr
    assert agencies(esb) == []


def test_import_lists_at_most_20_problems(esb: Esb, tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps([{"code": f"bad {n}", "name": "x"} for n in range(25)]), encoding="utf-8")
    result = refused(esb("agency", "import", file), "Client.ImportInvalid")
    assert "item 20: " in result.stderr
    assert "item 21: " not in result.stderr
    assert "and 5 more" in result.stderr


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("latin1.csv", "code,name\n000.00.00.H53,UBND t\xecnh\n".encode("latin-1")),
        ("broken.json", b'[{"code": "000.00.00.H53",'),
        ("scalar.json", b'"000.00.00.H53"'),
        ("empty.csv", b""),
        ("header-only.csv", b"code,name\n"),
        ("not-objects.json", b'["000.00.00.H53"]'),
    ],
)
def test_import_unreadable_files(esb: Esb, tmp_path: Path, name: str, content: bytes) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    refused(esb("agency", "import", file), "Client.ImportInvalid")
    assert agencies(esb) == []


def test_reimport_updates(esb: Esb, tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_text("code,name\n000.00.00.H53,UBND Tây Ninh\n000.00.01.H53,Văn phòng\n", encoding="utf-8")
    ok(esb("agency", "import", file))
    file.write_text(
        "code,name\n000.00.00.H53,UBND tỉnh Tây Ninh\n000.00.01.H53,Văn phòng UBND\n"
        "000.00.02.H53,Sở Nội vụ\n",
        encoding="utf-8",
    )
    result = ok(esb("agency", "import", file))
    assert re.search(r"│\s+3\s+│\s+1\s+│\s+2\s+│", result.stdout), result.stdout
    assert [a["name"] for a in agencies(esb)] == ["UBND tỉnh Tây Ninh", "Văn phòng UBND", "Sở Nội vụ"]


# esb app --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["pem", "der"])
def test_app_register_with_certificate_and_rules(
    esb: Esb, tmp_path: Path, certificate: Identity, encoding: str
) -> None:
    cert, _ = certificate
    der = cert.public_bytes(serialization.Encoding.DER)
    file = tmp_path / f"qlvb.{encoding}"
    file.write_bytes(der if encoding == "der" else cert.public_bytes(serialization.Encoding.PEM))
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    result = esb(
        "app",
        "register",
        TAY_NINH,
        "QLVB",
        "--developer",
        "VNPT",
        "--endpoint",
        "https://qlvb.tayninh.gov.vn/lgsp",
        "--certificate",
        file,
        "--allow-destination",
        "000.00.00.H53/*",
        "--allow-destination",
        "000.00.00.G22",
        "--deny-destination",
        "000.00.05.H53",
        "--allow-service",
        "Auth",
    )
    assert "esb keys issue 000.00.00.H53 QLVB" in ok(result).stdout

    (registered,) = as_json(esb("app", "list", "--json"))
    assert registered["agency"] == TAY_NINH
    assert (registered["name"], registered["developer"]) == ("QLVB", "VNPT")
    assert registered["endpoint"] == "https://qlvb.tayninh.gov.vn/lgsp"
    assert registered["certificate_sha256"] == hashlib.sha256(der).hexdigest()
    assert registered["rules"] == [
        {"scope": "destination", "pattern": "000.00.00.H53/*", "effect": "allow"},
        {"scope": "destination", "pattern": "000.00.00.G22", "effect": "allow"},
        {"scope": "destination", "pattern": "000.00.05.H53", "effect": "deny"},
        {"scope": "service", "pattern": "Auth", "effect": "allow"},
    ]
    assert registered["usable_keys"] == 0

    # the same certificate cannot identify a second application
    refused(esb("app", "register", TAY_NINH, "Portal", "--certificate", file), "Client.AlreadyRegistered")
    refused(esb("app", "register", TAY_NINH, "QLVB"), "Client.AlreadyRegistered")


def test_app_register_refusals(esb: Esb, tmp_path: Path, self_signed: Any) -> None:
    weak, _ = self_signed(bits=1024)
    weak_file = tmp_path / "weak.pem"
    weak_file.write_bytes(weak.public_bytes(serialization.Encoding.PEM))
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    refused(esb("app", "register", TAY_NINH, "QLVB"), "Client.NotRegistered")
    ok(esb("agency", "add", TAY_NINH, "UBND tỉnh Tây Ninh"))
    refused(esb("app", "register", TAY_NINH, "QLVB", "--certificate", weak_file), "Client.InvalidPublicKey")
    refused(esb("app", "register", TAY_NINH, "QLVB", "--certificate", junk), "Client.InvalidPublicKey")
    refused(
        esb("app", "register", TAY_NINH, "QLVB", "--allow-destination", "nowhere"), "Client.InvalidIdentifier"
    )
    refused(esb("app", "register", TAY_NINH, "QLVB", "--allow-service", "Mail"), "Client.InvalidRequest")
    assert as_json(esb("app", "list", "--json")) == []


def test_app_allow(registered: Esb) -> None:
    esb = registered
    ok(esb("app", "allow", TAY_NINH, "QLVB", "--destination", "000.00.00.H30/*"))
    ok(esb("app", "allow", TAY_NINH, "QLVB", "--service", "Directory", "--deny"))
    ok(esb("app", "allow", TAY_NINH, "QLVB", "--service", "Directory", "--deny"))  # idempotent
    (application,) = as_json(esb("app", "list", "--agency", TAY_NINH, "--json"))
    assert application["rules"] == [
        {"scope": "destination", "pattern": "000.00.00.H30/*", "effect": "allow"},
        {"scope": "service", "pattern": "Directory", "effect": "deny"},
    ]
    assert "deny service Directory" in ok(esb("app", "list")).stdout
    assert as_json(esb("app", "list", "--agency", "000.00.00.H30", "--json")) == []

    both = esb("app", "allow", TAY_NINH, "QLVB", "--destination", "*", "--service", "Auth")
    assert both.exit_code == 2
    assert esb("app", "allow", TAY_NINH, "QLVB").exit_code == 2
    refused(esb("app", "allow", TAY_NINH, "Other", "--service", "Auth"), "Client.NotRegistered")


# esb keys -------------------------------------------------------------------------------------


def test_keys_issue_shows_the_secret_once(registered: Esb, database_url: str, tmp_path: Path) -> None:
    esb = registered
    access_key, secret, result = issue_secret(esb)
    assert result.output.count(secret) == 1
    assert "shown only this once" in result.stderr
    assert len(secret) >= 43

    listing = ok(esb("keys", "list")).output + ok(esb("keys", "list", "--json")).output
    listing += ok(esb("app", "list", "--json")).output + ok(esb("agency", "list", "--json")).output
    assert access_key in listing
    assert secret not in listing
    (key,) = as_json(esb("keys", "list", "--json"))
    assert (key["access_key"], key["agency"], key["application"]) == (access_key, TAY_NINH, "QLVB")
    assert (key["kind"], key["state"], key["valid_until"], key["revoked_at"]) == (
        "secret",
        "active",
        None,
        None,
    )
    assert "secret" not in "".join(k for k in key if k != "kind")

    # only sealed at rest: neither in the column nor anywhere in the SQLite files
    engine = create_engine(database_url)
    with engine.connect() as connection:
        sealed = connection.execute(
            text("SELECT secret_ciphertext FROM access_key WHERE access_key = :k"), {"k": access_key}
        ).scalar_one()
    engine.dispose()
    assert sealed
    assert secret.encode() not in bytes(sealed)
    assert secret not in bytes(sealed).decode("latin-1")
    if database_url.startswith("sqlite"):
        files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("esb.sqlite3")]
        assert files
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_keys_issue_json(registered: Esb) -> None:
    result = ok(registered("keys", "issue", TAY_NINH, "QLVB", "--json"))
    credential = json.loads(result.stdout)
    assert set(credential) == {"agency", "application", "accessKey", "secretKey", "algorithm"}
    assert (credential["agency"], credential["application"], credential["algorithm"]) == (
        TAY_NINH,
        "QLVB",
        "HMAC-SHA256",
    )
    assert result.output.count(credential["secretKey"]) == 1
    assert "shown only this once" in result.stderr


def test_keys_rsa(registered: Esb, tmp_path: Path, certificate: Identity) -> None:
    esb = registered
    _, private = certificate
    public = tmp_path / "public.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = ok(esb("keys", "issue", TAY_NINH, "QLVB", "--public-key", public))
    assert "secret key:" not in result.stdout
    assert "shown only this once" not in result.stderr
    (key,) = as_json(esb("keys", "list", "--json"))
    assert key["kind"] == "rsa"
    refused(esb("keys", "rotate", key["access_key"]), "Client.InvalidRequest")  # needs the new public key
    ok(esb("keys", "rotate", key["access_key"], "--public-key", public))
    assert sorted(k["state"] for k in as_json(esb("keys", "list", "--json"))) == ["active", "rotating"]

    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    refused(esb("keys", "issue", TAY_NINH, "QLVB", "--public-key", bad), "Client.InvalidPublicKey")


def test_keys_rotate_and_revoke(registered: Esb) -> None:
    esb = registered
    old, old_secret, _ = issue_secret(esb)
    before = datetime.now(UTC)
    result = ok(esb("keys", "rotate", old, "--overlap", "24h"))
    after = datetime.now(UTC)
    new_secret = SECRET_LINE.search(result.stdout)
    assert new_secret is not None
    assert new_secret.group(1) != old_secret
    assert "shown only this once" in result.stderr
    assert "(1d)" in result.stdout

    listed = {k["access_key"]: k for k in as_json(esb("keys", "list", "--agency", TAY_NINH, "--json"))}
    assert len(listed) == 2
    new = next(k for k in listed if k != old)
    assert listed[old]["state"] == "rotating"
    assert listed[old]["replaced_by"] == new
    valid_until = datetime.fromisoformat(listed[old]["valid_until"])
    assert before + timedelta(hours=24) - timedelta(seconds=1) <= valid_until <= after + timedelta(hours=24)
    assert listed[new]["state"] == "active"
    table = ok(esb("keys", "list")).stdout
    assert "rotating" in table
    assert "1 active, 1 rotating" in table
    assert old_secret not in table
    assert new_secret.group(1) not in table

    refused(esb("keys", "rotate", old), "Client.KeyRevoked")  # already rotated
    assert "revoked" in ok(esb("keys", "revoke", old)).stdout
    listed = {k["access_key"]: k for k in as_json(esb("keys", "list", "--json"))}
    assert (listed[old]["state"], listed[new]["state"]) == ("revoked", "active")
    assert listed[old]["revoked_at"] is not None
    refused(esb("keys", "revoke", "AKNOSUCHKEY"), "Client.NotRegistered")
    assert as_json(esb("keys", "list", "--agency", "000.00.00.H30", "--json")) == []


def test_keys_rotate_with_no_overlap_expires_the_old_key(registered: Esb) -> None:
    old, _, _ = issue_secret(registered)
    ok(registered("keys", "rotate", old, "--overlap", "0s"))
    states = {k["access_key"]: k["state"] for k in as_json(registered("keys", "list", "--json"))}
    assert states.pop(old) == "expired"
    assert list(states.values()) == ["active"]


def test_keys_rotate_bad_overlap(registered: Esb) -> None:
    old, _, _ = issue_secret(registered)
    result = registered("keys", "rotate", old, "--overlap", "7x")
    assert result.exit_code == 2
    assert "duration" in result.stderr
    assert [k["state"] for k in as_json(registered("keys", "list", "--json"))] == ["active"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(hours=24)),
        ("3600s", timedelta(seconds=3600)),
        ("90m", timedelta(minutes=90)),
        ("1w", timedelta(days=7)),
        ("1d12h", timedelta(hours=36)),
        ("600", timedelta(minutes=10)),
        (" 2D ", timedelta(days=2)),
        ("0s", timedelta(0)),
    ],
)
def test_duration(text: str, expected: timedelta) -> None:
    assert DurationType().convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["", "7x", "d7", "-1d", "1.5h", "400d", "7 days"])
def test_duration_refused(text: str) -> None:
    with pytest.raises(click.BadParameter):
        DurationType().convert(text, None, None)


# esb demo seed --------------------------------------------------------------------------------


def test_demo_seed(esb: Esb, tmp_path: Path) -> None:
    out = tmp_path / "creds" / "demo-credentials.json"
    result = ok(esb("demo", "seed", "--credentials-out", out))
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data) == 8
    for entry in data:
        assert {"agency", "name", "application", "accessKey", "secretKey"} <= set(entry)
        assert entry["application"] == "QLVB"
        assert entry["accessKey"] in result.stdout
        assert entry["secretKey"] not in result.output  # only in the file
    assert {e["agency"] for e in data} >= {"000.00.00.H53", "000.00.00.H30", "000.00.00.G22"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text(encoding="utf-8").startswith("[\n  {")  # pretty-printed
    assert "esb serve" in result.stdout

    keys = as_json(esb("keys", "list", "--json"))
    assert sorted(k["access_key"] for k in keys) == sorted(e["accessKey"] for e in data)

    before = out.read_bytes(), out.stat().st_mtime_ns
    again = ok(esb("demo", "seed", "--credentials-out", out))
    assert "already registered" in again.stdout
    assert "no new key" in again.stdout
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    assert len(as_json(esb("keys", "list", "--json"))) == 8


def test_demo_seed_keeps_other_credentials(esb: Esb, tmp_path: Path) -> None:
    """A partial seed (one demo agency already had a key) adds to the file, keeping what was there."""
    out = tmp_path / "demo-credentials.json"
    ok(esb("agency", "add", "000.00.00.G22", "Văn phòng Chính phủ"))
    ok(esb("app", "register", "000.00.00.G22", "QLVB"))
    access_key, secret, _ = issue_secret(esb, "000.00.00.G22")
    mine = {"agency": "000.00.00.G22", "application": "QLVB", "accessKey": access_key, "secretKey": secret}
    out.write_text(json.dumps([mine]), encoding="utf-8")
    out.chmod(0o644)  # the seed must tighten it
    ok(esb("demo", "seed", "--credentials-out", out))
    data = json.loads(out.read_text(encoding="utf-8"))
    assert len(data) == 8
    assert mine in data
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# esb db ---------------------------------------------------------------------------------------


def test_db_status_and_upgrade(esb: Esb) -> None:
    fresh = ok(esb("db", "status")).stdout
    assert "no schema yet" in fresh
    assert "esb db upgrade" in fresh
    upgraded = ok(esb("db", "upgrade")).stdout
    revision = re.search(r"current revision (\S+)", upgraded)
    assert revision is not None
    status = ok(esb("db", "status")).stdout
    assert "up to date" in status
    assert revision.group(1) in status
    ok(esb("db", "upgrade"))  # idempotent
