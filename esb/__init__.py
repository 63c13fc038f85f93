"""LGSP document-exchange service bus for Vietnamese e-government (edXML, QCVN 102:2016)."""

__version__ = "0.1.0"
