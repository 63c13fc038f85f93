"""Authenticate with a demo credential and call an authenticated operation, with zeep.

    ./scripts/demo                       # terminal 1: seeds the demo and serves on :8080
    .venv/bin/python docs/examples/zeep_authenticate.py [demo-credentials.json] [http://127.0.0.1:8080]

Any SOAP client does the same: sign ``accessKey\\ntimestamp\\nnonce\\nalgorithm\\ntarget`` with
the secret key (HMAC-SHA256, base64), call Authenticate, then send the session key in the
``AuthHeader`` SOAP header.  See docs/authentication.md.
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

import zeep


def string_to_sign(access_key: str, timestamp: str, nonce: str, algorithm: str, target: str = "") -> bytes:
    return "\n".join((access_key, timestamp, nonce, algorithm, target)).encode("utf-8")


def main() -> None:
    credentials_file = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-credentials.json")
    base_url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
    credential = json.loads(credentials_file.read_text(encoding="utf-8"))[0]

    settings = zeep.Settings(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    client = zeep.Client(f"{base_url}/soap/Auth?wsdl", settings=settings)
    print("hub time:", client.service.GetServerTime())

    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    nonce = secrets.token_hex(12)
    message = string_to_sign(credential["accessKey"], timestamp, nonce, "HMAC-SHA256")
    signature = base64.b64encode(hmac.new(credential["secretKey"].encode(), message, hashlib.sha256).digest())
    ticket = client.service.Authenticate(
        accessKey=credential["accessKey"],
        timestamp=timestamp,
        nonce=nonce,
        algorithm="HMAC-SHA256",
        signature=signature.decode(),
    )
    print(f"session for {ticket.agency} ({credential['name']}), valid until {ticket.expiresAt}")

    me = client.service.WhoAmI(_soapheaders={"AuthHeader": {"sessionToken": ticket.sessionToken}})
    print(f"the hub sees: agency {me.agency}, application {me.application}, key {me.accessKey}")


if __name__ == "__main__":
    main()
