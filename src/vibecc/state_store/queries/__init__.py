"""The SQL of every public call: statements built once, and plain functions taking a connection."""
