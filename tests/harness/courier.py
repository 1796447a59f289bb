"""A real Courier-IMAP 5 server for tests: Courier's own ``imapd`` from the Debian package
unpacked in ``.cache/servers/courier`` (``tests/harness/fetch_servers.sh``, run by ``make
install``; the package conflicts with dovecot-imapd, so it is never installed).

What runs after the login is Courier's: every mailbox command, its Maildir++ storage (folders
``INBOX.Name``, separator ``.``), keywords (``IMAP_KEYWORDS=1``), and the capabilities and
settings of Debian's ``/etc/courier/imapd`` as a fresh install has them (no LITERAL+,
MULTIAPPEND, CONDSTORE or SPECIAL-USE; ``IMAP_EMPTYTRASH=Trash:7``).

The login is the harness's: Courier's ``imaplogin`` asks ``authdaemond`` over a socket at a
path compiled into the library (``/run/courier/authdaemon``) with its configuration in
``/etc/courier``, i.e. a system daemon. Instead, this module accepts connections itself,
answers CAPABILITY, LOGIN and AUTHENTICATE PLAIN (with an authzid for the admin) and then hands
the connection to ``imapd`` exactly as ``imaplogin`` does: ``AUTHENTICATED`` and
``IMAPLOGINTAG`` in the environment, the account's Maildir as argument, running as ``mail``.
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import re
import socket
import subprocess
import threading
from pathlib import Path

from harness.dovecot import free_port
from harness.imap_service import AuthzidImapService

ROOT = Path(__file__).resolve().parents[2] / ".cache" / "servers" / "courier"
IMAPD = ROOT / "usr" / "bin" / "imapd"
LIBS = f"{ROOT / 'usr' / 'lib'}:{ROOT / 'usr' / 'lib' / 'x86_64-linux-gnu'}"
RUN_AS = "mail"
# Debian's /etc/courier/imapd, as installed.
IMAPD_SETTINGS = {
    "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT "
    "THREAD=REFERENCES SORT QUOTA IDLE",
    "IMAP_KEYWORDS": "1",
    "IMAP_ACL": "1",
    "IMAP_IDLE_TIMEOUT": "60",
    "IMAP_MAILBOX_SANITY_CHECK": "1",
    "IMAP_DISABLETHREADSORT": "0",
    "IMAP_CHECK_ALL_FOLDERS": "0",
    "IMAP_OBSOLETE_CLIENT": "0",
    "IMAP_UMASK": "022",
    "IMAP_ULIMITD": "131072",
    "IMAP_USELOCKS": "1",
    "IMAP_ENHANCEDIDLE": "0",
    "IMAP_TRASHFOLDERNAME": "Trash",
    "IMAP_EMPTYTRASH": "Trash:7",
    "IMAP_MOVE_EXPUNGE_TO_TRASH": "0",
    "HEADERFROM": "X-IMAP-Sender",
}
_ARG = rb'(?:"((?:[^"\\]|\\.)*)"|(\S+))'
_LOGIN = re.compile(rb"(\S+) LOGIN " + _ARG + rb" " + _ARG + rb"\r\n$", re.IGNORECASE)
_AUTHENTICATE = re.compile(rb"(\S+) AUTHENTICATE PLAIN(?: (\S+))?\r\n$", re.IGNORECASE)
_UNESCAPE = re.compile(rb"\\(.)")


def available() -> str | None:
    """``None`` when the unpacked Courier is there, else why not."""
    return None if IMAPD.exists() else f"Courier is not unpacked in {ROOT} (run make install)"


def _arg(quoted: bytes | None, atom: bytes | None) -> str:
    return (_UNESCAPE.sub(rb"\1", quoted) if quoted is not None else atom or b"").decode()


class CourierServer(AuthzidImapService):
    """Courier-IMAP on a free loopback port; one ``imapd`` process per logged-in connection."""

    kind = "courier"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.port = free_port(self.host)
        self.log_path = self.root / "imapd.log"
        self.master_user = "admin"
        self.master_password = "admin-" + os.urandom(8).hex()
        self.passwords: dict[str, str] = {}
        self._uid = pwd.getpwnam(RUN_AS).pw_uid
        self._gid = grp.getgrnam(RUN_AS).gr_gid
        self._listener: socket.socket | None = None
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        why = available()
        if why:
            raise RuntimeError(why)
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._listener = socket.create_server((self.host, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self, remove: bool = True) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            children, self._children = set(self._children), set()
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
        if remove:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)

    # -- accounts and clients ---------------------------------------------------------------
    def home(self, user: str) -> Path:
        return self.root / "home" / user

    def add_account(self, user: str, password: str, *, quota_bytes: int | None = None) -> None:
        if quota_bytes is not None:
            raise NotImplementedError("Courier quotas (maildirsize) are not set up by the harness")
        maildir = self.home(user) / "Maildir"
        for part in ("cur", "new", "tmp"):
            (maildir / part).mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "-R", f"{RUN_AS}:{RUN_AS}", str(self.home(user))], check=True)
        self.passwords[user] = password

    # -- the login front end -----------------------------------------------------------------
    def _accept(self) -> None:
        while self._listener is not None:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        try:
            with conn:
                conn.sendall(
                    b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Courier-IMAP (harness login)\r\n"
                )
                while line := _read_line(conn):
                    tag = line.split(b" ", 1)[0]
                    command = line[len(tag) + 1 :].strip().upper()
                    if command == b"CAPABILITY":
                        conn.sendall(
                            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
                        )
                    elif command == b"NOOP":
                        conn.sendall(tag + b" OK done\r\n")
                    elif command == b"LOGOUT":
                        conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                        return
                    else:
                        user = self._login(conn, line)
                        if user is not None:
                            self._hand_over(conn, peer, tag, user)
                            return
                        conn.sendall(tag + b" NO Login failed.\r\n")
        except OSError:
            pass

    def _login(self, conn: socket.socket, line: bytes) -> str | None:
        """The account a LOGIN or AUTHENTICATE PLAIN line logs in as, or ``None``."""
        match = _LOGIN.match(line)
        if match:
            user, password = _arg(*match.group(2, 3)), _arg(*match.group(4, 5))
            return user if self.passwords.get(user) == password else None
        match = _AUTHENTICATE.match(line)
        if not match:
            return None
        response = match.group(2)
        if response is None:
            conn.sendall(b"+ \r\n")
            response = (_read_line(conn) or b"").strip()
        try:
            authzid, authcid, password = base64.b64decode(response).decode().split("\0")
        except ValueError:
            return None
        if authcid == self.master_user and password == self.master_password:
            return authzid if authzid in self.passwords else None
        ok = self.passwords.get(authcid) == password and authzid in ("", authcid)
        return authcid if ok else None

    def _hand_over(self, conn: socket.socket, peer, tag: bytes, user: str) -> None:
        """What imaplogin does after a login: run imapd on the connection as the account."""
        env = {
            "PATH": "/usr/bin:/bin",
            "LD_LIBRARY_PATH": LIBS,
            "AUTHENTICATED": user,
            "IMAPLOGINTAG": tag.decode(),
            "TCPREMOTEIP": peer[0],
            "TCPREMOTEPORT": str(peer[1]),
            "TCPLOCALIP": self.host,
            "TCPLOCALPORT": str(self.port),
            "MAILDIR": "Maildir",
            "HOME": str(self.home(user)),
            **IMAPD_SETTINGS,
        }
        with self.log_path.open("ab") as log:
            child = subprocess.Popen(
                [str(IMAPD), "Maildir"], stdin=conn.fileno(), stdout=conn.fileno(), stderr=log,
                cwd=self.home(user), env=env, user=self._uid, group=self._gid,
            )  # fmt: skip
        with self._lock:
            self._children.add(child)
        conn.close()  # imapd holds it now
        child.wait()
        with self._lock:
            self._children.discard(child)

    def __repr__(self) -> str:
        return f"CourierServer({self.host}:{self.port}, root={self.root})"


def _read_line(conn: socket.socket) -> bytes:
    """One line, read byte by byte: nothing after it may be taken from imapd's input."""
    data = bytearray()
    while not data.endswith(b"\r\n"):
        byte = conn.recv(1)
        if not byte:
            return b""
        data += byte
    return bytes(data)
