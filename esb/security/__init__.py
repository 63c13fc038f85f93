"""Cryptography: WS-Security verification, request signatures, secrets at rest."""
