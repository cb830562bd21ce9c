#!/usr/bin/env python3
"""Fill an identity database on PostgreSQL with a population at scale, for benchmarks.

    python bench/populate.py --database-url postgresql://postgres@127.0.0.1/identity_bench
    python bench/populate.py --database-url URL --users 10000 --grants 100000  # a quick one

The database must hold identity's schema already (``identity init`` or ``identity db
upgrade``); ``bench/run.py --populated`` creates one and calls this on it. It adds, through
COPY (psycopg's ``cursor.copy``):

- ``--clients`` relying parties (code flow with refresh tokens, as ``identity clients
  create`` registers them);
- ``--users`` verified accounts, ``user<N>@populate.example.org``. Every one has the same
  password, PASSWORD below, hashed once: argon2id with identity's default parameters costs
  about 30 ms of CPU per hash, a million of them would take hours, and a benchmark signing
  them in needs to know their password anyway;
- ``--grants`` grants spread evenly over the users, each to a different client of its user:
  per grant, the consent (``consents``) and the family's current refresh token
  (``refresh_tokens``, offline_access, unrotated, not bound to a session), as the code flow
  stores them;
- ``--revocations`` revoked access-token keys (``token_revocations``): 70 % single tokens
  (``jti:``), 20 % grant families (``gid:``) and 10 % users (``sub:``), all unexpired for an
  hour so that they stay in force for the whole run.

To be fast (10 million grants in minutes, not hours) it drops the tables' plain secondary
indexes, and the primary keys and unique constraints of the grant tables, before loading
and builds them again after (one sort each, instead of ten million random insertions into
an index larger than PostgreSQL's buffers), all in one transaction; and when the account
is a superuser it skips the foreign-key triggers for its own session
(``session_replication_role = replica``): the rows it writes reference only rows it wrote.
Then ``VACUUM (ANALYZE)``, so the planner knows the new sizes and autovacuum does not start
in the middle of a measurement. Data is random but reproducible (``--seed``).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DOMAIN = "populate.example.org"
PASSWORD = "populated-account-password"  # noqa: S105 - every populated account's, on purpose
SCOPE = "openid profile email offline_access"
TABLES = ("clients", "users", "consents", "refresh_tokens", "token_revocations")
# Tables whose every constraint but the foreign keys is rebuilt after the load (users' and
# clients' keys are referenced by foreign keys, and stay).
LOOSE = ("consents", "refresh_tokens", "token_revocations")
BATCH = 20_000  # rows formatted per write to the COPY stream
REDRAW = 0.2  # seconds between redraws of the progress bar


def fail(message: str) -> None:
    print(f"populate: {message}", file=sys.stderr)
    sys.exit(2)


def email(index: int, domain: str = DOMAIN) -> str:
    return f"user{index}@{domain}"


class Progress:
    """A one-line progress bar on standard error (a line per tenth when not a terminal)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, max(total, 1), 0
        self.started = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.tenth = 0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self.shown >= REDRAW:
            self.shown = now
            self._show("\r")
        elif not self.tty and self.done * 10 // self.total > self.tenth:
            self.tenth = self.done * 10 // self.total
            self._show("")
            print(file=sys.stderr)

    def close(self) -> None:
        if self.tty or self.tenth < 10:  # noqa: PLR2004 - tenths
            self._show("\r" if self.tty else "")
            print(file=sys.stderr)

    def _show(self, prefix: str) -> None:
        share = min(self.done / self.total, 1.0)
        bar = "#" * int(share * 30)
        elapsed = time.monotonic() - self.started
        print(
            f"{prefix}{self.label:<18} [{bar:<30}] {share:4.0%} "
            f"{self.done:>11,}/{self.total:,} {elapsed:6.1f} s",
            end="",
            file=sys.stderr,
            flush=True,
        )


