"""Errors that evoprune reports to users as one clear message, without a traceback."""


class EvoPruneError(Exception):
    """Base class: the message says what is wrong, where, and how to fix it."""


class DataError(EvoPruneError):
    """The images, folders or manifest given as data cannot be used."""


class ConfigError(EvoPruneError, ValueError):
    """An argument has a value that is not allowed."""


class BackboneError(EvoPruneError):
    """A backbone is unknown or cannot be built on this machine."""
