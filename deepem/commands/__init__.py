"""Subcommands of the deepem CLI, one module each."""
