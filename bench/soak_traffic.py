"""The soak's load generator (bench/soak.py): a mix of OAuth traffic from Python threads,
spread over several servers, and a ledger of every write the servers acknowledged.

Every HTTP request becomes a ``Sample``. Each operation is what a real party does:

- ``flow``: a browser's authorization code flow with PKCE: /authorize, the sign-in form
  (with its CSRF token), the consent form, then the client's code exchange;
- ``refresh``: a client rotates its refresh token (one family at a time, always with the
  newest token, as a client must);
- ``introspect``, ``userinfo``: a resource server and a client use a recent access token;
- ``client_credentials``: a service gets a token;
- ``register``: dynamic client registration (RFC 7591), a few per minute.

The ledger keeps what got a success answer: the newest refresh token of every family, the
consents given, the clients registered. A write whose answer never came (a killed worker,
a database restart) may or may not have happened, so its family leaves the ledger.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from soak_model import (
    REDIRECT_URI,
    SCOPE,
    Client,
    Context,
    Failed,
    Family,
    Ledger,
    Sample,
    authorization_request,
    hidden,
)

TIMEOUT = 15.0
DYNAMIC_SHARE = 0.5  # of code flows, once clients have registered dynamically
WEIGHTS = {"flow": 10, "refresh": 25, "introspect": 20, "userinfo": 20, "client_credentials": 25}


class Traffic:
    def __init__(self, ctx: Context, clock: Callable[[], float], seed: int = 0) -> None:
        self.ctx = ctx
        self.clock = clock
        self.ledger = Ledger()
        self.samples: list[Sample] = []
        self.problems: list[str] = []  # answers that break a promise (not merely errors)
        self.lock = threading.Lock()
        self.idle: deque[Family] = deque()  # families no thread is rotating right now
        self.idle_users = deque(ctx.users)  # users not in a flow right now
        self.same_user_at_once = False
        self.access_tokens: deque[str] = deque(maxlen=200)
        self.random = random.Random(seed)  # noqa: S311 - picks operations, not secrets
        self.local = threading.local()
        self.operations = 0
        self.stop = threading.Event()
        self.rate = 0.0  # operations per second; 0 runs closed-loop, as fast as answered
        self.next_slot = 0.0

    # Requests --------------------------------------------------------------------------

    def session(self, server: int) -> requests.Session:
        sessions = getattr(self.local, "sessions", None)
        if sessions is None:
            sessions = self.local.sessions = {}
        if server not in sessions:
            sessions[server] = requests.Session()
        return sessions[server]  # type: ignore[no-any-return]

    def request(
        self,
        op: str,
        server: int,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        http: requests.Session | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        http = http or self.session(server)
        start = self.clock()
        try:
            response = http.request(
                method,
                self.ctx.servers[server] + path,
                timeout=TIMEOUT,
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as error:
            self.record(Sample(start, self.clock(), op, server, 0, False))
            raise Failed(f"{op}: {type(error).__name__}") from None
        ok = response.status_code in expect
        self.record(Sample(start, self.clock(), op, server, response.status_code, ok))
        if not ok:
            raise Failed(f"{op}: {response.status_code}", response.status_code)
        return response

    def record(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(f"{self.clock():.1f} s: {text}")

    def pick_server(self) -> int:
        return self.random.randrange(len(self.ctx.servers))

    # Operations ------------------------------------------------------------------------

    def flow(self, client: Client | None = None) -> None:
        """A user not busy in another flow signs in to a client: a person uses one browser
        at a time. (Two concurrent first consents of one user to one client meet a race
        in identity: see the soak section of docs/operations.md.)"""
        if self.same_user_at_once:  # reproduces that race
            self.sign_in_flow(
                client or self.pick_flow_client(), *self.random.choice(self.ctx.users)
            )
            return
        with self.lock:
            if not self.idle_users:
                return
            email, password = self.idle_users.popleft()
        try:
            self.sign_in_flow(client or self.pick_flow_client(), email, password)
        finally:
            with self.lock:
                self.idle_users.append((email, password))

    def sign_in_flow(self, client: Client, email: str, password: str) -> None:
        """Authorization code flow with sign-in, consent when asked, and PKCE."""
        server = self.pick_server()
        query, verifier, state = authorization_request(client)
        consented = False
        with requests.Session() as browser:  # a fresh browser: its own cookies
            response = self.request(
                "authorize", server, "GET", "/authorize?" + query, expect=(302, 303), http=browser
            )
            for _ in range(8):
                if response.is_redirect:
                    location = response.headers["Location"]
                    parts = urlsplit(location)
                    if location.startswith(REDIRECT_URI):
                        params = parse_qs(parts.query)
                        if params.get("state") != [state] or "code" not in params:
                            self.problem(f"flow: bad redirect {params.keys()}")
                            raise Failed("flow: bad redirect")
                        if consented:
                            with self.lock:
                                self.ledger.consents.add((email, client.client_id))
                        self.exchange(client, params["code"][0], verifier)
                        return
                    path = parts.path + (f"?{parts.query}" if parts.query else "")
                    op = "sign-in page" if parts.path == "/sign-in" else "authorize"
                    response = self.request(
                        op, server, "GET", path, expect=(200, 302, 303), http=browser
                    )
                    continue
                html = response.text
                if 'action="/sign-in"' in html:
                    form = {
                        "csrf_token": hidden(html, "csrf_token"),
                        "next": hidden(html, "next"),
                        "email": email,
                        "password": password,
                    }
                    response = self.request(
                        "sign-in",
                        server,
                        "POST",
                        "/sign-in",
                        data=form,
                        expect=(302, 303),
                        http=browser,
                    )
                elif 'action="/authorize/consent"' in html:
                    form = {
                        "csrf_token": hidden(html, "csrf_token"),
                        "request_id": hidden(html, "request_id"),
                        "decision": "allow",
                    }
                    response = self.request(
                        "consent",
                        server,
                        "POST",
                        "/authorize/consent",
                        data=form,
                        expect=(302, 303),
                        http=browser,
                    )
                    consented = True
                else:
                    self.problem(f"flow: unexpected page {response.status_code} {response.url}")
                    raise Failed("flow: unexpected page")
        raise Failed("flow: too many steps")

    def exchange(self, client: Client, code: str, verifier: str) -> None:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        body = self.request(
            "token:code",
            self.pick_server(),
            "POST",
            "/oauth/token",
            data=form,
            headers={"Authorization": client.auth},
        ).json()
        self.access_tokens.append(body["access_token"])
        if "refresh_token" not in body:
            self.problem("code exchange: no refresh token for offline_access")
            return
        family = Family(client, body["refresh_token"])
        with self.lock:
            self.ledger.families.append(family)
            self.idle.append(family)

    def refresh(self) -> None:
        with self.lock:
            if not self.idle:
                return
            family = self.idle.popleft()
        try:
            self.rotate(family, self.pick_server())
        except Failed:
            return
        with self.lock:
            self.idle.append(family)

    def rotate(self, family: Family, server: int, op: str = "token:refresh") -> None:
        """Rotate a family; on no answer or a 5xx it leaves the ledger (outcome unknown);
        a 4xx for its newest token is a lost acknowledged write."""
        form = {"grant_type": "refresh_token", "refresh_token": family.token}
        try:
            response = self.request(
                op,
                server,
                "POST",
                "/oauth/token",
                data=form,
                headers={"Authorization": family.client.auth},
            )
        except Failed as failure:
            with self.lock:
                self.ledger.families.remove(family)
                self.ledger.uncertain += 1
            if HTTPStatus.BAD_REQUEST <= failure.status < HTTPStatus.INTERNAL_SERVER_ERROR:
                self.problem(f"the newest refresh token of a family was refused ({failure})")
            raise
        body = response.json()
        family.token = body["refresh_token"]
        family.rotations += 1
        self.access_tokens.append(body["access_token"])

    def token_in_use(self) -> str:
        return self.random.choice(self.access_tokens)

    def introspect(self) -> None:
        token = self.token_in_use()
        body = self.request(
            "introspect",
            self.pick_server(),
            "POST",
            "/oauth/introspect",
            data={"token": token},
            headers={"Authorization": self.ctx.resource.auth},
        ).json()
        if body.get("active") is not True:
            self.problem("introspection: a live access token is inactive")

    def userinfo(self) -> None:
        token = self.token_in_use()
        self.request(
            "userinfo",
            self.pick_server(),
            "GET",
            "/userinfo",
            headers={"Authorization": f"Bearer {token}"},
        )

    def client_credentials(self, client: Client | None = None, server: int | None = None) -> None:
        client = client or self.ctx.service
        self.request(
            "token:client",
            self.pick_server() if server is None else server,
            "POST",
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": client.auth},
        )

    def probe_limits(self) -> None:
        """Requests that Flask-Limiter counts in Redis, sent on purpose to every server (for
        while Redis is down, when each must fail closed)."""
        for server in range(len(self.ctx.servers)):
            with contextlib.suppress(Failed):
                self.register(server)
            query, _, _ = authorization_request(self.ctx.web)
            with contextlib.suppress(Failed):
                # No session: the request is stored while the user signs in, so it counts.
                self.request("authorize", server, "GET", "/authorize?" + query, expect=(302, 303))

    def register(self, server: int | None = None) -> None:
        metadata = {
            "client_name": f"soak {secrets.token_hex(4)}",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": SCOPE,
        }
        body = self.request(
            "register",
            self.pick_server() if server is None else server,
            "POST",
            "/oauth/register",
            json=metadata,
            expect=(201,),
            headers={"Authorization": f"Bearer {self.ctx.dcr_token}"},
        ).json()
        with self.lock:
            self.ledger.registered.append(Client(body["client_id"], body["client_secret"]))

    def pick_flow_client(self) -> Client:
        with self.lock:
            registered = list(self.ledger.registered)
        if registered and self.random.random() < DYNAMIC_SHARE:
            return self.random.choice(registered)
        return self.ctx.web

    # Threads ---------------------------------------------------------------------------

    def wait_for_slot(self) -> bool:
        """Open loop: operations start at the set rate, whatever the answers take; a
        backlog older than half a second is dropped rather than sent as a burst."""
        if not self.rate:
            return not self.stop.is_set()
        with self.lock:
            now = self.clock()
            slot = max(self.next_slot, now - 0.5)
            self.next_slot = slot + 1 / self.rate
        while not self.stop.is_set():
            delay = slot - self.clock()
            if delay <= 0:
                return True
            self.stop.wait(min(delay, 0.25))
        return False

    def worker(self) -> None:
        names = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        operations = {name: getattr(self, name) for name in names}
        while self.wait_for_slot():
            name = self.random.choices(names, weights)[0]
            try:
                operations[name]()
            except Failed:
                pass
            except Exception as error:  # noqa: BLE001 - a generator bug must not stop the soak
                self.problem(f"load generator: {name}: {type(error).__name__}: {error}")
            with self.lock:
                self.operations += 1

    def registrar(self, every: float) -> None:
        while not self.stop.wait(every):
            with contextlib.suppress(Failed):
                self.register()

    def start(self, threads: int, register_every: float = 0.0) -> list[threading.Thread]:
        self.stop.clear()
        self.next_slot = self.clock()
        started = [threading.Thread(target=self.worker, daemon=True) for _ in range(threads)]
        if register_every:
            started.append(
                threading.Thread(target=self.registrar, args=(register_every,), daemon=True)
            )
        for thread in started:
            thread.start()
        return started

    def join(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT + 5)
