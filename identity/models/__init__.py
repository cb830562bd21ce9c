"""SQLAlchemy models; importing this package registers every table on the metadata."""

from identity.models.audit import AuditEvent, AuditHead
from identity.models.base import Base
from identity.models.mail import OutboundMail
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
    "AuditHead",
    "AuthorizationCode",
    "Base",
    "Client",
    "Consent",
    "DeviceAuthorization",
    "Invitation",
    "LoginSession",
    "LoginThrottle",
    "OutboundMail",
    "PendingAuthorization",
    "RefreshToken",
    "Role",
    "SigningKey",
    "TokenRevocation",
    "UsedJti",
    "User",
    "client_roles",
    "user_roles",
]
