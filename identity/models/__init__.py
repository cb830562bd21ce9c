"""SQLAlchemy models; importing this package registers every table on the metadata."""

from identity.models.audit import AuditEvent, AuditHead, AuditPseudonym
from identity.models.base import Base
from identity.models.change import ChangeGeneration
from identity.models.mail import OutboundMail
from identity.models.mfa import (
    PendingAuthentication,
    RecoveryCode,
    TotpCredential,
    WebAuthnCredential,
)
from identity.models.oauth import (
    AuthorizationCode,
    BackchannelLogout,
    Client,
    Consent,
    DeviceAuthorization,
    PendingAuthorization,
    RefreshToken,
    SigningKey,
    TokenRevocation,
    UsedJti,
)
from identity.models.privacy import ErasureRecord, PrivacyJob, SecurityEvent, SentMail
from identity.models.rbac import (
    ClientPermission,
    Group,
    Role,
    RoleAssignment,
    group_members,
    role_parents,
    role_permissions,
)
from identity.models.session import LoginSession, LoginThrottle
from identity.models.user import Invitation, User

__all__ = [
    "AuditEvent",
    "AuditHead",
    "AuditPseudonym",
    "AuthorizationCode",
    "BackchannelLogout",
    "Base",
    "ChangeGeneration",
    "Client",
    "ClientPermission",
    "Consent",
    "DeviceAuthorization",
    "ErasureRecord",
    "Group",
    "Invitation",
    "LoginSession",
    "LoginThrottle",
    "OutboundMail",
    "PendingAuthentication",
    "PendingAuthorization",
    "PrivacyJob",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "RoleAssignment",
    "SecurityEvent",
    "SentMail",
    "SigningKey",
    "TokenRevocation",
    "TotpCredential",
    "UsedJti",
    "User",
    "WebAuthnCredential",
    "group_members",
    "role_parents",
    "role_permissions",
]
