"""Command-line interface: ``esb`` (composition root for the command line)."""
