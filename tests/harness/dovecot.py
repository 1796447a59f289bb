"""Real Dovecot 2.3 servers for tests, on free loopback ports, in temporary directories.

Three shapes (see ``/work/shared/design.md``, "Testing against real things"):

``legacy``
    One ``inbox`` namespace with prefix ``INBOX.`` and separator ``.``, Maildir++ storage, no
    special-use attributes and no auto-created folders.
``modern``
    Separator ``/``, no prefix, sdbox storage, special-use folders Sent, Trash, Drafts, Junk and
    Archive auto-created and subscribed.
``gmail``
    Gmail's folder semantics as its IMAP shows them: separator ``/``, no prefix, sdbox, and the
    ``[Gmail]`` folders auto-created with Gmail's special uses (``All Mail`` ``\\All``, ``Starred``
    ``\\Flagged``, ``Important`` ``\\Important``, ``Sent Mail``, ``Drafts``, ``Spam``, ``Trash``) plus
    ``Chats``. Dovecot does not make All Mail a view: tests seed it with a copy of every message
    that is not in Spam or Trash, as Gmail shows it (see ``harness.gmail_sim.seed_gmail``).

Both have a master user (``user*master`` logins and SASL PLAIN with an authzid), the quota plugin
with ``imap_quota`` (per-user limits from the passwd-file, the ``count`` backend so no quota file
needs recalculating) and plain-text logins without TLS. With ``tls_cert``/``tls_key`` they also
listen for IMAPS on a second port and offer STARTTLS on the plain port.

Privileges: the master process runs as root (we are root), login processes as ``dovenull``, the
internal services as ``dovecot``, and every mail process as the ``dovecot`` user (uid/gid from the
package); ``first_valid_uid``/``first_valid_gid`` are lowered to that uid/gid so Dovecot accepts it.
The mail tree is owned by ``dovecot``; the server root must be traversable by ``dovecot`` and
``dovenull`` (so not under pytest's ``/tmp/pytest-of-root``, which is mode 0700).
"""

from __future__ import annotations

import atexit
import grp
import json
import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import imapclient

