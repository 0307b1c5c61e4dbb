"""Errors a user can act on.

`launch/run.py` prints a `ConfigError` as one clear message and exits with code 2, so every
check that can blame the configuration (rather than the code) raises this type.
"""


class ConfigError(ValueError):
    """The configuration asks for something that cannot work; the message says how to fix it."""


def require(condition: bool, message: str) -> None:
    """Raise a ConfigError with `message` unless `condition` holds."""
    if not condition:
        raise ConfigError(message)
