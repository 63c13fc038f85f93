"""Namespace URIs, in one place."""

EDXML = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
XLINK = "http://www.w3.org/1999/xlink"

# Other edXML lineages: recognised so we can say precisely why we do not accept them.
EDOC_VN_2013 = "http://www.e-doc.vn/Schema/"
GO_VN_EDOC = "http://www.go.vn/eDoc"

EDXML_PREFIX = "edXML"


def qname(local: str, ns: str = EDXML) -> str:
    return f"{{{ns}}}{local}"


def split_tag(tag: str) -> tuple[str | None, str]:
    """``{ns}local`` → (ns, local); ``local`` → (None, local)."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


# SOAP 1.1 and WS-Security (OASIS WSS 1.0/1.1).
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSS_X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
WSS_BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
