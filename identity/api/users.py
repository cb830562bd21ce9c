"""Users: search, create, read, change, disable, enable and delete accounts.

Writes go through the account services (identity.accounts), which refuse to touch a user
who holds a permission the caller does not hold, and to disable or delete the last active
administrator; so do the `identity users ...` commands, through the same functions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, selectinload

from identity.accounts import management
from identity.accounts.emails import InvalidEmail, normalize_email
from identity.api import bp
from identity.api.auth import Caller, authorize
from identity.api.common import Input, Output, Page, PageQuery, decode_cursor, encode_cursor
from identity.api.operations import operation, require_match
from identity.exceptions import NotFound
from identity.extensions import db
from identity.models.rbac import RoleAssignment, group_members
from identity.models.user import User
from identity.privacy.erasure import Erasure
from identity.rbac import service as rbac
from identity.rbac.permissions import Permission
from identity.runtime import runtime

# A password is taken as typed: Input strips the whitespace around other strings.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=1024)]


def _email(value: str | None) -> str | None:
    """The canonical address (identity.accounts.emails), or a validation error."""
    if value is None:
        return None
    try:
        return normalize_email(value)
    except InvalidEmail as error:
        raise ValueError(error.message) from None


class UserOut(Output):
    id: uuid.UUID
    email: str
    name: str | None
    email_verified: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime = Field(description="When the profile (the claims) last changed.")
    last_sign_in_at: datetime | None
    roles: list[str] = Field(description="Roles given to the user directly and globally.")


class UserPage(Page[UserOut]):
    pass


class UserQuery(PageQuery):
    q: str | None = Field(None, max_length=200, description="Part of the email or name (any case).")
    email: str | None = Field(None, max_length=320, description="This exact email address.")
    disabled: bool | None = None
    verified: bool | None = Field(None, description="Whether the email address is verified.")
    role: str | None = Field(None, max_length=64, description="Users given this role directly.")
    group: str | None = Field(None, max_length=64, description="Members of this group.")

    _canonical_email = field_validator("email")(_email)


class UserCreate(Input):
    email: str = Field(max_length=320)
    name: str | None = Field(None, max_length=200)
    password: Password | None = Field(
        None,
        description="Without one, the user is mailed a link to choose a password.",
    )
    email_verified: bool = False
    roles: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Given globally; needs roles:assign, and only roles holding nothing"
        " you do not hold.",
    )

    _canonical_email = field_validator("email")(_email)


class UserUpdate(Input):
    """Fields left out keep their value; a null or empty name removes it."""

    name: str | None = Field(None, max_length=200)
    email: str | None = Field(
        None,
        max_length=320,
        description="Changed at once, without a confirmation mail; unverified unless"
        " email_verified is true too.",
    )
    email_verified: bool | None = None

    _canonical_email = field_validator("email")(_email)


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.is_verified,
        disabled=not user.is_active,
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_sign_in_at=user.last_sign_in_at,
        roles=user.role_names,
    )


def get_user(session: Session, user_id: uuid.UUID, *, lock: bool = False) -> User:
    query = select(User).where(User.id == user_id)
    if lock:
        query = query.with_for_update()
    user = session.execute(query).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def user_filters(session: Session, query: UserQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.q:
        needle = query.q.lower()
        where.append(
            or_(
                User.email.contains(needle, autoescape=True),
                func.lower(User.name).contains(needle, autoescape=True),
            )
        )
    if query.email is not None:
        where.append(User.email == query.email)
    for flag, column in (
        (query.disabled, User.disabled_at),
        (query.verified, User.email_verified_at),
    ):
        if flag is not None:
            where.append(column.is_not(None) if flag else column.is_(None))
    if query.role is not None:
        role = rbac.role_by_name(session, query.role)
        where.append(
            User.id.in_(
                select(RoleAssignment.user_id).where(
                    RoleAssignment.role_id == role.id, RoleAssignment.scope_client_pk.is_(None)
                )
            )
        )
    if query.group is not None:
        group = rbac.group_by_name(session, query.group)
        where.append(
            User.id.in_(select(group_members.c.user_id).where(group_members.c.group_id == group.id))
        )
    return where


@operation(
    bp,
    "GET",
    "/users",
    summary="Search users",
    tag="Users",
    permission=Permission.USERS_READ,
    query=UserQuery,
    response=UserPage,
)
def list_users(caller: Caller, query: UserQuery) -> UserPage:
    """Users in the order of their email addresses, a page at a time; the filters combine."""
    return search_users(db.session(), query)


def search_users(session: Session, query: UserQuery) -> UserPage:
    """The page of users a query asks for (the API's search and the console's list)."""
    after = decode_cursor(query.cursor, 1)
    statement = select(User).options(selectinload(User.roles)).order_by(User.email)
    for condition in user_filters(session, query):
        statement = statement.where(condition)
    if after is not None:
        statement = statement.where(User.email > after[0])
    users = list(session.execute(statement.limit(query.limit + 1)).scalars())
    more = len(users) > query.limit
    users = users[: query.limit]
    return UserPage(
        items=[user_out(u) for u in users],
        next_cursor=encode_cursor(users[-1].email) if more else None,
    )


@operation(
    bp,
    "POST",
    "/users",
    summary="Create a user",
    tag="Users",
    permission=Permission.USERS_WRITE,
    body=UserCreate,
    response=UserOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_user(caller: Caller, body: UserCreate) -> UserOut:
    """The password must meet the password policy. Without a password the account gets an
    unusable random one and the user is mailed the password reset link, with which they
    choose theirs. An email address another account has is a 409."""
    if body.roles:
        authorize(caller, Permission.ROLES_ASSIGN)
    user = management.create_user(
        db.session(),
        runtime(),
        body.email,
        body.password,
        roles=body.roles,
        verified=body.email_verified,
        name=body.name,
        actor=caller.principal,
        client_id=caller.client_id,
    )
    return user_out(user)


@operation(
    bp,
    "GET",
    "/users/<uuid:user_id>",
    summary="Read a user",
    tag="Users",
    permission=Permission.USERS_READ,
    response=UserOut,
    etag=True,
)
def read_user(caller: Caller, user_id: uuid.UUID) -> UserOut:
    return user_out(get_user(db.session(), user_id))


@operation(
    bp,
    "PATCH",
    "/users/<uuid:user_id>",
    summary="Change a user",
    tag="Users",
    permission=Permission.USERS_WRITE,
    body=UserUpdate,
    response=UserOut,
    etag=True,
    errors=(409,),
)
def update_user(caller: Caller, user_id: uuid.UUID, body: UserUpdate) -> UserOut:
    """Change the name, the email address or whether it is verified. Roles are given
    through /assignments, disabling through /users/{user_id}/disable: anything else in the
    body is refused."""
    session = db.session()
    user = get_user(session, user_id, lock=True)
    require_match(user_out(user))
    management.update_user(
        session,
        user,
        name=body.name if "name" in body.model_fields_set else management.UNCHANGED,
        email=body.email,
        email_verified=body.email_verified,
        actor=caller.principal,
        client_id=caller.client_id,
    )
    return user_out(user)


def _set_disabled(caller: Caller, user_id: uuid.UUID, disabled: bool) -> UserOut:
    session = db.session()
    user = get_user(session, user_id, lock=True)
    management.set_disabled(
        session,
        user,
        disabled,
        access_token_lifetime=runtime().settings.access_token_lifetime,
        actor=caller.principal,
        client_id=caller.client_id,
    )
    return user_out(user)


@operation(
    bp,
    "POST",
    "/users/<uuid:user_id>/disable",
    summary="Disable a user",
    tag="Users",
    permission=Permission.USERS_WRITE,
    response=UserOut,
    etag=True,
    errors=(409,),
)
def disable_user(caller: Caller, user_id: uuid.UUID) -> UserOut:
    """The user's login sessions end and their refresh and access tokens stop working at
    once. The last active administrator cannot be disabled (409)."""
    return _set_disabled(caller, user_id, True)


@operation(
    bp,
    "POST",
    "/users/<uuid:user_id>/enable",
    summary="Enable a user",
    tag="Users",
    permission=Permission.USERS_WRITE,
    response=UserOut,
    etag=True,
)
def enable_user(caller: Caller, user_id: uuid.UUID) -> UserOut:
    """The user may sign in again; the grants ended by disabling stay ended."""
    return _set_disabled(caller, user_id, False)


@operation(
    bp,
    "DELETE",
    "/users/<uuid:user_id>",
    summary="Delete a user",
    tag="Users",
    permission=Permission.USERS_WRITE,
    status=204,
    errors=(409,),
)
def delete_user(caller: Caller, user_id: uuid.UUID) -> None:
    """Erased at once (GDPR Art. 17): sessions end, tokens are revoked, clients that
    registered a security_event_uri are told, the audit trail keeps its records with the
    person taken out. The last active administrator cannot be deleted (409)."""
    session = db.session()
    Erasure(session, runtime()).erase(
        get_user(session, user_id, lock=True),
        requested_by=caller.user_id,
        actor=caller.principal,
        client_id=caller.client_id,
    )
