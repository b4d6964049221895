"""The one exception type users see: a one-line message naming the file and the fix."""


class DeepEMError(Exception):
    """An input or configuration problem the user can fix; printed as one line, exit status 2."""
