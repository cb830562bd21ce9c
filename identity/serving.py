"""Production serving: granian (default) or gunicorn (``identity serve --server``).

Both run the app in ``workers`` processes forked from a master that holds no database
connection; each worker builds its own app after the fork (no preload), so no connection or
thread crosses a fork. SIGTERM stops accepting new connections and lets in-flight requests
finish within ``GRACEFUL_TIMEOUT`` seconds; the master then logs ``server.stopped`` and exits
0. Every log line, the servers' own included, is JSON on standard error; ``server.listening``
("listening on http://HOST:PORT") says where it serves. A port that something else already
listens on is refused before any worker starts (``AddressInUse``): granian binds with
SO_REUSEPORT, so a second server would otherwise share the port with the first.

granian's master reacts to a signal in the signal handler itself, by setting a
``threading.Event``: a second signal that lands while the first one's handler holds the
Event's lock runs the handler again inside it, which waits for that lock forever, and every
further signal nests one more (then RecursionError, and a master that never stops its
workers). Its workers, forked before they install their own handlers, drop a SIGTERM that
comes while they are still loading the app (or, by CPython's after-fork cleanup, right
after the fork), then serve until the master kills them 30 seconds later. ``SignalRelay``
replaces both: the handlers only queue the signal number, and a thread acts on it.

granian is the default because it answers about three times as many requests per second as
gunicorn's sync workers on the same cores (bench/, docs/performance.md): its HTTP parsing
and socket handling run in Rust, outside the GIL. A worker runs the WSGI app in
``GRANIAN_THREADS`` Python threads, so a request that waits on the database does not hold
the others up; that is below the default pool of ``IDENTITY_DATABASE_POOL_SIZE`` (5)
connections, so no thread ever waits for a connection.

Metrics: ``prepare_metrics_dir`` sets ``PROMETHEUS_MULTIPROC_DIR`` to an emptied folder
before anything imports prometheus_client (which picks its mode at import time, and the
forked workers inherit the master's modules), so every worker writes its values there and
a scrape of any worker adds them all up. gunicorn's ``child_exit`` marks a gone worker dead
(its live gauges no longer count); granian has no such hook, so /metrics drops the live
gauges of processes that no longer exist (identity.metrics.reap_dead_workers).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from identity.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # identity.telemetry reads it

SERVERS = ("granian", "gunicorn")
GRACEFUL_TIMEOUT = 30
GRANIAN_THREADS = 4
MAX_HEADER_BYTES = 72 * 1024

# How long a worker's early stop signal waits for granian's own handler after the app loaded.
HANDOVER_TIMEOUT = 10.0
# Then how long it lets granian's worker arm its stop event before sending the signal: a
# signal between the handler and the event's callback leaves the worker waiting for good.
HANDOVER_SETTLE = 0.2

WSGIApp = Callable[..., Any]
log = logging.getLogger("identity.serving")


class ServeError(Exception):
    """The server cannot start; the message is one line for the operator."""


class AddressInUse(ServeError):
    pass


def display_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_address(host: str, port: int) -> None:
    """Refuse an address another socket listens on, before any worker starts.

    granian's workers bind with SO_REUSEPORT, which the kernel grants to every process of
    the same user: a second ``identity serve`` on a busy port would start without a word and
    share the connections with the first. This probe binds as an ordinary server does
    (SO_REUSEADDR, so connections of a previous run in TIME_WAIT do not count), without
    SO_REUSEPORT, and lets go at once. It cannot see a server that starts in the same
    instant; it is there for the mistake of starting one twice.
    """
    address = display_address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"cannot listen on {address}: {error.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise AddressInUse(
                    f"cannot listen on {address}: address in use (is another server running?)"
                ) from None
            raise ServeError(f"cannot listen on {address}: {error.strerror}") from None


def log_listening(host: str, port: int) -> None:
    url = f"http://{display_address(host, port)}"
    log.info("listening on %s", url, extra={"event": "server.listening", "url": url})


def log_config(level: str, server_loggers: dict[str, str]) -> dict[str, Any]:
    """logging.dictConfig for the master and the workers: JSON lines on standard error."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "identity.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                # Request lines in batches: see BatchingStreamHandler.
                "class": "identity.logs.BatchingStreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            name: {"level": logger_level, "handlers": ["stderr"], "propagate": False}
            # The start and stop lines ("listening on ...") show at any log level.
            for name, logger_level in {**server_loggers, log.name: "INFO"}.items()
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }


def prepare_metrics_dir(settings: Settings) -> str | None:
    """The workers' metrics folder (IDENTITY_METRICS_DIR, or ``metrics`` in the instance
    folder), created and emptied of a previous run's values, in ``PROMETHEUS_MULTIPROC_DIR``.
    Call before the app is built: prometheus_client reads the variable when imported."""
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        # Imported already in single-process mode (``serve`` called from within a Python
        # process that built an app): the workers inherit that mode, each counting alone.
        log.warning(
            "metrics count per worker: prometheus_client was imported before serving",
            extra={"event": "server.metrics_per_worker"},
        )
        return None
    folder = (settings.metrics_dir or settings.instance_path / "metrics").resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    except OSError as error:
        # Name the setting to fix: the metrics folder's own, or the instance folder it
        # lives in by default (as every other command names it).
        setting = "IDENTITY_METRICS_DIR" if settings.metrics_dir else "IDENTITY_INSTANCE_PATH"
        raise ServeError(
            f"{setting}: cannot use the metrics folder {folder}: {error.strerror}"
        ) from None
    os.environ[MULTIPROC_ENV] = str(folder)
    return str(folder)