def dashed(hex32: str) -> str:
    """A UUID's usual text form (as str(uuid.UUID) writes it) from 32 hex digits."""
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def password_hash() -> str:
    """PASSWORD hashed as identity would with its default argon2id parameters (so that a
    sign-in neither rehashes it nor costs less than a real account's)."""
    from identity.passwords import Hasher
    from identity.settings import Settings

    fields = Settings.model_fields
    return Hasher(
        int(fields["argon2_time_cost"].default),
        int(fields["argon2_memory_cost"].default),
        int(fields["argon2_parallelism"].default),
    ).hash(PASSWORD)


@dataclass
class Counts:
    clients: int = 0
    users: int = 0
    grants: int = 0
    revocations: int = 0
    seconds: float = 0.0


class Ids:
    """Random 128-bit ids in PostgreSQL's uuid text form (32 hex digits), reproducibly."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def many(self, count: int) -> list[str]:
        blob = self.rng.randbytes(16 * count).hex()
        return [blob[i : i + 32] for i in range(0, 32 * count, 32)]

    def hashes(self, count: int) -> list[str]:  # stand-ins for SHA-256 hex digests
        blob = self.rng.randbytes(32 * count).hex()
        return [blob[i : i + 64] for i in range(0, 64 * count, 64)]


def _secondary_indexes(conn, tables: tuple[str, ...]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(name, CREATE INDEX statement) of the plain indexes, not those behind a constraint."""
    rows = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i"
        " WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [list(tables)],
    ).fetchall()
    return [(str(name), str(definition)) for name, definition in rows]


