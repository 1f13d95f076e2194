"""The little the three families share: conv building blocks, data loading and run helpers."""


class InputError(Exception):
    """A problem with what the user asked for (data, flags, checkpoint): shown as one line, no traceback."""