def _worker_gone(_arbiter: Any, worker: Any) -> None:
    """gunicorn's ``child_exit``, in the master: the worker's live gauges stop counting."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(worker.pid)


# gunicorn ------------------------------------------------------------------------------


def gunicorn_options(host: str, port: int, workers: int, level: str) -> dict[str, Any]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": "sync",
        "timeout": 30,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "keepalive": 5,
        # X-Forwarded-* handling belongs to IDENTITY_TRUSTED_PROXIES alone.
        "forwarded_allow_ips": "",
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "limit_request_field_size": 8190,
        "accesslog": None,
        "proc_name": "identity",
        # gunicorn 25+ opens a control socket at one per-user path ($XDG_RUNTIME_DIR or
        # ~/.gunicorn/gunicorn.ctl): a second instance on the host takes it over, and it lets
        # any process of that user resize or stop the server. Nothing here uses it.
        "control_socket_disable": True,
        # After the master bound its sockets, before the first worker starts.
        "when_ready": lambda _arbiter: log_listening(host, port),
        "child_exit": _worker_gone,
        "logconfig_dict": log_config(
            level, {"gunicorn.error": level, "gunicorn.access": "WARNING"}
        ),
    }


def _serve_gunicorn(load: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication  # optional dependency (the fallback)

    class WSGIServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                # Settings newer than the oldest supported gunicorn are skipped where unknown.
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> WSGIApp:
            return load()

    WSGIServer().run()


# granian -------------------------------------------------------------------------------


def granian_options(
    host: str, port: int, workers: int, level: str, threads: int = GRANIAN_THREADS
) -> dict[str, Any]:
    # granian is imported where it serves: `identity` starts without it, and gunicorn
    # serves where it is not installed.
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    return {
        "address": host,
        "port": port,
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": threads,
        "http": HTTPModes.http1,
        # WSGI has no websockets; left on, granian logs that it turns them off.
        "websockets": False,
        # hyper reads the request line and headers into a buffer capped here at 72 KiB
        # instead of 408 KiB (a larger header block: 431; a request line over 64 KiB: 414),
        # and gives them 30 seconds.
        "http1_settings": HTTP1Settings(
            header_read_timeout=30_000, keep_alive=True, max_buffer_size=MAX_HEADER_BYTES
        ),
        "log_level": LogLevels(level.lower()),
        "log_dictconfig": log_config(level, {"_granian": level, "granian.access": "WARNING"}),
        # identity.request logs one line per request; the access log would repeat it.
        "log_access": False,
        # A worker that dies is replaced, as gunicorn does.
        "respawn_failed_workers": True,
        "workers_kill_timeout": GRACEFUL_TIMEOUT,
    }


class SignalRelay:
    """Signal handling for granian's master and its workers' first moments.

    In the master, SIGINT, SIGTERM and SIGHUP only queue their number (``SimpleQueue.put``
    is documented as safe in a signal handler: no lock, so a handler that runs inside
    another one cannot wait for it), and the thread ``signal-relay`` calls granian's
    ``signal_handler_interrupt`` or ``signal_handler_reload`` outside any handler. However
    many signals come, the master stops once, as for the first.

    A worker is forked with these handlers and keeps them until granian installs its own,
    after the app is loaded. A SIGINT or SIGTERM in that time (the master stopping, or an
    operator) goes into ``early_stop``, and the worker exits (code 0) as soon as the app is
    loaded: it has served nothing, so there is nothing to finish. One that comes between the
    loader's return and granian's handler is sent again, once, by the thread
    ``signal-handover``, so the worker stops as any other.

    The master forks with SIGINT and SIGTERM blocked, and the child unblocks them only after
    Python's own after-fork cleanup: a signal that reached the child before that cleanup
    would be forgotten by it (CPython clears signals that arrived "before the fork"), and a
    master that stops right after starting a worker sends one in that very moment.
    """

    STOP = frozenset({signal.SIGINT, signal.SIGTERM})

    def __init__(self, server: Any) -> None:
        self.server = server
        self.master = os.getpid()
        self.signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.early_stop: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.loaded = threading.Event()
        self.thread: threading.Thread | None = None
        self.active = False
        self.mask_before_fork: set[int | signal.Signals] | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if os.getpid() == self.master:
            self.signals.put(signum)
        elif signum != signal.SIGHUP:
            self.early_stop.put(signum)

    def install(self) -> None:
        """In the master, after granian's handlers and before the first fork."""
        self.thread = threading.Thread(target=self._relay, name="signal-relay", daemon=True)
        self.thread.start()
        self.active = True
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork,
            after_in_child=self._after_fork,
        )
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.handle)

    def close(self) -> None:
        self.active = False  # fork hooks cannot be removed; they do nothing from now on
        if self.thread is not None:
            self.signals.put(None)
            self.thread.join(timeout=5)

    def _before_fork(self) -> None:
        if self.active and os.getpid() == self.master:
            self.mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, self.STOP)

    def _after_fork(self) -> None:
        # In the parent and in the child (which has a copy of the saved mask).
        if self.mask_before_fork is not None:
            mask, self.mask_before_fork = self.mask_before_fork, None
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _relay(self) -> None:
        stopping = False
        while (signum := self.signals.get()) is not None:
            if signum == signal.SIGHUP:
                self.server.signal_handler_reload()
                continue
            if not stopping:
                stopping = True
                log.info(
                    "stopping",
                    extra={"event": "server.stopping", "signal": signal.Signals(signum).name},
                )
            self.server.signal_handler_interrupt()

    def load_in_worker(self, load: Callable[[], WSGIApp]) -> WSGIApp:
        """granian's app loader, in each worker: ``load()``, with early stops kept."""
        threading.Thread(target=self._hand_over, name="signal-handover", daemon=True).start()
        app = load()
        if not self.early_stop.empty():
            # Asked to stop before it served anything: there is nothing to finish, so the
            # worker leaves now, exit code 0. (Handing the signal to granian this early can
            # reach its worker before that listens for it, which then never stops.)
            log.info("worker stopped before serving", extra={"event": "server.worker_stopped"})
            raise SystemExit(0)
        self.loaded.set()
        return app

    def _hand_over(self) -> None:
        self.loaded.wait()
        # A stop that came in the moment between the loader's return and granian's handler.
        signum = self.early_stop.get()  # usually never: the thread waits, idle, for good
        deadline = time.monotonic() + HANDOVER_TIMEOUT
        while signal.getsignal(signum) == self.handle:
            if time.monotonic() > deadline:
                log.warning(
                    "a stop signal came while the worker started and could not be passed on",
                    extra={"event": "server.signal_lost", "signal": signal.Signals(signum).name},
                )
                return
            time.sleep(0.005)
        # granian's handler is in place; the worker registers what stops it right after.
        time.sleep(HANDOVER_SETTLE)
        # Once only: granian's worker keeps one stop request until it serves; a second
        # one before then would wait (in the main thread) for the first to be taken.
        os.kill(os.getpid(), signum)


