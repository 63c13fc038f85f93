"""Is a signer's certificate trusted?  Certificate chains against configured trust anchors, with CRLs.

A package's XML signature proves only that the holder of some key signed it; whether that key
belongs to someone we trust is decided here.  The trust store holds what the operator
configured: trust anchors (root CAs, or a self-signed certificate trusted as itself),
intermediate CAs, and CRLs.  :meth:`TrustStore.check` answers for one certificate at one
moment (usually the signing time, so that a signature made while the certificate was valid
stays verifiable after it expires) with a :class:`ChainCheck` whose ``reason`` is one of the
stable codes of :data:`esb.domain.signatures.REASONS`.

Path building and signature checks are ``cryptography``'s X.509 verifier (``x509.verification``)
with the web-PKI extension policies loosened for document signing: end-entity certificates
need neither a SAN nor a clientAuth/serverAuth ExtendedKeyUsage (Vietnamese document-signing
certificates have neither, or carry other EKUs), and a CA may carry any EKU.  By hand, and
before the verifier, we only compare validity dates and KeyUsage flags; after it, we consult
CRLs, whose signatures ``cryptography`` checks.  Nothing is ever fetched from the network: no
AIA, no CRL distribution points, no OCSP.

What does not depend on the moment is remembered, so that the answer is exactly the one a
fresh computation would give (tests/security/test_trust_store.py checks it at the boundaries):

* the verifier's outcome (the chain it built, or its refusal) for a leaf, the intermediates
  offered, and *where ``at`` falls* relative to the validity period of every certificate the
  verifier could use (leaf, intermediates, anchors): before, at the start, inside, at the end,
  after, both for ``at`` and for ``at`` truncated to the second.  The verifier's time enters
  only through those comparisons, so equal keys mean equal outcomes; a certificate expiring
  between two calls changes the key.  The leaf's own validity and every CRL lookup
  (revocation date against ``at``, nextUpdate) are re-done on every call;
* whether a CRL's signature verifies with an issuer's key, and what is read from one
  certificate alone (names, KeyUsage, self-signature), per certificate.

The caches are bounded (LRU) and thread-safe; a store is immutable, so they never go stale.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from esb.domain.signatures import REASONS
from esb.errors import ClientError, ConfigurationError
from esb.security.pki import load_certificates, load_crls

# Files read from a configured directory (sorted by name); other files are ignored.
TRUST_FILE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".crl")

# The web-PKI defaults, minus what document signing does not have: SAN and a TLS EKU.
_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
)

_ISSUER_KEY_TYPES = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    dsa.DSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


@dataclass(frozen=True)
class ChainCheck:
    """The answer of :meth:`TrustStore.check`.

    ``reason`` is ``"ok"`` or an untrusted reason code of :data:`REASONS`; ``message`` names
    the certificate concerned; ``chain`` lists RFC 4514 subjects from the leaf up to the
    anchor when a chain was built (just the leaf for a pinned certificate without one).
    """

    trusted: bool
    reason: str
    message: str
    chain: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason code {self.reason!r}")


_CACHE_ENTRIES = 512
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Lru(Generic[_K, _V]):
    """A bounded, thread-safe memo: ``get(key, compute)`` (compute may run twice in a race)."""

    def __init__(self, size: int = _CACHE_ENTRIES) -> None:
        self._size = size
        self._entries: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K, compute: Callable[[], _V]) -> _V:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


# A certificate hashes and compares by its DER, so these are caches per certificate.
@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "<empty subject>"


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _issuer(certificate: x509.Certificate) -> str:
    return certificate.issuer.rfc4514_string() or "<empty issuer>"


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _validity_period(certificate: x509.Certificate) -> tuple[datetime, datetime]:
    return certificate.not_valid_before_utc, certificate.not_valid_after_utc


def _where(moment: datetime, period: tuple[datetime, datetime]) -> int:
    """0 before the period, 1 at its start, 2 inside, 3 at its end, 4 after (for a cache key)."""
    start, end = period
    if moment < start:
        return 0
    if moment == start:
        return 1
    if moment < end:
        return 2
    return 3 if moment == end else 4


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _unique(certificates: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    seen: set[bytes] = set()
    result = []
    for certificate in certificates:
        der = _der(certificate)
        if der not in seen:
            seen.add(der)
            result.append(certificate)
    return tuple(result)


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Names chain and ``issuer``'s key verifies ``certificate``'s signature (cryptography does the math)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _validity(certificate: x509.Certificate, at: datetime, *, what: str) -> tuple[str, str] | None:
    """``(reason, message)`` when ``certificate`` is not valid at ``at``."""
    not_before, not_after = _validity_period(certificate)
    if at < not_before:
        return (
            "certificate-not-yet-valid",
            f"{what} {_subject(certificate)} is valid only from {_iso(not_before)} (checked at {_iso(at)})",
        )
    if at > not_after:
        return (
            "certificate-expired",
            f"{what} {_subject(certificate)} expired at {_iso(not_after)} (checked at {_iso(at)})",
        )
    return None


@functools.lru_cache(maxsize=_CACHE_ENTRIES)
def _key_usage_problem(certificate: x509.Certificate) -> str | None:
    """Why the leaf's KeyUsage forbids signing documents, or None (no KeyUsage allows everything)."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if usage.digital_signature or usage.content_commitment:
        return None
    flags = [
        name
        for name, present in (
            ("keyEncipherment", usage.key_encipherment),
            ("dataEncipherment", usage.data_encipherment),
            ("keyAgreement", usage.key_agreement),
            ("keyCertSign", usage.key_cert_sign),
            ("cRLSign", usage.crl_sign),
        )
        if present
    ]
    return (
        f"certificate {_subject(certificate)} has key usage {', '.join(flags) or '(none)'}: "
        "neither digitalSignature nor nonRepudiation, so it may not sign documents"
    )


