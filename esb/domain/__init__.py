"""Pure domain core: no IO, no lxml, no database, no clocks (callers pass ``now``)."""
