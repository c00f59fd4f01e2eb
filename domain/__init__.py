"""The registry's domain: aggregates, events and invariants. No I/O, no framework imports."""
