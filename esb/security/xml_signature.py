"""Enveloped XML signatures over a whole document: making them, and verifying them with a reason.

Shared by edXML packages (:mod:`esb.security.package_signature`) and the hub's receipts
(:mod:`esb.security.hub_receipts`); both locate *their* Signature element and hand it here.

The form we sign (``sign_enveloped``)::

    <Signature xmlns="http://www.w3.org/2000/09/xmldsig#">      (last child of the parent)
      <SignedInfo>
        <CanonicalizationMethod Algorithm="…/2001/10/xml-exc-c14n#"/>
        <SignatureMethod Algorithm="…xmldsig-more#rsa-sha256"/>
        <Reference URI="">
          <Transforms><Transform Algorithm="…#enveloped-signature"/>
                      <Transform Algorithm="…/2001/10/xml-exc-c14n#"/></Transforms>
          <DigestMethod Algorithm="…xmlenc#sha256"/><DigestValue>…</DigestValue>
        </Reference>
      </SignedInfo>
      <SignatureValue>…</SignatureValue>
      <KeyInfo><X509Data><X509Certificate>leaf</X509Certificate>
                         <X509Certificate>issuing CA…</X509Certificate></X509Data></KeyInfo>
    </Signature>

The xmldsig namespace is the *default* namespace of the Signature element, without a prefix:
that is the form of the VPCP/VNPT fixtures (edxml-reference §6), and when a hub built on the
VNPT library re-serialises a package and drops the ``xmlns`` declaration, the Signature lands
in the QCVN namespace with SignedInfo's text otherwise unchanged, so
:func:`into_xmldsig_namespace` can put the declaration back and the SignatureValue still
verifies.  A ``ds:`` prefix would not survive that round trip.

Why only ``Reference URI=""`` with the enveloped-signature transform: it signs the whole
document we process (minus this Signature), so there is no question of *which* element was
signed, and no signature-wrapping attack can pass: a reference to ``#id``, to an external
resource, a second reference, or one without the enveloped transform is refused as
``reference-not-document`` before xmlsec runs.  Algorithms are allow-listed before xmlsec
sees the signature (so it never runs an XPath or XSLT transform, nor fetches anything), and
again inside xmlsec.  SHA-1 is legacy: reported as ``weak``, invalid unless allowed.

xmlsec's errors are opaque ("failed to verify").  When it refuses, the SignatureValue is
checked again with ``cryptography`` over SignedInfo canonicalised by lxml: if it holds,
SignedInfo is intact and signed by the key, so a reference digest broke (``digest-mismatch``,
the content was changed); otherwise ``signature-value-mismatch``.  (SignedInfo is
canonicalised as a copy that declares the namespaces in scope, with C14N 1.0 where 1.1 was
declared, lxml having no 1.1; the bytes would differ from xmlsec's only if an ancestor
carried ``xml:`` attributes.  Only the choice between the two reason codes can depend on
it, never the verdict.)

Trust is not decided here: the certificate in KeyInfo only supplies the key;
:class:`esb.security.trust_store.TrustStore` says whether that key's holder is trusted, or the
caller pins fingerprints.  Reason codes are those of :data:`esb.domain.signatures.REASONS`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Collection, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from esb.domain.signatures import REASONS, SignatureReport, SignerInfo, report
from esb.errors import ServerError
from esb.security.signing_key import SigningKey
from esb.security.trust_store import TrustStore
from esb.xml_processing.namespaces import DS

_C = xmlsec.constants

ENVELOPED: Final[str] = _C.TransformEnveloped.href
EXC_C14N: Final[str] = _C.TransformExclC14N.href  # also the namespace of InclusiveNamespaces
EXC_C14N_WITH_COMMENTS: Final[str] = _C.TransformExclC14NWithComments.href

_CANONICALIZATIONS: Final[dict[str, Any]] = {
    transform.href: transform
    for transform in (
        _C.TransformInclC14N,
        _C.TransformInclC14NWithComments,
        _C.TransformExclC14N,
        _C.TransformExclC14NWithComments,
        _C.TransformInclC14N11,
        _C.TransformInclC14N11WithComments,
    )
}


@dataclass(frozen=True)
class _SignatureAlgorithm:
    transform: Any  # xmlsec.Transform
    hash: hashes.HashAlgorithm
    key_type: Literal["rsa", "ecdsa"]
    weak: bool


_SIGNATURE_ALGORITHMS: Final[dict[str, _SignatureAlgorithm]] = {
    algorithm.transform.href: algorithm
    for algorithm in (
        _SignatureAlgorithm(_C.TransformRsaSha256, hashes.SHA256(), "rsa", False),
        _SignatureAlgorithm(_C.TransformRsaSha384, hashes.SHA384(), "rsa", False),
        _SignatureAlgorithm(_C.TransformRsaSha512, hashes.SHA512(), "rsa", False),
        _SignatureAlgorithm(_C.TransformEcdsaSha256, hashes.SHA256(), "ecdsa", False),
        _SignatureAlgorithm(_C.TransformEcdsaSha384, hashes.SHA384(), "ecdsa", False),
        # legacy (the VPCP fixtures), verified only, reported weak:
        _SignatureAlgorithm(_C.TransformRsaSha1, hashes.SHA1(), "rsa", True),  # noqa: S303
    )
}

# digest URI -> (xmlsec transform, weak)
_DIGEST_ALGORITHMS: Final[dict[str, tuple[Any, bool]]] = {
    _C.TransformSha256.href: (_C.TransformSha256, False),
    _C.TransformSha384.href: (_C.TransformSha384, False),
    _C.TransformSha512.href: (_C.TransformSha512, False),
    _C.TransformSha1.href: (_C.TransformSha1, True),
}

# Certificates seen in signatures, and what is derived from them alone (parsed object, xmlsec key,
# fingerprint, names), are kept per DER in bounded LRU caches (functools.lru_cache is thread-safe).
_CACHED_CERTIFICATES: Final = 512
_CACHED_TEXT_CHARS: Final = 64 * 1024  # longer X509Certificate texts are decoded every time, not kept

ACCEPTED_CANONICALIZATIONS: Final[frozenset[str]] = frozenset(_CANONICALIZATIONS)
ACCEPTED_SIGNATURE_METHODS: Final[frozenset[str]] = frozenset(_SIGNATURE_ALGORITHMS)
ACCEPTED_DIGEST_METHODS: Final[frozenset[str]] = frozenset(_DIGEST_ALGORITHMS)


class SignatureProblem(Exception):
    """One check failed: ``reason`` is a code of :data:`REASONS`, ``message`` says what was found."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.message = message or REASONS[reason][1]
        super().__init__(f"{reason}: {self.message}")


