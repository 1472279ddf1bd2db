"""Whole-store operations over the public API: backup, copy, export and import."""
