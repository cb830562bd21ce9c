"""SQLAlchemy models; importing this package registers every table on the metadata."""

from identity.models.audit import AuditEvent, AuditHead
from identity.models.base import Base
from identity.models.oauth import (
    AuthorizationCode,
    Client,
    Consent,
    DeviceAuthorization,
    PendingAuthorization,
    RefreshToken,
    SigningKey,
    TokenRevocation,
    UsedJti,
    client_roles,
)
from identity.models.session import LoginSession, LoginThrottle
from identity.models.user import Invitation, Role, User, user_roles

__all__ = [
    "AuditEvent",
    "AuthorizationCode",
    "Client",
    "Consent",
    "DeviceAuthorization",
    "PendingAuthorization",
    "RefreshToken",
    "SigningKey",
    "TokenRevocation",
    "UsedJti",
    "client_roles",
    "AuditHead",
    "Base",
    "Invitation",
    "LoginSession",
    "LoginThrottle",
    "Role",
    "User",
    "user_roles",
]