def _serve_granian(load: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
    from granian.server import Server  # see granian_options

    server = Server("identity", **options)
    relay = SignalRelay(server)
    server.on_startup(relay.install)
    server.on_startup(lambda: log_listening(options["address"], options["port"]))
    try:
        # Workers are forked; each calls ``load`` and serves what it returns.
        server.serve(target_loader=lambda *_: relay.load_in_worker(load), wrap_loader=False)
    finally:
        relay.close()


# Both ----------------------------------------------------------------------------------


def default_server() -> str:
    """granian, or gunicorn (with a warning) where granian is not installed."""
    try:
        import granian  # noqa: F401
    except ImportError:
        log.warning(
            "granian is not installed; serving with gunicorn (pip install granian)",
            extra={"event": "server.fallback"},
        )
        return "gunicorn"
    return "granian"


def serve_wsgi(
    load: Callable[[], WSGIApp],
    *,
    server: str = "granian",
    host: str,
    port: int,
    workers: int,
    log_level: str = "INFO",
    threads: int = GRANIAN_THREADS,
) -> None:
    """Serve the app ``load()`` returns in each worker until SIGTERM (or SIGINT)."""
    if server not in SERVERS:
        raise ValueError(f"unknown server: {server}")
    check_address(host, port)
    master = os.getpid()
    code: Any = 1  # unless the server returns, or exits with a code of its own
    try:
        if server == "granian":
            _serve_granian(load, granian_options(host, port, workers, log_level, threads))
        else:
            _serve_gunicorn(load, gunicorn_options(host, port, workers, log_level))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
        raise
    finally:
        # gunicorn's forked workers leave through this frame too; only the master reports.
        if os.getpid() == master:
            # The server has stopped; what is left is the interpreter's exit. A second
            # SIGTERM now (a process manager, an impatient operator) would kill it with the
            # default action, and turn a clean stop into "killed by signal 15".
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            log.info(
                "server stopped",
                extra={"event": "server.stopped", "server": server, "exit_code": code or 0},
            )


def run(settings: Settings, *, host: str, port: int, workers: int, server: str = "granian") -> None:
    def load() -> WSGIApp:
        # Imported in each worker, after the fork: the master only supervises.
        from identity import create_app, factory

        app = create_app(settings)
        factory.start_worker_threads(app)
        return app

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client.multiprocess import mark_process_dead

        # The master built an app to check the database: its pool gauges are not a worker's.
        mark_process_dead(os.getpid())
    serve_wsgi(
        load, server=server, host=host, port=port, workers=workers, log_level=settings.log_level
    )
