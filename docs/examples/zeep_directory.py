"""Look agencies up in the directory and keep a local copy in sync, with zeep.

    ./scripts/demo                       # terminal 1: seeds the demo and serves on :8080
    .venv/bin/python docs/examples/zeep_directory.py [demo-credentials.json] [http://127.0.0.1:8080]

Signs in with the first demo credential (as docs/examples/zeep_authenticate.py does), finds
agencies by name (with and without diacritics, with abbreviations) and by code, reads one
with its children, then copies the whole directory page by page with GetAgencyChanges and
shows how to ask only for what changed since.  See docs/directory.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zeep

SETTINGS = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)


def session_token(base_url: str, credential: dict[str, str]) -> str:
    auth = zeep.Client(f"{base_url}/soap/Auth?wsdl", settings=SETTINGS)
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    nonce = secrets.token_hex(12)
    message = "\n".join((credential["accessKey"], timestamp, nonce, "HMAC-SHA256", "")).encode()
    signature = base64.b64encode(hmac.new(credential["secretKey"].encode(), message, hashlib.sha256).digest())
    ticket = auth.service.Authenticate(
        accessKey=credential["accessKey"],
        timestamp=timestamp,
        nonce=nonce,
        algorithm="HMAC-SHA256",
        signature=signature.decode(),
    )
    return str(ticket.sessionToken)


def sync(directory: Any, local: dict[str, Any], since: int) -> int:
    """Apply every change after ``since`` to ``local`` (code → agency); the version reached."""
    while True:
        page = directory.service.GetAgencyChanges(sinceVersion=since, limit=500)
        for agency in page.agency:
            local[agency.code] = agency  # a locked agency comes back with state "locked"
        since = page.version
        if not page.more:
            return since


def main() -> None:
    credentials_file = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-credentials.json")
    base_url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
    credential = json.loads(credentials_file.read_text(encoding="utf-8"))[0]

    directory = zeep.Client(f"{base_url}/soap/Directory?wsdl", settings=SETTINGS)
    directory.set_default_soapheaders({"AuthHeader": {"sessionToken": session_token(base_url, credential)}})

    for query in ("UBND tỉnh Hậu Giang", "ubnd tinh hau giang", "van phong ubnd tay ninh", "000.00.32.H53"):
        found = directory.service.FindAgencies(query=query, limit=3)
        shown = "; ".join(f"{a.code} {a.name} [{a.match}, {a.presence}]" for a in found)
        print(f"{query!r}: {shown}")

    province = directory.service.GetAgency(code="000.00.00.H53")
    children = ", ".join(child.code for child in province.child)
    print(f"{province.code} {province.name}: {len(province.child)} direct children ({children})")

    local: dict[str, Any] = {}
    version = sync(directory, local, 0)
    print(f"local copy: {len(local)} agencies at version {version}")
    version = sync(directory, local, version)  # later, and every few minutes: only what changed
    print(f"up to date at version {version}")


if __name__ == "__main__":
    main()
