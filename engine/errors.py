"""Domain errors. Each says, in one line, what is wrong and where (the field or the rule)."""

from __future__ import annotations


class DomainError(ValueError):
    """A command was refused by a business rule; nothing was stored."""

    rule: str = ""

    def __init__(self, message: str, rule: str = "") -> None:
        self.rule = rule or self.rule
        prefix = f"rule {self.rule}: " if self.rule else ""
        super().__init__(prefix + " ".join(str(message).split()))


class NotFound(DomainError):
    """Something the command refers to does not exist."""


class UnknownSupplier(NotFound):
    pass


class UnknownOffer(NotFound):
    pass


class UnknownAllocation(NotFound):
    pass


class UnknownOrder(NotFound):
    pass


class InvalidCommand(DomainError):
    """A field of the command has a value the rules do not allow."""


class LinkRefused(DomainError):
    pass


class TrackingRefused(DomainError):
    pass


class Conflict(RuntimeError):
    """Concurrent writers kept colliding; the command was not applied. Not a refusal (not a
    ``DomainError``): the same command may well succeed when tried again, so a message that
    meets it is handed back to the broker, not dead-lettered."""
