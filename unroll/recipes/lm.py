"""Placeholder until the recipe lands (being written now)."""


def register(subparsers):
    pass