class Filler:
    """Writes each table's rows through COPY on one connection, in one transaction."""

    def __init__(self, cursor, *, users: int, grants: int, clients: int, domain: str, seed: int):  # type: ignore[no-untyped-def]
        self.cursor, self.users, self.grants, self.domain = cursor, users, grants, domain
        self.rng = random.Random(seed)  # noqa: S311 - benchmark data, reproducible on purpose
        self.ids = Ids(self.rng)
        self.now = datetime.now(UTC)
        self.stamp = self.now.isoformat()
        self.client_ids = self.ids.many(clients) if grants else []
        self.user_ids: list[str] = []
        self.families: list[str] = []  # a sample of grant families, for gid: revocations

    def copy(self, table: str, columns: str, batches: Iterator[list[str]], total: int) -> None:
        if not total:
            return
        bar = Progress(table, total)
        with self.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for lines in batches:
                copy.write("".join(lines))
                bar.update(len(lines))
        bar.close()

    def clients(self) -> None:
        meta = {
            "token_endpoint_auth_method": "client_secret_basic",
            "accepted_auth_methods": ["client_secret_basic", "client_secret_post"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "post_logout_redirect_uris": [],
            "scope": SCOPE,
            "id_token_signed_response_alg": "ES256",
        }
        secrets = self.ids.hashes(len(self.client_ids))
        lines = []
        for n, pk in enumerate(self.client_ids):
            app = json.dumps({**meta, "redirect_uris": [f"https://rp{n}.{self.domain}/cb"]})
            lines.append(
                f"{pk}\tpopulate-rp-{n}\t{secrets[n]}\tPopulated app {n}\t{app}"
                f"\tf\tf\tcli\t{self.stamp}\t{self.stamp}\n"
            )
        columns = (
            "id, client_id, client_secret_hash, name, meta, first_party, resource_server,"
            " registered_via, created_at, updated_at"
        )
        self.copy("clients", columns, iter([lines]), len(lines))

    def accounts(self) -> None:
        hashed = password_hash()
        stamp = self.stamp

        def batches() -> Iterator[list[str]]:
            for start in range(0, self.users, BATCH):
                chunk = self.ids.many(min(BATCH, self.users - start))
                self.user_ids.extend(chunk)
                yield [
                    f"{uid}\t{email(start + n, self.domain)}\tPopulated User {start + n}"
                    f"\t{hashed}\t{stamp}\t{stamp}\t{stamp}\t{stamp}\n"
                    for n, uid in enumerate(chunk)
                ]

        columns = (
            "id, email, name, password_hash, email_verified_at, created_at, updated_at,"
            " password_changed_at"
        )
        self.copy("users", columns, batches(), self.users)

    def grant_batches(self) -> Iterator[list[tuple[str, str, str]]]:
        """(user, client, authorised at) of every grant. Grant g belongs to user g % users,
        so each user gets grants // users of them or one more, each to a different client
        (g // users is its rank among its user's grants)."""
        users, clients = self.users, len(self.client_ids)
        # A scattered first client per user (Knuth's multiplicative hash), the same in both
        # passes over the grants without storing it.
        first = [(n * 2654435761 >> 7) % clients for n in range(users)]
        times = [(self.now - timedelta(minutes=m)).isoformat() for m in range(0, 43200, 7)]
        for start in range(0, self.grants, BATCH):
            batch = []
            for g in range(start, min(start + BATCH, self.grants)):
                owner = g % users
                client = self.client_ids[(first[owner] + g // users) % clients]
                batch.append((self.user_ids[owner], client, times[g % len(times)]))
            yield batch

    def consents(self) -> None:
        scopes = json.dumps(SCOPE.split())

        def batches() -> Iterator[list[str]]:
            for grants in self.grant_batches():
                ids = self.ids.many(len(grants))
                yield [
                    f"{ids[n]}\t{user}\t{client}\t{scopes}\t{when}\t{when}\t{when}\n"
                    for n, (user, client, when) in enumerate(grants)
                ]

        columns = "id, user_id, client_pk, scopes, created_at, updated_at, last_authorized_at"
        self.copy("consents", columns, batches(), self.grants)

    def refresh_tokens(self, sample: int) -> None:
        expires = (self.now + timedelta(days=30)).isoformat()
        family_expires = (self.now + timedelta(days=90)).isoformat()

        def batches() -> Iterator[list[str]]:
            for grants in self.grant_batches():
                hashes, families = self.ids.hashes(len(grants)), self.ids.many(len(grants))
                self.families.extend(families[:sample])
                yield [
                    f"{hashes[n]}\t{families[n]}\t{client}\t{user}\t{SCOPE}\t{when}"
                    f'\t["pwd"]\t{when}\t{expires}\t{family_expires}\n'
                    for n, (user, client, when) in enumerate(grants)
                ]

        columns = (
            "token_hash, family_id, client_pk, user_id, scope, auth_time, amr, issued_at,"
            " expires_at, family_expires_at"
        )
        self.copy("refresh_tokens", columns, batches(), self.grants)

    def revocations(self, count: int) -> int:
        """Keys as identity.revocation writes them: a token's jti (16 random bytes in
        base64url), a grant family's or a user's UUID; revoked in the last 10 minutes."""
        rng = self.rng
        families = min(count * 2 // 10, len(self.families))
        users = min(count // 10, len(self.user_ids))
        keys = [
            "jti:" + base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("=")
            for _ in range(count - families - users)
        ]
        keys += [f"gid:{dashed(family)}" for family in rng.sample(self.families, families)]
        keys += [f"sub:{dashed(user)}" for user in rng.sample(self.user_ids, users)]
        lines = []
        for key in dict.fromkeys(keys):
            at = self.now - timedelta(seconds=rng.randrange(600))
            lines.append(f"{key}\t{at.isoformat()}\t{(at + timedelta(hours=1)).isoformat()}\n")
        self.copy("token_revocations", "key, revoked_at, expires_at", iter([lines]), len(lines))
        return len(lines)


def _loose_constraints(conn, tables: tuple[str, ...]) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """(table, name, definition) of the primary keys and unique constraints that no foreign
    key depends on: they can be dropped for the load and added back after, one sort each."""
    rows = conn.execute(
        "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('p', 'u')"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint f"
        "  WHERE f.contype = 'f' AND f.conindid = c.conindid)",
        [list(tables)],
    ).fetchall()
    return [(str(table), str(name), str(definition)) for table, name, definition in rows]


def fill(
    database_url: str,
    *,
    users: int,
    grants: int,
    revocations: int,
    clients: int = 100,
    domain: str = DOMAIN,
    seed: int = 14,
) -> Counts:
    import psycopg

    if grants and -(-grants // max(users, 1)) > clients:
        need = -(-grants // max(users, 1))
        fail(f"{grants:,} grants over {users:,} users need at least {need} clients")
    started = time.monotonic()
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        _prepare(conn, domain)
        indexes = _secondary_indexes(conn, TABLES)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        constraints = _loose_constraints(conn, LOOSE)
        for table, name, _ in constraints:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        filler = Filler(
            cursor, users=users, grants=grants, clients=clients, domain=domain, seed=seed
        )
        filler.clients()
        filler.accounts()
        filler.consents()
        filler.refresh_tokens(sample=-(-revocations // max(1, -(-grants // BATCH))))
        revoked = filler.revocations(revocations)
        bar = Progress("indexes", len(indexes) + len(constraints))
        for table, name, definition in constraints:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            bar.update(1)
        for _, definition in indexes:
            conn.execute(definition)
            bar.update(1)
        bar.close()
        conn.commit()
    with psycopg.connect(database_url, autocommit=True) as conn:
        print("populate: VACUUM (ANALYZE) ...", file=sys.stderr)
        conn.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
    return Counts(len(filler.client_ids), users, grants, revoked, time.monotonic() - started)


def _prepare(conn, domain: str) -> None:  # type: ignore[no-untyped-def]
    present = conn.execute("SELECT to_regclass('users'), to_regclass('refresh_tokens')")
    if None in (present.fetchone() or (None,)):
        fail("no identity schema in this database: run `identity init` on it first")
    taken = conn.execute("SELECT 1 FROM users WHERE email LIKE %s LIMIT 1", [f"%@{domain}"])
    if taken.fetchone():
        fail(f"this database already holds users @{domain}: populate a fresh one")
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if (superuser.fetchone() or (False,))[0]:
        # Every row written references rows written before it: skip the FK triggers.
        conn.execute("SET session_replication_role = replica")
    else:
        print("populate: not a superuser: foreign keys checked row by row", file=sys.stderr)
    conn.execute("SET maintenance_work_mem = '512MB'")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True, help="an identity database (PostgreSQL)")
    parser.add_argument("--users", type=int, default=1_000_000, help="accounts (1000000)")
    parser.add_argument("--grants", type=int, default=10_000_000, help="grants (10000000)")
    parser.add_argument("--revocations", type=int, default=5_000, help="revoked keys (5000)")
    parser.add_argument("--clients", type=int, default=100, help="relying parties (100)")
    parser.add_argument("--seed", type=int, default=14, help="random seed (14)")
    args = parser.parse_args(argv)
    for name in ("users", "grants", "revocations", "clients"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} cannot be negative")
    if not args.database_url.startswith(("postgresql:", "postgres:", "postgresql+psycopg:")):
        parser.error("--database-url must be a PostgreSQL URL")
    args.database_url = args.database_url.replace("postgresql+psycopg:", "postgresql:", 1)
    return args


def main(argv: list[str]) -> None:
    import psycopg

    args = parse_args(argv)
    try:
        counts = fill(
            args.database_url,
            users=args.users,
            grants=args.grants,
            revocations=args.revocations,
            clients=args.clients,
            seed=args.seed,
        )
    except psycopg.OperationalError as error:
        fail(f"cannot use the database: {str(error).strip()}")
    print(
        f"populate: {counts.clients:,} clients, {counts.users:,} users, {counts.grants:,}"
        f" grants, {counts.revocations:,} revocations in {counts.seconds:.0f} s"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
