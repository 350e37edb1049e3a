"""Errors the library raises for bad input.

``UserError`` carries a one-line message meant for a person: the CLI prints it and
exits with status 2, the app shows it with ``st.error``. Anything else is a bug.
"""


class UserError(ValueError):
    """Bad input or settings, explained in one line."""
