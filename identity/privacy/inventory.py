"""The data inventory: every column of every table, classified (GDPR Art. 30).

For each table: what it is for, how long its rows are kept, which column links a row to
the person it is about (``owner``), and what erasing that person does to their rows. For
each column: whether it is personal data and of which category, and whether a data export
includes it. tests/unit/test_privacy_inventory.py fails when a column of the models is
missing here, so a new column cannot slip through; docs/privacy.md is generated from it
(``identity gdpr inventory --markdown``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Categories of personal data.
IDENTIFIER = "identifier"  # the user id (the OIDC sub), pseudonyms
CONTACT = "contact"  # email addresses
PROFILE = "profile"  # name
CREDENTIAL = "credential"  # password hashes, sealed seeds, code hashes, public keys
AUTHENTICATION = "authentication"  # how and when a person signed in
NETWORK = "network"  # IP addresses
DEVICE = "device"  # user agents, authenticator names
ACTIVITY = "activity"  # what a person did and when
CONSENT = "consent"  # what a person allowed which application
AUTHORIZATION = "authorization"  # roles and groups
COMMUNICATION = "communication"  # mail to the person

# What erasing a person does to their rows.
DELETE = "deleted"
PSEUDONYMISE = "pseudonymised"
KEEP = "kept"
NOT_PERSONAL = "holds no personal data"


@dataclass(frozen=True)
class Column:
    category: str | None = None  # None: not personal data
    export: bool = False
    note: str = ""


@dataclass(frozen=True)
class Table:
    purpose: str
    retention: str
    erasure: str
    columns: Mapping[str, Column]
    owner: str | None = None  # the column naming the person a row is about
    note: str = ""


N = Column()  # not personal data


def p(category: str, *, export: bool = True, note: str = "") -> Column:
    """A column holding personal data of ``category``."""
    return Column(category, export, note)


SECRET = Column(CREDENTIAL, False, "never exported: a secret, or what protects one")
USER = p(IDENTIFIER, export=False, note="the person's id, the export's subject")
WHEN = p(ACTIVITY)
GRANT_STATE = {  # what codes, refresh tokens and device authorizations record of a sign-in
    "auth_time": p(AUTHENTICATION),
    "amr": p(AUTHENTICATION),
    "acr": p(AUTHENTICATION),
}

INVENTORY: dict[str, Table] = {
    "users": Table(
        "the account: sign-in, the OpenID Connect claims",
        "until the account is erased; inactive accounts as `retention_inactive_*` say",
        DELETE,
        {
            "id": p(IDENTIFIER),
            "email": p(CONTACT),
            "name": p(PROFILE),
            "password_hash": SECRET,
            "email_verified_at": WHEN,
            "disabled_at": WHEN,
            "created_at": WHEN,
            "updated_at": WHEN,
            "password_changed_at": WHEN,
            "reset_requested_at": WHEN,
            "verification_sent_at": WHEN,
            "last_sign_in_at": WHEN,
            "inactivity_warned_at": WHEN,
        },
        owner="id",
    ),
    "login_sessions": Table(
        "signed-in browsers (sessions page, OIDC sid)",
        "until sign-out, expiry or idle timeout; address and user agent for "
        "`retention_origins_days`",
        DELETE,
        {
            "id_hash": SECRET,
            "sid": p(IDENTIFIER),
            "user_id": USER,
            "created_at": WHEN,
            "last_seen_at": WHEN,
            "expires_at": WHEN,
            **GRANT_STATE,
            "ip": p(NETWORK),
            "user_agent": p(DEVICE),
        },
        owner="user_id",
    ),
    "login_throttles": Table(
        "slowing down password guessing per email",
        "a day after the last failure",
        KEEP,
        {
            "key_hash": Column(IDENTIFIER, False, "a keyed hash of an email, known account or not"),
            "failures": N,
            "last_failure_at": N,
            "blocked_until": N,
        },
        note="not linked to an account (typed emails may name none); expires within a day",
    ),
    "invitations": Table(
        "invitations to register",
        "until used or expired",
        DELETE,
        {
            "id": N,
            "token_hash": SECRET,
            "email": p(CONTACT),
            "role_id": N,
            "created_by_id": p(IDENTIFIER, export=False),
            "created_at": WHEN,
            "expires_at": WHEN,
            "used_at": WHEN,
            "used_by_id": USER,
        },
        owner="used_by_id",
        note="an erased person's invitations lose the link to them (SET NULL)",
    ),
    "audit_pseudonyms": Table(
        "the pseudonym standing for a user in the audit chain",
        "until the account is erased",
        DELETE,
        {"user_id": USER, "pseudonym": p(IDENTIFIER, export=False)},
        owner="user_id",
    ),
    "audit_events": Table(
        "the tamper-evident audit trail (security events, operator actions)",
        "kept; addresses, user agents and emails as `retention_origins_days`",
        PSEUDONYMISE,
        {
            "seq": N,
            "occurred_at": WHEN,
            "event": p(ACTIVITY),
            "outcome": p(ACTIVITY),
            "actor_id": p(IDENTIFIER, export=False, note="removed at erasure"),
            "subject_id": USER,
            "actor_ref": p(IDENTIFIER, export=False, note="a pseudonym; the link goes"),
            "subject_ref": p(IDENTIFIER, export=False, note="a pseudonym; the link goes"),
            "client_id": p(ACTIVITY),
            "ip": p(NETWORK, note="removed at erasure"),
            "user_agent": p(DEVICE, note="removed at erasure"),
            "personal": p(CONTACT, note="emails and names the event names; removed at erasure"),
            "personal_digest": N,
            "request_id": N,
            "data": p(ACTIVITY),
            "prev_hash": N,
            "hash": N,
        },
        owner="subject_id",
        note="kept to show what happened; the person becomes a pseudonym",
    ),
    "audit_head": Table(
        "the audit chain's tip", "kept", NOT_PERSONAL, {"id": N, "seq": N, "hash": N}
    ),
    "change_generations": Table(
        "cache invalidation between processes",
        "kept",
        NOT_PERSONAL,
        {"topic": N, "generation": N, "changed_at": N},
    ),
    "clients": Table(
        "relying parties (applications)",
        "until deleted by an operator",
        NOT_PERSONAL,
        {
            "id": N,
            "client_id": N,
            "client_secret_hash": N,
            "client_secret_expires_at": N,
            "name": N,
            "meta": N,
            "first_party": N,
            "resource_server": N,
            "registered_via": N,
            "registration_token_hash": N,
            "created_at": N,
            "updated_at": N,
        },
        note="contacts in client metadata are the application owner's, given for that purpose",
    ),
    "client_permissions": Table(
        "permissions a client declares",
        "with the client",
        NOT_PERSONAL,
        {"client_pk": N, "name": N, "description": N, "in_token": N},
    ),
    "roles": Table(
        "roles",
        "until deleted",
        NOT_PERSONAL,
        {"id": N, "name": N, "description": N, "builtin": N, "created_at": N},
    ),
    "role_parents": Table(
        "role inheritance", "with the roles", NOT_PERSONAL, {"role_id": N, "parent_id": N}
    ),
    "role_permissions": Table(
        "what each role may do", "with the roles", NOT_PERSONAL, {"role_id": N, "permission": N}
    ),
    "groups": Table(
        "groups of users",
        "until deleted",
        NOT_PERSONAL,
        {
            "id": N,
            "name": N,
            "description": N,
            "parent_id": N,
            "created_at": N,
            "updated_at": N,
        },
    ),
    "group_members": Table(
        "who is in which group",
        "until removed",
        DELETE,
        {"group_id": p(AUTHORIZATION), "user_id": USER},
        owner="user_id",
    ),
    "role_assignments": Table(
        "roles given to users, groups and service accounts",
        "until taken back",
        DELETE,
        {
            "id": N,
            "role_id": p(AUTHORIZATION),
            "user_id": USER,
            "group_id": N,
            "client_pk": N,
            "scope_client_pk": p(AUTHORIZATION),
            "created_at": WHEN,
        },
        owner="user_id",
    ),
    "signing_keys": Table(
        "token signing keys",
        "until unpublished",
        NOT_PERSONAL,
        {
            "kid": N,
            "alg": N,
            "public_jwk": N,
            "private_jwk_encrypted": N,
            "created_at": N,
            "active_from": N,
            "retired_at": N,
            "unpublish_at": N,
        },
    ),
    "token_revocations": Table(
        "revoked tokens, grants and sessions",
        "until the tokens they cover expire",
        KEEP,
        {
            "key": Column(IDENTIFIER, False, "ids of tokens and grants"),
            "revoked_at": N,
            "expires_at": N,
        },
        note="random token and grant ids only, gone within the longest token lifetime",
    ),
    "used_jtis": Table(
        "client assertion replay protection",
        "until the assertion expires",
        NOT_PERSONAL,
        {"key": N, "expires_at": N},
    ),
    "authorization_codes": Table(
        "authorization codes",
        "a day after they expire (minutes)",
        DELETE,
        {
            "code_hash": SECRET,
            "client_pk": p(CONSENT),
            "user_id": USER,
            "family_id": N,
            "redirect_uri": N,
            "scope": p(CONSENT),
            "nonce": N,
            "code_challenge": N,
            "code_challenge_method": N,
            "claims": p(CONSENT),
            **GRANT_STATE,
            "sid": p(IDENTIFIER, export=False),
            "created_at": WHEN,
            "expires_at": WHEN,
            "used_at": WHEN,
        },
        owner="user_id",
    ),
    "refresh_tokens": Table(
        "grants: refresh tokens, one family per sign-in at a client",
        "until the family ends (absolute lifetime), then a day",
        DELETE,
        {
            "token_hash": SECRET,
            "family_id": p(IDENTIFIER),
            "client_pk": p(CONSENT),
            "user_id": USER,
            "scope": p(CONSENT),
            **GRANT_STATE,
            "sid": p(IDENTIFIER, export=False),
            "claims": p(CONSENT),
            "issued_at": WHEN,
            "expires_at": WHEN,
            "family_expires_at": WHEN,
            "rotated_at": WHEN,
            "revoked_at": WHEN,
        },
        owner="user_id",
    ),
    "consents": Table(
        "what the person allowed each application",
        "until withdrawn",
        DELETE,
        {
            "id": N,
            "user_id": USER,
            "client_pk": p(CONSENT),
            "scopes": p(CONSENT),
            "created_at": WHEN,
            "updated_at": WHEN,
            "last_authorized_at": WHEN,
        },
        owner="user_id",
    ),
    "pending_authorizations": Table(
        "authorization requests waiting for sign-in or consent",
        "minutes",
        NOT_PERSONAL,
        {"id_hash": N, "client_pk": N, "params": N, "pushed": N, "created_at": N, "expires_at": N},
        note="the client's request parameters; a login_hint a client sends is its own data",
    ),
    "device_authorizations": Table(
        "device flow requests",
        "a day after they expire (minutes)",
        DELETE,
        {
            "device_code_hash": SECRET,
            "user_code_hash": SECRET,
            "client_pk": p(CONSENT),
            "scope": p(CONSENT),
            "status": p(CONSENT),
            "user_id": USER,
            **GRANT_STATE,
            "failed_attempts": N,
            "created_at": WHEN,
            "expires_at": WHEN,
            "last_polled_at": N,
        },
        owner="user_id",
    ),
    "backchannel_logouts": Table(
        "logout notices to applications",
        "until delivered or given up (about an hour)",
        KEEP,
        {
            "id": N,
            "client_pk": N,
            "user_id": Column(IDENTIFIER, False, "the sub the application knows"),
            "sid": Column(IDENTIFIER, False),
            "created_at": N,
            "next_attempt_at": N,
            "claimed_until": N,
            "attempts": N,
            "last_error": N,
        },
        note="delivered after an erasure too: the application must hear that the session ended",
    ),
    "security_events": Table(
        "Security Event Tokens to applications (account purged)",
        "until delivered or given up (about an hour)",
        KEEP,
        {
            "id": N,
            "client_pk": N,
            "event": N,
            "subject": Column(IDENTIFIER, False, "the sub the application knows"),
            "created_at": N,
            "next_attempt_at": N,
            "claimed_until": N,
            "attempts": N,
            "last_error": N,
        },
        note="queued by the erasure itself, to tell each application",
    ),
    "mail_outbox": Table(
        "mail waiting for delivery (sealed)",
        "until the mail server took it",
        DELETE,
        {
            "id": N,
            "user_id": USER,
            "sealed": Column(COMMUNICATION, False, "sealed: holds reset and verification links"),
            "created_at": N,
            "attempts": N,
            "next_attempt_at": N,
            "claimed_until": N,
        },
        owner="user_id",
    ),
    "sent_mails": Table(
        "which mail a person was sent (subject and time)",
        "as `retention_sent_mail_days`",
        DELETE,
        {"id": N, "user_id": USER, "subject": p(COMMUNICATION), "sent_at": WHEN},
        owner="user_id",
    ),
    "totp_credentials": Table(
        "authenticator apps (TOTP)",
        "until removed",
        DELETE,
        {
            "id": N,
            "user_id": USER,
            "sealed_secret": SECRET,
            "created_at": WHEN,
            "confirmed_at": WHEN,
            "last_step": N,
            "last_used_at": WHEN,
            "failures": N,
            "blocked_until": N,
        },
        owner="user_id",
    ),
    "recovery_codes": Table(
        "recovery codes",
        "until used or replaced",
        DELETE,
        {"id": N, "user_id": USER, "code_hash": SECRET, "created_at": WHEN, "used_at": WHEN},
        owner="user_id",
    ),
    "webauthn_credentials": Table(
        "passkeys",
        "until removed",
        DELETE,
        {
            "id": N,
            "user_id": USER,
            "credential_id": SECRET,
            "public_key": SECRET,
            "sign_count": N,
            "transports": p(DEVICE),
            "name": p(DEVICE),
            "discoverable": p(DEVICE),
            "backed_up": p(DEVICE),
            "created_at": WHEN,
            "last_used_at": WHEN,
        },
        owner="user_id",
    ),
    "pending_authentications": Table(
        "sign-ins waiting for their next step",
        "five minutes",
        DELETE,
        {
            "id_hash": SECRET,
            "user_id": USER,
            "challenge": SECRET,
            "amr": N,
            "next_url": N,
            "attempts": N,
            "created_at": N,
            "expires_at": N,
        },
        owner="user_id",
    ),
    "privacy_jobs": Table(
        "data exports and erasures waiting to run, and export bundles",
        "an export until downloaded or expired; an erasure until it runs",
        DELETE,
        {
            "id": N,
            "kind": N,
            "user_id": USER,
            "by_operator": N,
            "requested_by": p(IDENTIFIER, export=False),
            "reason": p(ACTIVITY, export=False, note="the operator's reason for an erasure"),
            "disabled_account": N,
            "run_after": N,
            "attempts": N,
            "claimed_until": N,
            "created_at": N,
            "ready_at": N,
            "bundle": Column(COMMUNICATION, False, "the sealed export itself"),
            "download_hash": SECRET,
            "download_expires_at": N,
            "last_error": N,
        },
        owner="user_id",
    ),
    "erasure_ledger": Table(
        "which accounts were erased, to repeat erasures after a restore",
        "kept",
        KEEP,
        {
            "receipt_id": N,
            "subject_hash": Column(
                IDENTIFIER, False, "a keyed hash of the erased id; names no one"
            ),
            "erased_at": N,
            "requested": N,
        },
        note="pseudonymous: needed so that a restored backup can be erased again",
    ),
}


def personal_columns(table: str) -> dict[str, Column]:
    return {name: c for name, c in INVENTORY[table].columns.items() if c.category is not None}


def exported_columns(table: str) -> list[str]:
    """The columns of ``table`` a data export includes, in inventory order."""
    return [name for name, column in INVENTORY[table].columns.items() if column.export]


def exported_tables() -> list[str]:
    """The tables with rows about a person that a data export includes."""
    return [name for name, t in INVENTORY.items() if t.owner and exported_columns(name)]
