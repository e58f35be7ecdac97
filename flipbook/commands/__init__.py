"""CLI command groups, each registered by flipbook/cli.py."""