DOVECOT_BINARY = "/usr/sbin/dovecot"
LAYOUTS = ("legacy", "modern", "gmail")
MAIL_USER = "dovecot"
SPECIAL_USE_FOLDERS = {
    "Sent": "\\Sent",
    "Trash": "\\Trash",
    "Drafts": "\\Drafts",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
START_TIMEOUT = 30.0

_NAMESPACES = {
    "legacy": """\
namespace inbox {
  inbox = yes
  prefix = INBOX.
  separator = .
  list = yes
}
""",
    "modern": "namespace inbox {\n  inbox = yes\n  prefix =\n  separator = /\n"
    + "".join(
        f"  mailbox {name} {{\n    special_use = {attr}\n    auto = subscribe\n  }}\n"
        for name, attr in SPECIAL_USE_FOLDERS.items()
    )
    + "}\n",
}

GMAIL_FOLDERS = {
    "[Gmail]/All Mail": "\\All",
    "[Gmail]/Starred": "\\Flagged",
    "[Gmail]/Important": "\\Important",
    "[Gmail]/Sent Mail": "\\Sent",
    "[Gmail]/Drafts": "\\Drafts",
    "[Gmail]/Spam": "\\Junk",
    "[Gmail]/Trash": "\\Trash",
    "[Gmail]/Chats": "",
}
_NAMESPACES["gmail"] = (
    "namespace inbox {\n  inbox = yes\n  prefix =\n  separator = /\n"
    + "".join(
        f'  mailbox "{name}" {{\n'
        + (f"    special_use = {attr}\n" if attr else "")
        + "    auto = subscribe\n  }\n"
        for name, attr in GMAIL_FOLDERS.items()
    )
    + "}\n"
)

_MAIL_LOCATIONS = {
    "legacy": "maildir:~/Maildir",
    "modern": "sdbox:~/sdbox",
    "gmail": "sdbox:~/sdbox",
}

_CONFIG_TEMPLATE = """\
# Written by tests/harness/dovecot.py for one test server; not for production.
instance_name = mailmigrate-test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {host}
shutdown_clients = yes

default_login_user = dovenull
default_internal_user = dovecot
mail_uid = {mail_uid}
mail_gid = {mail_gid}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
auth_failure_delay = 0
auth_cache_size = 0
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/master-users
  master = yes
  result_success = continue
  default_fields = nodelay=yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users.d/%u
  default_fields = nodelay=yes
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users.d/%u
  default_fields = uid={mail_uid} gid={mail_gid} home={root}/mail/%d/%n
}}

mail_location = {mail_location}
mail_fsync = never
mail_plugins = $mail_plugins quota{zlib}
{namespace}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota{imap_zlib}
  mail_max_userip_connections = 200
{imap_capability}}}

plugin {{
  quota = count:User quota
  quota_vsizes = yes
  quota_max_mail_size = {max_mail_size}
}}

service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
service imap {{
  process_limit = 500
}}
# Tests fail logins on purpose; anvil's per-IP penalty would delay every later login by seconds.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_running: set[DovecotServer] = set()


@atexit.register
def _stop_leftover_servers() -> None:
    """No Dovecot outlives the Python process that started it, even without fixture teardown."""
    for server in list(_running):
        server.kill()


def process_stats() -> Iterator[tuple[int, list[bytes]]]:
    """``(pid, fields)`` of every process, ``fields`` being ``/proc/PID/stat`` after the command
    name: ``fields[0]`` the state, ``[2]`` the process group, ``[11:15]`` utime, stime, cutime,
    cstime in clock ticks."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                yield int(entry.name), stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue


def _live_members(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies do not count).

    Zombies reparented to init stay in the group until init reaps them, which can take seconds.
    """
    return [
        pid
        for pid, fields in process_stats()
        if int(fields[2]) == group and fields[0] not in (b"Z", b"X")
    ]


class DovecotError(RuntimeError):
    """The test server could not be configured, started or stopped; the text says why."""


class DovecotServer:
    """One real Dovecot process tree serving IMAP on loopback.

    :param root: an empty (or missing) directory for config, runtime files, logs and mail.
        It must be traversable by the ``dovecot`` and ``dovenull`` users.
    :param layout: ``legacy`` or ``modern`` (see the module docstring).
    :param tls_cert: PEM certificate file; with ``tls_key`` enables STARTTLS and IMAPS on
        ``tls_port``.
    :param tls_key: PEM private key file for ``tls_cert``.
    :param max_mail_size: largest message the server accepts (``quota_max_mail_size``).
    :param imap_capability: the capabilities to advertise instead of Dovecot's (commands it
        does not advertise still work: the client must not use them).
    :param compression: offer COMPRESS=DEFLATE (RFC 4978; Dovecot 2.3's ``imap_zlib`` plugin).
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        layout: str,
        *,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        max_mail_size: int = 50 * 1024 * 1024,
        imap_capability: str | None = None,
        compression: bool = False,
    ) -> None:
        if layout not in LAYOUTS:
            raise DovecotError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        if (tls_cert is None) != (tls_key is None):
            raise DovecotError("tls_cert and tls_key must be given together")
        self.root = Path(root).resolve()
        self.layout = layout
        self.port = free_port(self.host)
        self.tls_cert = Path(tls_cert).resolve() if tls_cert else None
        self.tls_key = Path(tls_key).resolve() if tls_key else None
        self.tls_port: int | None = free_port(self.host) if self.tls_cert else None
        self.max_mail_size = max_mail_size
        self.imap_capability = imap_capability  # what it advertises after login, when given
        self.compression = compression
        self.master_user = "master"
        self.master_password = "master-" + os.urandom(8).hex()
        self.config_path = self.root / "dovecot.conf"
        self.users_dir = self.root / "users.d"
        self.log_path = self.root / "dovecot.log"
        self._accounts: dict[str, tuple[str, int | None]] = {}
        self._account_mtimes: dict[str, int] = {}
        self._accounts_lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._mail_uid = pwd.getpwnam(MAIL_USER).pw_uid
        self._mail_gid = grp.getgrnam(MAIL_USER).gr_gid
        self._prepare()

    # -- setup ---------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for parent in self.root.parents:
            if not os.stat(parent).st_mode & 0o001:
                raise DovecotError(
                    f"{parent} is not traversable by other users; Dovecot's dovecot/dovenull "
                    f"users could not reach {self.root} (use tempfile.mkdtemp, not tmp_path)"
                )
        for name in ("run", "state"):
            (self.root / name).mkdir(exist_ok=True)
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        os.chown(mail, self._mail_uid, self._mail_gid)
        mail.chmod(0o700)
        master_users = self.root / "master-users"
        self._write_private(master_users, f"{self.master_user}:{self.master_password}\n")
        self.users_dir.mkdir(exist_ok=True)
        os.chown(self.users_dir, 0, self._mail_gid)
        self.users_dir.chmod(0o750)
        self.config_path.write_text(self._render_config())

    def _render_config(self) -> str:
        if self.tls_cert:
            ssl = f"ssl = yes\nssl_cert = <{self.tls_cert}\nssl_key = <{self.tls_key}\n"
        else:
            ssl = "ssl = no\n"
        return _CONFIG_TEMPLATE.format(
            root=self.root,
            host=self.host,
            port=self.port,
            # Port 0 disables a Dovecot listener.
            tls_port=self.tls_port or 0,
            ssl=ssl,
            mail_uid=self._mail_uid,
            mail_gid=self._mail_gid,
            mail_location=_MAIL_LOCATIONS[self.layout],
            namespace=_NAMESPACES[self.layout],
            zlib=" zlib" if self.compression else "",
            imap_zlib=" imap_zlib" if self.compression else "",
            max_mail_size=f"{self.max_mail_size}B",
            imap_capability=f"  imap_capability = {self.imap_capability}\n"
            if self.imap_capability
            else "",
        )

    def _write_private(self, path: Path, text: str) -> None:
        """Write atomically (Dovecot re-reads the file when its mtime changes).

        Mode 0640, group ``dovecot``: Dovecot 2.3's auth process runs as ``dovecot``.
        """
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.chown(tmp, 0, self._mail_gid)
        tmp.chmod(0o640)
        os.replace(tmp, path)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start Dovecot in the foreground of its own process group; wait for the greeting."""
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [DOVECOT_BINARY, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        _running.add(self)
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        deadline = time.monotonic() + START_TIMEOUT
        for port in ports:
            self._wait_for_greeting(port, deadline, tls=port == self.tls_port)

    def _wait_for_greeting(self, port: int, deadline: float, *, tls: bool) -> None:
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise DovecotError(
                    f"dovecot ({self.layout}, {self.root}) exited with {code}: {self._log_tail()}"
                )
            try:
                if tls:
                    # The listening socket is enough for IMAPS; the TLS greeting needs a client.
                    socket.create_connection((self.host, port), timeout=1).close()
                    return
                with socket.create_connection((self.host, port), timeout=2) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)
        self.stop()
        raise DovecotError(
            f"dovecot ({self.layout}) gave no greeting on {self.host}:{port} within "
            f"{START_TIMEOUT:.0f}s ({last_error}): {self._log_tail()}"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The master process id while running (a restart changes it)."""
        return self._process.pid if self.running and self._process else None

    def stop(self) -> None:
        """Stop cleanly: SIGTERM to the master (it stops its children), then end the group."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the whole process group at once, like a crash (for failure tests)."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same ports, with the same accounts and mail."""
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals, grace: float = 10.0) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        _running.discard(self)
        group = process.pid
        try:
            if sig == signal.SIGKILL:
                os.killpg(group, sig)
            else:
                process.send_signal(sig)
            process.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        # Whatever outlived the master (same process group) must not keep ports or files.
        deadline = time.monotonic() + grace
        while live := _live_members(group):
            for pid in live:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.poll()
            if time.monotonic() > deadline:
                raise DovecotError(f"dovecot processes {live} ({self.root}) do not die")
            time.sleep(0.02)
        process.poll()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- accounts ------------------------------------------------------------------------------

    def add_account(self, user: str, password: str, *, quota_bytes: int | None = None) -> None:
        """Add an account, usable at once: no restart, no reload.

        :param user: login name, usually ``local@domain``.
        :param quota_bytes: storage limit in bytes (IMAP reports it in KiB), None for none.
        """
        if (
            not user
            or not password
            or any(ch in user + password for ch in ":/\n\r\t ")
            or user[0] == "."
        ):
            raise DovecotError(
                f"account {user!r}: needs a user and password without ':', '/', spaces"
            )
        with self._accounts_lock:
            existed = user in self._accounts
            self._accounts[user] = (password, quota_bytes)
            self._write_account(user, wait_for_reload=existed)

    def set_quota(self, user: str, quota_bytes: int | None) -> None:
        """Change (or remove, with None) a storage limit; sessions that start afterwards see it.

        Takes up to a second: see :meth:`_write_account`.
        """
        with self._accounts_lock:
            if user not in self._accounts:
                raise DovecotError(f"account {user!r} does not exist on the {self.layout} server")
            self._accounts[user] = (self._accounts[user][0], quota_bytes)
            self._write_account(user, wait_for_reload=True)

    def _write_account(self, user: str, *, wait_for_reload: bool) -> None:
        """Write the account's own passwd-file (``users.d/<user>``, a variable path in the config).

        Dovecot opens a passwd-file it has not seen on first lookup, so new accounts work at once.
        A file it has open is re-checked (mtime and size) at most once per second, so a change is
        only certain to be seen from the next second on: give it a new mtime and wait for that.
        """
        password, quota_bytes = self._accounts[user]
        extra = "" if quota_bytes is None else f"userdb_quota_rule=*:storage={quota_bytes}B"
        path = self.users_dir / user
        self._write_private(path, f"{user}:{password}::::::{extra}\n")
        now = int(time.time())
        mtime = max(now, self._account_mtimes.get(user, 0) + 1)
        os.utime(path, (mtime, mtime))
        self._account_mtimes[user] = mtime
        if wait_for_reload:
            time.sleep(max(0.0, mtime + 1 - time.time()) + 0.01)

    # -- clients -------------------------------------------------------------------------------

    def connection(self, conn_id: str, **extra: object) -> dict:
        """This server as an Airflow connection in JSON form, logging in as the master user.

        :param conn_id: the connection id the caller will register it under (not part of the
            JSON form; accepted so call sites read naturally).
        :param extra: more or overriding connection extras.
        """
        del conn_id
        return {
            "conn_type": "imap",
            "host": self.host,
            "port": self.port,
            "login": self.master_user,
            "password": self.master_password,
            "extra": {"security": "none", "auth": "master", "master_separator": "*", **extra},
        }

    def connection_env(self, conn_id: str, **extra: object) -> dict[str, str]:
        """``{"AIRFLOW_CONN_<CONN_ID>": <JSON>}`` for :meth:`connection`, to put in os.environ."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.connection(conn_id, **extra))}

    def client(self, user: str, password: str) -> imapclient.IMAPClient:
        """A logged-in plain-text IMAP client for ``user`` (times not normalised)."""
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.normalise_times = False
        try:
            client.login(user, password)
        except Exception:
            client.shutdown()
            raise
        return client

    def master_client(self, user: str) -> imapclient.IMAPClient:
        """A client logged in as ``user`` through the master user (``user*master``)."""
        return self.client(f"{user}*{self.master_user}", self.master_password)

    def __repr__(self) -> str:
        return f"DovecotServer(layout={self.layout!r}, port={self.port}, root={str(self.root)!r})"
