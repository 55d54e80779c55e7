"""Persistence: SQLite schema, store, export and replay."""