def _read_files(path: Path) -> list[tuple[Path, bytes]]:
    try:
        if path.is_dir():
            files = sorted(
                child
                for child in path.iterdir()
                if child.is_file() and child.suffix.lower() in TRUST_FILE_SUFFIXES
            )
            return [(child, child.read_bytes()) for child in files]
        return [(path, path.read_bytes())]
    except OSError as error:
        raise ConfigurationError(f"cannot read trust store file {path}: {error.strerror or error}") from None


def _load_certificate_files(paths: Sequence[Path], kind: str) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        for file, data in _read_files(path):
            try:
                certificates.extend(load_certificates(data))
            except ClientError as error:
                raise ConfigurationError(f"{kind} file {file}: {error.message}") from None
    return certificates


def _load_crl_files(paths: Sequence[Path]) -> list[x509.CertificateRevocationList]:
    crls: list[x509.CertificateRevocationList] = []
    for path in paths:
        for file, data in _read_files(path):
            try:
                crls.extend(load_crls(data))
            except ClientError as error:
                raise ConfigurationError(f"CRL file {file}: {error.message}") from None
    return crls


class TrustStore:
    """Trust anchors, intermediate CAs and CRLs; immutable once made."""

    def __init__(
        self,
        *,
        anchors: Sequence[x509.Certificate] = (),
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> None:
        self._anchors = _unique(anchors)
        self._intermediates = _unique(intermediates)
        self._crls = tuple(crls)
        self._anchor_ders = frozenset(_der(anchor) for anchor in self._anchors)
        self._store = Store(list(self._anchors)) if self._anchors else None
        # (leaf DER, offered intermediates' DERs, where `at` falls for each) -> chain or refusal
        self._outcomes: _Lru[
            tuple[bytes, tuple[bytes, ...], tuple[int, ...]], tuple[x509.Certificate, ...] | str
        ] = _Lru()
        # (CRL index, issuer DER) -> does the CRL's signature verify with that issuer's key
        self._crl_signatures: _Lru[tuple[int, bytes], bool] = _Lru()
        # certificate DER -> (index, CRL) of the CRLs whose issuer name is the certificate's issuer
        self._crls_about: _Lru[bytes, tuple[tuple[int, x509.CertificateRevocationList], ...]] = _Lru()

    @classmethod
    def of(
        cls,
        anchors: Sequence[x509.Certificate] = (),
        intermediates: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> TrustStore:
        """A store of certificates and CRLs already in memory."""
        return cls(anchors=anchors, intermediates=intermediates, crls=crls)

    @classmethod
    def load(
        cls,
        *,
        anchors: Sequence[Path] = (),
        intermediates: Sequence[Path] = (),
        crls: Sequence[Path] = (),
    ) -> TrustStore:
        """A store read from files: each path a PEM (any number of blocks) or DER file, or a
        directory whose ``*.pem``/``*.crt``/``*.cer``/``*.der``/``*.crl`` files are read in name
        order.  A missing or unreadable file raises :class:`ConfigurationError` naming it."""
        return cls(
            anchors=_load_certificate_files(anchors, "trust anchor"),
            intermediates=_load_certificate_files(intermediates, "intermediate CA"),
            crls=_load_crl_files(crls),
        )

    @classmethod
    def from_directory(cls, path: Path) -> TrustStore:
        """``path/anchors``, ``path/intermediates`` and ``path/crls``.

        A missing subdirectory is empty, and so is a missing ``path`` (a hub that has not
        configured a trust store yet: every unpinned signer is then ``no-trust-anchors``);
        a ``path`` that is not a directory is a :class:`ConfigurationError`.
        """
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"trust store {path} is not a directory")

        def present(name: str) -> tuple[Path, ...]:
            return (path / name,) if (path / name).exists() else ()

        return cls.load(
            anchors=present("anchors"), intermediates=present("intermediates"), crls=present("crls")
        )

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        return self._anchors

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        return self._intermediates

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        return self._crls

    @property
    def is_empty(self) -> bool:
        """No trust anchors: nothing but pinned certificates can be trusted."""
        return not self._anchors

    def __repr__(self) -> str:
        return (
            f"TrustStore(anchors={len(self._anchors)}, intermediates={len(self._intermediates)}, "
            f"crls={len(self._crls)})"
        )

    # -- checking ------------------------------------------------------------------------------------

    def check(
        self,
        leaf: x509.Certificate,
        *,
        untrusted_intermediates: Sequence[x509.Certificate] = (),
        at: datetime,
        pinned: bool = False,
    ) -> ChainCheck:
        """Is ``leaf`` trusted to sign documents at ``at``?

        In order: the leaf's validity at ``at``; its KeyUsage (digitalSignature or
        nonRepudiation when present); if ``pinned`` (the caller matched it against an agency's
        registered certificate) it is trusted unless a CRL revokes it; otherwise it must chain
        to an anchor through the configured intermediates and ``untrusted_intermediates`` (the
        ones the package carried), every certificate valid at ``at``; finally no certificate
        of the chain below the anchor may be revoked at ``at`` by a CRL its issuer signed.
        """
        at = _utc(at)
        subject = _subject(leaf)
        problem = _validity(leaf, at, what="certificate")
        if problem is not None:
            return ChainCheck(False, problem[0], problem[1], ())
        usage_problem = _key_usage_problem(leaf)
        if usage_problem is not None:
            return ChainCheck(False, "key-usage", usage_problem, ())

        pool = _unique([*self._intermediates, *untrusted_intermediates])
        warnings: list[str] = []

        if pinned:
            verified = self._verified_chain(leaf, pool, at)
            if verified is None:
                links = [(leaf, self._issuers_of(leaf, pool))]
                shown: tuple[str, ...] = (subject,)
            else:
                links = self._links(verified)
                shown = tuple(_subject(certificate) for certificate in verified)
            revoked = self._revocation(links, at, warnings)
            if revoked is not None:
                return ChainCheck(False, "certificate-revoked", revoked, shown, _dedupe(warnings))
            return ChainCheck(True, "ok", f"{subject} is a registered certificate", shown, _dedupe(warnings))

        if self._store is None:
            return ChainCheck(
                False, "no-trust-anchors", f"no trust anchors are configured to check {subject} against", ()
            )

        if _der(leaf) in self._anchor_ders:
            # Trusted as itself (e.g. a hub's self-signed certificate): no path to build.
            chain: Sequence[x509.Certificate] = [leaf]
        else:
            outcome = self._verify(self._store, leaf, pool, at)
            if isinstance(outcome, str):
                return self._explain_failure(leaf, pool, at, outcome)
            chain = outcome
        links = self._links(chain)

        shown = tuple(_subject(certificate) for certificate in chain)
        revoked = self._revocation(links, at, warnings)
        if revoked is not None:
            return ChainCheck(False, "certificate-revoked", revoked, shown, _dedupe(warnings))
        return ChainCheck(
            True, "ok", f"{subject} chains to trust anchor {shown[-1]}", shown, _dedupe(warnings)
        )

    def _verified_chain(
        self, leaf: x509.Certificate, pool: Sequence[x509.Certificate], at: datetime
    ) -> Sequence[x509.Certificate] | None:
        if self._store is None:
            return None
        if _der(leaf) in self._anchor_ders:
            return [leaf]
        outcome = self._verify(self._store, leaf, pool, at)
        return None if isinstance(outcome, str) else outcome

    def _verify(
        self, store: Store, leaf: x509.Certificate, pool: Sequence[x509.Certificate], at: datetime
    ) -> tuple[x509.Certificate, ...] | str:
        """The verifier's chain, or its refusal's text; remembered per leaf, pool and validity
        position of ``at`` (module docstring: equal keys give equal outcomes)."""
        whole_second = at.replace(microsecond=0)
        positions = tuple(
            position
            for certificate in (leaf, *pool, *self._anchors)
            for period in (_validity_period(certificate),)
            for position in (_where(at, period), _where(whole_second, period))
        )
        key = (_der(leaf), tuple(_der(certificate) for certificate in pool), positions)

        def compute() -> tuple[x509.Certificate, ...] | str:
            try:
                return tuple(_verifier(store, at).verify(leaf, list(pool)).chain)
            except VerificationError as error:
                return str(error)

        return self._outcomes.get(key, compute)

    @staticmethod
    def _crl_name(certificate: x509.Certificate, crl: x509.CertificateRevocationList) -> str:
        return f"CRL of {_issuer(certificate)} (lastUpdate {_iso(crl.last_update_utc)})"

    def _crls_of_issuer(
        self, certificate: x509.Certificate
    ) -> tuple[tuple[int, x509.CertificateRevocationList], ...]:
        if not self._crls:
            return ()

        def compute() -> tuple[tuple[int, x509.CertificateRevocationList], ...]:
            issuer = certificate.issuer
            return tuple((index, crl) for index, crl in enumerate(self._crls) if crl.issuer == issuer)

        return self._crls_about.get(_der(certificate), compute)

    def _crl_signed_by(
        self, index: int, crl: x509.CertificateRevocationList, issuer: x509.Certificate
    ) -> bool:
        return self._crl_signatures.get((index, _der(issuer)), lambda: _crl_signature_valid(crl, issuer))

    def _issuers_of(
        self, certificate: x509.Certificate, pool: Sequence[x509.Certificate]
    ) -> list[x509.Certificate]:
        """Every known certificate (anchors, intermediates, itself) whose key signed ``certificate``."""
        candidates = _unique([*self._anchors, *pool, certificate])
        return [
            candidate
            for candidate in candidates
            if candidate.subject == certificate.issuer and _issued_by(certificate, candidate)
        ]

    @staticmethod
    def _links(
        chain: Sequence[x509.Certificate],
    ) -> list[tuple[x509.Certificate, list[x509.Certificate]]]:
        """Each certificate of a built chain but the anchor, with its issuer.

        A leaf that is itself the anchor is paired with itself when self-signed, so that a CRL
        it issued about itself still counts.
        """
        if len(chain) == 1:
            return [(chain[0], [chain[0]])] if _issued_by(chain[0], chain[0]) else []
        return [(chain[index], [chain[index + 1]]) for index in range(len(chain) - 1)]

    def _explain_failure(
        self, leaf: x509.Certificate, pool: Sequence[x509.Certificate], at: datetime, detail: str
    ) -> ChainCheck:
        """The verifier refused: name an expired or not-yet-valid CA on the way up if there is one.

        Follows issuers by name and signature (never trusting the result: it only picks the
        reason code); a CA all of whose candidates are outside their validity is the culprit.
        """
        certificate = leaf
        seen = {_der(leaf)}
        for _ in range(16):
            issuers = [issuer for issuer in self._issuers_of(certificate, pool) if _der(issuer) not in seen]
            if not issuers:
                break
            valid = [issuer for issuer in issuers if _validity(issuer, at, what="CA") is None]
            kind = "trust anchor" if _der(issuers[0]) in self._anchor_ders else "CA"
            problem = _validity(issuers[0], at, what=kind)
            if not valid and problem is not None:
                return ChainCheck(False, problem[0], f"{problem[1]}; it issued {_subject(certificate)}", ())
            certificate = valid[0]
            if _der(certificate) in self._anchor_ders:
                break
            seen.add(_der(certificate))
        return ChainCheck(
            False,
            "chain-untrusted",
            f"{_subject(leaf)} (issued by {_issuer(leaf)}) does not chain to a trust anchor: {detail}",
            (),
        )

    def _revocation(
        self,
        links: Sequence[tuple[x509.Certificate, Sequence[x509.Certificate]]],
        at: datetime,
        warnings: list[str],
    ) -> str | None:
        """The message for the first certificate a valid CRL revokes at ``at``, or None.

        ``links`` pairs each certificate with its possible issuers; a CRL counts when its
        issuer name is the certificate's issuer and one of those issuers' keys signed it.
        """
        for certificate, issuers in links:
            keys = [issuer for issuer in issuers if isinstance(issuer.public_key(), _ISSUER_KEY_TYPES)]
            for index, crl in self._crls_of_issuer(certificate):
                if not keys:
                    warnings.append(
                        f"{self._crl_name(certificate, crl)} ignored: the issuer's certificate is not known"
                    )
                    continue
                if not any(self._crl_signed_by(index, crl, issuer) for issuer in keys):
                    name = self._crl_name(certificate, crl)
                    warnings.append(f"{name} ignored: its signature does not verify with the issuer's key")
                    continue
                if crl.next_update_utc is not None and crl.next_update_utc < at:
                    name = self._crl_name(certificate, crl)
                    warnings.append(f"{name} is past its nextUpdate {_iso(crl.next_update_utc)}")
                entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
                if entry is None:
                    continue
                revoked_at = entry.revocation_date_utc
                if revoked_at <= at:
                    return (
                        f"certificate {_subject(certificate)} (serial {certificate.serial_number:x}) "
                        f"was revoked at {_iso(revoked_at)} by the {self._crl_name(certificate, crl)}"
                    )
                warnings.append(
                    f"certificate {_subject(certificate)} was revoked at {_iso(revoked_at)}, "
                    f"after the verification time {_iso(at)}"
                )
        return None


def _crl_signature_valid(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    public_key = issuer.public_key()
    return isinstance(public_key, _ISSUER_KEY_TYPES) and crl.is_signature_valid(public_key)


def _verifier(store: Store, at: datetime) -> ClientVerifier:
    return (
        PolicyBuilder()
        .store(store)
        .time(at)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )


def _dedupe(warnings: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(warnings))