@dataclass(frozen=True)
class SignatureParts:
    """A Signature whose structure and algorithms passed the checks (not yet verified)."""

    element: etree._Element
    signed_info: etree._Element
    canonicalization: str
    inclusive_prefixes: tuple[str, ...]  # exclusive c14n's InclusiveNamespaces PrefixList, of SignedInfo
    signature_method: str
    digest_methods: tuple[str, ...]
    transforms: tuple[str, ...]  # of the one Reference
    digests: tuple[str, ...]  # DigestValue text of each reference, as in the document
    signature_value: bytes
    certificates: tuple[x509.Certificate, ...]  # leaf first, then the others in document order
    weak: bool  # SHA-1 somewhere

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def other_certificates(self) -> tuple[x509.Certificate, ...]:
        return self.certificates[1:]


# ------------------------------------------------------------------------------------------ signing


def sign_enveloped(root: etree._Element, parent: etree._Element, key: SigningKey) -> etree._Element:
    """Append a signature over the whole document of ``root`` as the last child of ``parent``.

    RSA-SHA256, exclusive c14n, one ``Reference URI=""`` with the enveloped-signature and
    exclusive c14n transforms and a SHA-256 digest, ``KeyInfo/X509Data`` with the key's
    certificates (leaf first).  The whitespace around the new element follows the
    indentation of ``parent``'s children.  Returns the Signature element.
    """
    if parent is not root and root not in parent.iterancestors():
        raise ValueError("parent is not inside the document of root")
    signature = xmlsec.template.create(root, _C.TransformExclC14N, _C.TransformRsaSha256)
    _append_indented(parent, signature)
    reference = xmlsec.template.add_reference(signature, _C.TransformSha256, uri="")
    xmlsec.template.add_transform(reference, _C.TransformEnveloped)
    xmlsec.template.add_transform(reference, _C.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    context = xmlsec.SignatureContext()
    try:
        context.key = key.xmlsec_key
        context.sign(signature)
    except xmlsec.Error as error:
        remove_element(signature)
        raise ServerError(
            f"xmlsec could not sign the document: {error}", code="Server.SigningFailed"
        ) from None
    _add_chain(signature, key)
    return signature


def _add_chain(signature: etree._Element, key: SigningKey) -> None:
    """After the leaf xmlsec wrote, the rest of the chain (KeyInfo is not signed: it may change)."""
    x509_data = next(iter(_path(signature, "KeyInfo", "X509Data")), None)
    written = [_decode_base64(element.text) for element in _certificate_elements(signature)]
    leaf = key.certificate.public_bytes(serialization.Encoding.DER)
    if x509_data is None or written != [leaf]:
        remove_element(signature)
        raise ServerError(
            "xmlsec did not put the signing certificate in KeyInfo", code="Server.SigningFailed"
        )
    for certificate in key.chain:
        encoded = base64.encodebytes(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")
        element = etree.SubElement(x509_data, _ds("X509Certificate"))
        element.text = "\n" + encoded
        element.tail = "\n"


def _append_indented(parent: etree._Element, element: etree._Element) -> None:
    """Append ``element`` to ``parent``, indented like its siblings when they are indented."""
    children = list(parent)
    indent = parent.text
    if children and _blank(indent) and _blank(children[-1].tail):
        last = children[-1]
        element.tail = last.tail
        last.tail = indent
    parent.append(element)


def remove_element(element: etree._Element) -> None:
    """Remove ``element`` from its parent; the whitespace after it stays where it was."""
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail
    previous = element.getprevious()
    before = previous.tail if previous is not None else parent.text
    # Indentation replaces indentation; any real text on either side is kept, in order.
    joined = tail if _blank(before) and _blank(tail) else (before or "") + (tail or "")
    parent.remove(element)
    if previous is not None:
        previous.tail = joined or None
    else:
        parent.text = joined or None


def _blank(text: str | None) -> bool:
    return text is not None and not text.strip()


# ---------------------------------------------------------------------------------- the namespace


def into_xmldsig_namespace(signature: etree._Element) -> etree._Element:
    """Put a Signature that is in another namespace (or none) into XML-DSig; returns the new element.

    The element and its descendants in the Signature's own namespace move to the xmldsig
    namespace, declared as the default namespace on Signature (the form the fixtures use);
    descendants in other namespaces (``InclusiveNamespaces``) keep theirs and their prefixes.
    The new element replaces the old one in the tree.

    This is sound: the enveloped-signature transform removes the Signature element from what
    the reference digests, so moving it to another namespace does not change the signed
    content; and SignedInfo's canonical form is what its signer saw as long as the signer
    wrote it in the default xmldsig namespace, which is exactly the form that loses its
    namespace when a re-serialising hub drops the ``xmlns`` declaration.  If the guess is wrong
    the SignatureValue simply does not verify.
    """
    source_namespace = _namespace(signature.tag)
    declarations = _own_declarations(signature)
    declarations.pop(None, None)
    copy = etree.Element(_ds("Signature"), dict(signature.attrib), nsmap={None: DS, **declarations})  # type: ignore[misc,dict-item]  # lxml-stubs: None prefix
    copy.text = signature.text
    copy.tail = signature.tail
    _copy_children(signature, copy, source_namespace)
    parent = signature.getparent()
    if parent is not None:
        parent.replace(signature, copy)
    return copy


def _copy_children(source: etree._Element, target: etree._Element, moved_namespace: str | None) -> None:
    for child in source:
        if not isinstance(child.tag, str):
            continue
        declarations = _own_declarations(child)
        if _namespace(child.tag) == moved_namespace:
            tag = _ds(_local(child.tag))
            declarations.pop(None, None)
        else:
            tag = child.tag
        new = etree.SubElement(target, tag, dict(child.attrib), nsmap=declarations or None)  # type: ignore[misc,arg-type]  # lxml-stubs: None prefix
        new.text = child.text
        new.tail = child.tail
        _copy_children(child, new, moved_namespace)


def _own_declarations(element: etree._Element) -> dict[str | None, str]:
    parent = element.getparent()
    inherited = parent.nsmap if parent is not None else {}
    return {prefix: uri for prefix, uri in element.nsmap.items() if inherited.get(prefix) != uri}


# ---------------------------------------------------------------------------------- placeholders


def find_placeholder(
    signature: etree._Element, *, sample_values: Mapping[str, str] | None = None
) -> SignatureProblem | None:
    """A Signature that was never a real one, or None.

    In order: nothing inside (``empty-signature``); an empty SignatureValue or DigestValue
    (``empty-signature-value``); a SignatureValue whose decoded bytes have a SHA-256 listed in
    ``sample_values`` (hex digest -> where it comes from; ``sample-signature``); an
    X509Certificate that is not a certificate (``truncated-certificate``).  ``signature``
    must already be in the xmldsig namespace.
    """
    if not _element_children(signature) and not (signature.text or "").strip():
        return SignatureProblem("empty-signature", "the Signature element is empty")
    value = next(iter(_path(signature, "SignatureValue")), None)
    if value is not None and not _compact(value.text):
        return SignatureProblem("empty-signature-value", "the SignatureValue is empty")
    if any(not _compact(d.text) for d in _path(signature, "SignedInfo", "Reference", "DigestValue")):
        return SignatureProblem("empty-signature-value", "a DigestValue is empty")
    if value is not None and sample_values:
        raw = _decode_base64(value.text)
        label = sample_values.get(hashlib.sha256(raw).hexdigest()) if raw else None
        if label:
            return SignatureProblem("sample-signature", f"the SignatureValue is {label}")
    for index, element in enumerate(_certificate_elements(signature), start=1):
        if _load_certificate(element.text) is None:
            return SignatureProblem(
                "truncated-certificate",
                f"X509Certificate #{index} in KeyInfo is empty, truncated or not an X.509 certificate",
            )
    return None


# -------------------------------------------------------------------------------------- structure


def read_signature(signature: etree._Element) -> SignatureParts:
    """Check a Signature's structure and algorithms and read its parts; raises :class:`SignatureProblem`.

    Reasons: ``malformed-signature`` (not XML-DSig), ``unsupported-algorithm``,
    ``reference-not-document``, ``truncated-certificate``.  A weak algorithm or a missing
    certificate are *not* raised here (the parts say so: ``weak``, empty ``certificates``), so
    that the caller's report can still name the algorithms.
    """
    if signature.tag != _ds("Signature"):
        raise SignatureProblem("malformed-signature", "the element is not an XML-DSig Signature")
    signed_info, value, key_info = _signature_children(signature)
    canonicalization_method, signature_method, references = _signed_info_children(signed_info)

    canonicalization = _algorithm(canonicalization_method, "CanonicalizationMethod")
    if canonicalization not in _CANONICALIZATIONS:
        raise SignatureProblem(
            "unsupported-algorithm", f"the canonicalization method {canonicalization} is not accepted"
        )
    prefixes = _c14n_parameters(canonicalization_method, canonicalization)
    method = _algorithm(signature_method, "SignatureMethod")
    algorithm = _SIGNATURE_ALGORITHMS.get(method)
    if algorithm is None:
        raise SignatureProblem("unsupported-algorithm", f"the signature method {method} is not accepted")
    if _element_children(signature_method):
        raise SignatureProblem("unsupported-algorithm", "the SignatureMethod carries parameters")

    if len(references) != 1:
        raise SignatureProblem(
            "reference-not-document",
            f"SignedInfo has {len(references)} references; only one, to the whole document, is accepted",
        )
    reference = references[0]
    _check_reference_uri(reference.get("URI"))
    transforms_element, digest_method, digest_value = _reference_children(reference)
    transforms = _transforms(transforms_element)
    digest = _algorithm(digest_method, "DigestMethod")
    if digest not in _DIGEST_ALGORITHMS:
        raise SignatureProblem("unsupported-algorithm", f"the digest method {digest} is not accepted")
    digest_text = _compact(digest_value.text)
    if _decode_base64(digest_text) is None:
        raise SignatureProblem("malformed-signature", "the DigestValue is not base64")
    signature_value = _decode_base64(value.text)
    if signature_value is None:
        raise SignatureProblem("malformed-signature", "the SignatureValue is not base64")

    certificates: list[x509.Certificate] = []
    for index, element in enumerate(
        _certificate_elements(signature) if key_info is not None else [], start=1
    ):
        certificate = _load_certificate(element.text)
        if certificate is None:
            raise SignatureProblem(
                "truncated-certificate", f"X509Certificate #{index} in KeyInfo is not an X.509 certificate"
            )
        _check_usable(certificate, index)
        certificates.append(certificate)

    return SignatureParts(
        element=signature,
        signed_info=signed_info,
        canonicalization=canonicalization,
        inclusive_prefixes=prefixes,
        signature_method=method,
        digest_methods=(digest,),
        transforms=transforms,
        digests=(digest_text,),
        signature_value=signature_value,
        certificates=_leaf_first(certificates),
        weak=algorithm.weak or _DIGEST_ALGORITHMS[digest][1],
    )


def _signature_children(
    signature: etree._Element,
) -> tuple[etree._Element, etree._Element, etree._Element | None]:
    """SignedInfo, SignatureValue, then an optional KeyInfo and any Objects, in that order."""
    children = _ds_children(signature, "Signature")
    names = [_local(child.tag) for child in children]
    for required in ("SignedInfo", "SignatureValue"):
        if required not in names:
            raise SignatureProblem("malformed-signature", f"the Signature has no {required}")
    if names[:2] != ["SignedInfo", "SignatureValue"]:
        raise SignatureProblem(
            "malformed-signature", "SignedInfo and SignatureValue must be the first children of Signature"
        )
    rest = names[2:]
    key_info = children[2] if rest[:1] == ["KeyInfo"] else None
    if any(name != "Object" for name in rest[1 if key_info is not None else 0 :]):
        raise SignatureProblem(
            "malformed-signature", "only one KeyInfo and Object elements may follow SignatureValue"
        )
    return children[0], children[1], key_info


def _signed_info_children(
    signed_info: etree._Element,
) -> tuple[etree._Element, etree._Element, list[etree._Element]]:
    children = _ds_children(signed_info, "SignedInfo")
    names = [_local(child.tag) for child in children]
    if names[:2] != ["CanonicalizationMethod", "SignatureMethod"]:
        raise SignatureProblem(
            "malformed-signature", "SignedInfo must start with CanonicalizationMethod and SignatureMethod"
        )
    references = children[2:]
    if not references or any(name != "Reference" for name in names[2:]):
        raise SignatureProblem("malformed-signature", "SignedInfo must end with Reference elements")
    return children[0], children[1], references


def _check_reference_uri(uri: str | None) -> None:
    if uri == "":
        return
    if uri is None:
        where = "has no URI (its target is left to the application)"
    elif uri.startswith("#"):
        where = f"points to one element ({uri!r}), not to the whole document"
    else:
        where = "points outside the document"
    raise SignatureProblem("reference-not-document", f"the signed Reference {where}")


def _reference_children(
    reference: etree._Element,
) -> tuple[etree._Element | None, etree._Element, etree._Element]:
    children = _ds_children(reference, "Reference")
    names = [_local(child.tag) for child in children]
    if names == ["DigestMethod", "DigestValue"]:
        return None, children[0], children[1]
    if names == ["Transforms", "DigestMethod", "DigestValue"]:
        return children[0], children[1], children[2]
    raise SignatureProblem(
        "malformed-signature", "a Reference must hold [Transforms], DigestMethod and DigestValue in order"
    )


def _transforms(transforms: etree._Element | None) -> tuple[str, ...]:
    """The accepted chain: enveloped-signature, then at most one canonicalization."""
    elements = _ds_children(transforms, "Transforms") if transforms is not None else []
    if any(_local(element.tag) != "Transform" for element in elements):
        raise SignatureProblem("malformed-signature", "Transforms may hold only Transform elements")
    algorithms = tuple(_algorithm(element, "Transform") for element in elements)
    for algorithm in algorithms:
        if algorithm != ENVELOPED and algorithm not in _CANONICALIZATIONS:
            raise SignatureProblem("unsupported-algorithm", f"the transform {algorithm} is not accepted")
    if ENVELOPED not in algorithms:
        raise SignatureProblem(
            "reference-not-document",
            "the Reference has no enveloped-signature transform, so it cannot sign the document "
            "that contains it",
        )
    if algorithms[0] != ENVELOPED or len(algorithms) > 2 or algorithms.count(ENVELOPED) > 1:
        raise SignatureProblem(
            "unsupported-algorithm",
            "the transforms must be enveloped-signature followed by at most one canonicalization",
        )
    if _element_children(elements[0]):
        raise SignatureProblem("malformed-signature", "the enveloped-signature transform takes no parameters")
    if len(elements) == 2:
        _c14n_parameters(elements[1], algorithms[1])
    return algorithms


def _c14n_parameters(method: etree._Element, algorithm: str) -> tuple[str, ...]:
    """Exclusive c14n's InclusiveNamespaces PrefixList (the only parameter accepted)."""
    parameters = _element_children(method)
    if not parameters:
        return ()
    exclusive = algorithm in (EXC_C14N, EXC_C14N_WITH_COMMENTS)
    if not exclusive or len(parameters) != 1 or parameters[0].tag != f"{{{EXC_C14N}}}InclusiveNamespaces":
        raise SignatureProblem(
            "unsupported-algorithm", f"unexpected parameters of the canonicalization {algorithm}"
        )
    return tuple((parameters[0].get("PrefixList") or "").split())


def _check_usable(certificate: x509.Certificate, index: int) -> None:
    """``cryptography`` parses a certificate lazily: read now what the checks will read later."""
    problem = _usability(certificate)
    if problem is not None:
        raise SignatureProblem(problem[0], problem[1].format(index=index))


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _usability(certificate: x509.Certificate) -> tuple[str, str] | None:
    """(reason, message with ``{index}``) when a field the checks read is unreadable; per certificate
    (certificates hash and compare by their DER, so this is a cache by DER)."""
    try:
        certificate.public_key()
    except UnsupportedAlgorithm:
        return "unsupported-algorithm", "the public key of X509Certificate #{index} is of an unsupported type"
    except ValueError:
        return "truncated-certificate", "X509Certificate #{index} in KeyInfo has an unreadable public key"
    try:
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        certificate.not_valid_before_utc, certificate.not_valid_after_utc, certificate.extensions  # noqa: B018
    except ValueError:
        return "truncated-certificate", "X509Certificate #{index} in KeyInfo has unreadable fields"
    return None


def _leaf_first(certificates: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The signer's certificate first: the first one that issued none of the others.

    Signers put the leaf first (we do), but XML-DSig does not require an order.  The leaf is
    only the key to try: a wrong pick cannot make a signature verify.
    """

    def issued_another(candidate: x509.Certificate) -> bool:
        return any(
            other is not candidate and other.issuer == candidate.subject and other.subject != other.issuer
            for other in certificates
        )

    leaves = [certificate for certificate in certificates if not issued_another(certificate)]
    if not leaves:
        return tuple(certificates)
    leaf = leaves[0]
    return (leaf, *(certificate for certificate in certificates if certificate is not leaf))


# -------------------------------------------------------------------------------------- the maths


def verify_signature(parts: SignatureParts) -> None:
    """Verify the digest and the SignatureValue with the leaf's key; raises :class:`SignatureProblem`.

    ``digest-mismatch`` or ``signature-value-mismatch`` (see the module docstring for how the
    two are told apart), ``unsupported-algorithm`` when the certificate's key cannot be used.
    """
    if not parts.certificates:
        raise SignatureProblem("missing-key-info")
    algorithm = _SIGNATURE_ALGORITHMS[parts.signature_method]
    public_key = parts.leaf.public_key()
    expected = rsa.RSAPublicKey if algorithm.key_type == "rsa" else ec.EllipticCurvePublicKey
    if not isinstance(public_key, expected):
        raise SignatureProblem(
            "signature-value-mismatch",
            f"the signature method {parts.signature_method} does not fit the certificate's "
            f"{type(public_key).__name__.removeprefix('_')} key",
        )
    context = xmlsec.SignatureContext()
    try:
        context.key = _verification_key(parts.leaf)  # the context takes its own copy of the key
        _restrict_transforms(context, parts)
    except xmlsec.Error:
        raise SignatureProblem(
            "unsupported-algorithm", "xmlsec cannot use the public key of the signing certificate"
        ) from None
    try:
        context.verify(parts.element)
    except xmlsec.Error:
        if _signature_value_holds(parts, public_key, algorithm):
            raise SignatureProblem(
                "digest-mismatch",
                "the SignatureValue matches SignedInfo, but the digest of the document does not: "
                "the content was changed after signing",
            ) from None
        raise SignatureProblem(
            "signature-value-mismatch",
            "the SignatureValue does not match SignedInfo and the key of the certificate in KeyInfo",
        ) from None


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _verification_key(certificate: x509.Certificate) -> Any:
    """The xmlsec public key of a certificate (an ``xmlsec.Key``), loaded once per certificate.

    Shared between calls and threads: assigning it to ``SignatureContext.key`` duplicates it
    (``xmlSecKeyDuplicate``), so no context ever holds or changes the cached key itself.
    """
    return xmlsec.Key.from_memory(
        certificate.public_bytes(serialization.Encoding.DER), _C.KeyDataFormatCertDer
    )


def _restrict_transforms(context: Any, parts: SignatureParts) -> None:
    """Inside xmlsec too, only the algorithms this signature declared (all of them allow-listed)."""
    context.enable_signature_transform(_CANONICALIZATIONS[parts.canonicalization])
    context.enable_signature_transform(_SIGNATURE_ALGORITHMS[parts.signature_method].transform)
    for transform in parts.transforms:
        context.enable_reference_transform(
            _C.TransformEnveloped if transform == ENVELOPED else _CANONICALIZATIONS[transform]
        )
    for digest in parts.digest_methods:
        context.enable_reference_transform(_DIGEST_ALGORITHMS[digest][0])


def _signature_value_holds(
    parts: SignatureParts,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    algorithm: _SignatureAlgorithm,
) -> bool:
    """Does the SignatureValue verify over SignedInfo as canonicalised by lxml?"""
    exclusive = parts.canonicalization in (EXC_C14N, EXC_C14N_WITH_COMMENTS)
    canonical = etree.tostring(
        _standalone(parts.signed_info),
        method="c14n",
        exclusive=exclusive,
        with_comments=parts.canonicalization.endswith("#WithComments"),
        inclusive_ns_prefixes=list(parts.inclusive_prefixes)
        if exclusive and parts.inclusive_prefixes
        else None,
    )
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(parts.signature_value, canonical, padding.PKCS1v15(), algorithm.hash)
        else:
            half = len(parts.signature_value) // 2  # XML-DSig ECDSA values are r || s
            der = encode_dss_signature(
                int.from_bytes(parts.signature_value[:half], "big"),
                int.from_bytes(parts.signature_value[half:], "big"),
            )
            public_key.verify(der, canonical, ec.ECDSA(algorithm.hash))
    except (InvalidSignature, ValueError):
        return False
    return True


def _standalone(element: etree._Element) -> etree._Element:
    """A copy of ``element`` as the root of its own document, declaring every namespace in scope.

    lxml canonicalises an element inside a document through a "fake root", and inclusive
    C14N then writes ``xmlns=""`` on grandchildren in an inherited default namespace (lxml
    6.1.3, libxml2 2.14.6).  A root of its own, declaring the namespaces that were in scope,
    has the same canonical form as the element in its document (inclusive C14N renders every
    namespace in scope at the apex; exclusive C14N only the ones used).
    """
    copy = etree.Element(element.tag, dict(element.attrib), nsmap=element.nsmap)  # type: ignore[misc,arg-type]  # lxml-stubs: None prefix
    copy.text = element.text
    for child in element:
        copy.append(deepcopy(child))
    return copy


# --------------------------------------------------------------------------------- the whole check


def verify_enveloped(
    signature: etree._Element,
    *,
    trust: TrustStore | None,
    at: datetime,
    covered: str,
    pinned: Collection[str] = (),
    pinned_name: str = "pinned certificates",
    allow_legacy: bool = False,
    warnings: Sequence[str] = (),
    sample_values: Mapping[str, str] | None = None,
) -> SignatureReport:
    """Every check on a located Signature (in the xmldsig namespace), as a report; never raises.

    Placeholders, structure and algorithms, ``missing-key-info``, the maths, then trust: when
    ``pinned`` (hex SHA-256 fingerprints) is not empty the leaf must be one of them
    (``signer-not-registered`` otherwise) and is then trusted as registered, unless expired,
    of the wrong key usage or revoked; otherwise it must chain to ``trust``'s anchors.
    ``trust is None`` means no anchors (``no-trust-anchors``) unless the leaf is pinned.
    ``covered`` describes what a sound signature covers; it is reported only when the maths
    passed, like ``signer``.
    """
    moment = _utc(at)
    base: dict[str, Any] = {"checked_at": iso_utc(moment), "warnings": tuple(warnings)}
    problem = find_placeholder(signature, sample_values=sample_values)
    if problem is not None:
        return report(problem.reason, problem.message, **base)
    try:
        parts = read_signature(signature)
    except SignatureProblem as failure:
        return report(failure.reason, failure.message, **base)
    described: dict[str, Any] = {
        **base,
        "signature_method": parts.signature_method,
        "digest_methods": parts.digest_methods,
        "canonicalization": parts.canonicalization,
        "digests": parts.digests,
        "weak": parts.weak,
        "certificates": tuple(_base64_der(certificate) for certificate in parts.certificates),
    }
    if parts.weak and not allow_legacy:
        return report(
            "weak-algorithm", "the signature uses SHA-1, and legacy algorithms are not allowed", **described
        )
    try:
        verify_signature(parts)
    except SignatureProblem as failure:
        return report(failure.reason, failure.message, **described)

    leaf = parts.leaf
    leaf_sha256 = certificate_sha256(leaf)
    sound = {**described, "signer": signer_info(leaf), "covered": covered}
    pins = {_fingerprint(value) for value in pinned}
    is_pinned = leaf_sha256 in pins
    if pins and not is_pinned:
        return report(
            "signer-not-registered",
            f"the signer {leaf.subject.rfc4514_string()} (SHA-256 {leaf_sha256}) is not one of the "
            f"{len(pins)} {pinned_name}",
            **sound,
        )
    store = trust if trust is not None else (TrustStore.of() if is_pinned else None)
    if store is None:
        return report(
            "no-trust-anchors",
            f"the signature verifies, but no trust anchors are configured to check "
            f"{leaf.subject.rfc4514_string()} against",
            **sound,
        )
    check = store.check(leaf, untrusted_intermediates=parts.other_certificates, at=moment, pinned=is_pinned)
    sound["warnings"] = (*base["warnings"], *check.warnings)
    sound["chain"] = check.chain
    if not check.trusted or check.reason != "ok":
        return report(check.reason if check.reason != "ok" else "chain-untrusted", check.message, **sound)
    return report("ok", f"the signature and its digest verify; {check.message}", **sound)


# ---------------------------------------------------------------------------------- certificates


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def certificate_sha256(certificate: x509.Certificate) -> str:
    """Hex SHA-256 fingerprint of the DER certificate (the form registered signers are listed in)."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def signer_info(certificate: x509.Certificate) -> SignerInfo:
    return SignerInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=format(certificate.serial_number, "x"),
        sha256=certificate_sha256(certificate),
        not_before=iso_utc(certificate.not_valid_before_utc),
        not_after=iso_utc(certificate.not_valid_after_utc),
    )


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _base64_der(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _fingerprint(value: str) -> str:
    """A fingerprint as given by people: any case, with or without colons or spaces."""
    return "".join(value.split()).replace(":", "").lower()


def _certificate_elements(signature: etree._Element) -> list[etree._Element]:
    return _path(signature, "KeyInfo", "X509Data", "X509Certificate")


def _load_certificate(text: str | None) -> x509.Certificate | None:
    return (
        _certificate_of_text(text) if text is not None and len(text) <= _CACHED_TEXT_CHARS else _decoded(text)
    )


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _certificate_of_text(text: str) -> x509.Certificate | None:
    """Per X509Certificate text as written (base64 with its line breaks): decoded once."""
    return _decoded(text)


def _decoded(text: str | None) -> x509.Certificate | None:
    der = _decode_base64(text)
    if not der:
        return None
    return _certificate_of(der)


@functools.lru_cache(maxsize=_CACHED_CERTIFICATES)
def _certificate_of(der: bytes) -> x509.Certificate | None:
    """The parsed certificate, or None; once per DER (a certificate object is immutable)."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ helpers


def _ds(local: str) -> str:
    return f"{{{DS}}}{local}"


def _path(element: etree._Element, *steps: str) -> list[etree._Element]:
    """Descendants along ``steps`` (xmldsig local names), in document order.

    Not ``find``: lxml matches tags by the document's interned names, and elements xmlsec
    creates (KeyInfo, X509Data...) are not always interned, so ``find`` misses them.
    """
    found = [element]
    for step in steps:
        tag = _ds(step)
        found = [child for parent in found for child in parent if child.tag == tag]
    return found


def _namespace(tag: str) -> str | None:
    return tag[1:].partition("}")[0] if tag.startswith("{") else None


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _element_children(element: etree._Element) -> list[etree._Element]:
    return [child for child in element if isinstance(child.tag, str)]


def _ds_children(element: etree._Element, name: str) -> list[etree._Element]:
    children = _element_children(element)
    for child in children:
        if _namespace(child.tag) != DS:
            raise SignatureProblem("malformed-signature", f"{name} holds an element outside XML-DSig")
    return children


def _algorithm(element: etree._Element, name: str) -> str:
    algorithm = element.get("Algorithm")
    if not algorithm:
        raise SignatureProblem("malformed-signature", f"a {name} has no Algorithm")
    return algorithm


def _compact(text: str | None) -> str:
    return "".join((text or "").split())


def _decode_base64(text: str | None) -> bytes | None:
    """Strict base64 (whitespace ignored); None when it is not base64 or empty."""
    compact = _compact(text)
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC (as ``cryptography`` does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` (a naive datetime is taken to be UTC)."""
    return _utc(moment).isoformat().replace("+00:00", "Z")
