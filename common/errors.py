"""Exception types shared by node, coordinator and CLI."""


class FedcreditError(Exception):
    """Base class for every error fedcredit raises on purpose."""


class ProtocolError(FedcreditError):
    """A peer sent a message that breaks the protocol (wrong step, job, size or signature)."""


class DataValidationError(FedcreditError):
    """A node's table or configuration fails validation; the message lists every problem."""


class PeerUnavailable(FedcreditError):
    """A peer could not be reached before its deadline."""


class TrustError(FedcreditError):
    """A certificate, signature or peer identity could not be verified."""


class AuditError(FedcreditError):
    """The audit log could not be written or read."""


class ModelFormatError(DataValidationError):
    """A saved model is in a format this version cannot read; the message says what to do."""
