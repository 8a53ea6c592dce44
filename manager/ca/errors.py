"""The cluster PKI's error hierarchy.

Every error names the object (a node, a certificate, a token, a manager address) and the operation
that failed, so the text can reach a user unchanged. Servers translate these to gRPC status codes at
their edge; nothing in this package knows about status codes except `tls.require_role`.
"""

from __future__ import annotations


class CAError(Exception):
    """Base class: the cluster CA could not do what was asked (sign, load, fetch, verify)."""


class CertificateError(CAError):
    """A certificate is not acceptable as a node identity: wrong CA, expired, or not a node cert."""


class InvalidJoinToken(CAError):
    """A join token is malformed, was rotated away, or belongs to another cluster's CA."""
