"""Everything that touches lxml: hardened parsing, edXML reading and writing, schemas."""
