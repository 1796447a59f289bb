"""A real Cyrus IMAP 3.6 server for tests, run from the Debian package unpacked in
``.cache/servers/cyrus`` (``tests/harness/fetch_servers.sh``, run by ``make install``): the
package conflicts with dovecot-imapd, so it is never installed.

The configuration is Debian's ``imapd.conf`` as a fresh install has it (``altnamespace: no``,
``unixhierarchysep: no``: folders are ``INBOX.Name``; CREATE-SPECIAL-USE offered; INBOX created
at first login) with its paths moved under the server's root, plus what a migration needs:
``virtdomains: userid`` for ``user@domain`` logins, an admin (``admins``) who logs in for any
user with SASL PLAIN and an authzid, and SASL passwords in a sasldb of its own. ``munge8bit``
(Cyrus rewrites 8-bit header bytes to ``X`` by default) is a constructor option: off for tests
of exact copies, on to see what a default Cyrus does to such mail.

The master process starts as root and runs every Cyrus process as the ``mail`` user.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import imapclient

from harness.dovecot import free_port
from harness.imap_service import AuthzidImapService

ROOT = Path(__file__).resolve().parents[2] / ".cache" / "servers" / "cyrus"
BIN = ROOT / "usr" / "lib" / "cyrus" / "bin"
LIBS = ROOT / "usr" / "lib" / "x86_64-linux-gnu"
RUN_AS = "mail"
START_TIMEOUT = 30.0

_IMAPD_CONF = """\
configdirectory: {root}/lib
defaultpartition: default
partition-default: {root}/spool
proc_path: {root}/run/proc
mboxname_lockpath: {root}/run/lock
lmtpsocket: {root}/run/socket/lmtp
idlesocket: {root}/run/socket/idle
notifysocket: {root}/run/socket/notify
altnamespace: no
unixhierarchysep: no
allowanonymouslogin: no
autocreate_quota: 0
umask: 077
hashimapspool: true
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {root}/sasldb2
sasl_mech_list: PLAIN LOGIN
sasl_auto_transition: no
servername: localhost
virtdomains: userid
defaultdomain: localhost
admins: {admin}
proxyservers: {admin}
munge8bit: {munge8bit}
cyrus_user: {user}
cyrus_group: {group}
syslog_prefix: cyrus-test
"""

_CYRUS_CONF = """\
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{bin}/imapd -C {conf}" listen="{host}:{port}" prefork=0 maxchild=50
}}
EVENTS {{
}}
"""


class CyrusError(RuntimeError):
    """The Cyrus test server could not be set up or started; the text says why."""


def available() -> str | None:
    """``None`` when the unpacked Cyrus is there, else why not (for a skip message)."""
    if not (BIN / "master").exists():
        return f"Cyrus is not unpacked in {ROOT} (run make install)"
    return None


class CyrusServer(AuthzidImapService):
    """One Cyrus ``master`` with an IMAP service on a free loopback port.

    :param root: an empty directory for configuration, databases, spool and log.
    :param munge8bit: Cyrus's default ``yes`` rewrites 8-bit header bytes.
    """

    kind = "cyrus"

    def __init__(self, root: Path, *, munge8bit: bool = False) -> None:
        self.root = Path(root).resolve()
        self.port = free_port(self.host)
        self.munge8bit = munge8bit
        self.master_user = "admin"
        self.master_password = "admin-" + os.urandom(8).hex()
        self.log_path = self.root / "master.log"
        self._uid = pwd.getpwnam(RUN_AS).pw_uid
        self._gid = grp.getgrnam(RUN_AS).gr_gid
        self.passwords: dict[str, str] = {}

    def _prepare(self) -> None:
        for sub in ("lib", "lib/db", "lib/socket", "lib/proc", "lib/log", "lib/msg", "lib/user",
                    "lib/quota", "lib/sieve", "spool", "run", "run/proc", "run/lock",
                    "run/socket"):  # fmt: skip
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "imapd.conf").write_text(
            _IMAPD_CONF.format(
                root=self.root,
                admin=self.master_user,
                user=RUN_AS,
                group=RUN_AS,
                munge8bit="yes" if self.munge8bit else "no",
            )  # fmt: skip
        )
        (self.root / "cyrus.conf").write_text(
            _CYRUS_CONF.format(
                bin=BIN, conf=self.root / "imapd.conf", host=self.host, port=self.port
            )
        )
        self._set_password(self.master_user, self.master_password)
        subprocess.run(["chown", "-R", f"{RUN_AS}:{RUN_AS}", str(self.root)], check=True)
        self.root.chmod(0o755)

    def _set_password(self, user: str, password: str) -> None:
        name, _, realm = user.partition("@")
        command = ["saslpasswd2", "-c", "-p", "-f", str(self.root / "sasldb2")]
        command += ["-u", realm] if realm else ["-u", "localhost"]
        subprocess.run([*command, name], input=password.encode(), check=True)
        os.chown(self.root / "sasldb2", self._uid, self._gid)

    def start(self) -> None:
        why = available()
        if why:
            raise CyrusError(why)
        self._prepare()
        env = {**os.environ, "LD_LIBRARY_PATH": str(LIBS), "CYRUS_VERBOSE": "1"}
        log = self.log_path.open("ab")
        try:
            process = subprocess.Popen(
                [str(BIN / "master"), "-D", "-C", str(self.root / "imapd.conf"),
                 "-M", str(self.root / "cyrus.conf"), "-p", str(self.root / "run" / "master.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        self._started(process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CyrusError(
                    f"cyrus master exited with {process.returncode}: {self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop(remove=False)
        raise CyrusError(f"cyrus gave no greeting on port {self.port}: {self.log_tail()}")

    # -- accounts and clients ---------------------------------------------------------------
    def add_account(self, user: str, password: str, *, quota_bytes: int | None = None) -> None:
        """A user with a password; its INBOX is created at first login (autocreate)."""
        self._set_password(user, password)
        self.passwords[user] = password
        self.client(user, password).logout()  # creates the INBOX
        if quota_bytes is not None:
            admin = self.admin_client()
            local, _, domain = user.partition("@")
            admin.set_quota(f"user.{local}@{domain}", "STORAGE", quota_bytes // 1024)
            admin.logout()

    def admin_client(self) -> imapclient.IMAPClient:
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(self.master_user, self.master_password)
        return client

    def __repr__(self) -> str:
        return f"CyrusServer({self.host}:{self.port}, root={self.root})"
