"""The SOAP edge: the only package that imports spyne.

spyne 2.14.0 on Python 3.11 warns about its bundled ``six`` and the ``cgi`` module at import
time; both are harmless there (docs/decisions/0003-soap-stack.md), so they are silenced here,
before any spyne import.
"""

import warnings

warnings.filterwarnings("ignore", message="_SixMetaPathImporter", category=ImportWarning)
warnings.filterwarnings("ignore", message="'cgi' is deprecated", category=DeprecationWarning)
