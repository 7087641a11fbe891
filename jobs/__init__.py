"""Entrypoints that wire settings and adapters to the core: pipeline stages, nightly scoring, CLI."""
