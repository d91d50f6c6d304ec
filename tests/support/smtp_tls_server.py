"""A real SMTP server for the alert tests: aiosmtpd with STARTTLS (or implicit TLS) and AUTH.

Usage: smtp_tls_server.py PORT MAILDIR MODE CERT KEY USER PASSWORD
MODE is "starttls" (STARTTLS required before AUTH and MAIL) or "tls" (TLS from the first byte).
Every AUTH attempt is appended to MAILDIR/../auth.log as "user ok|bad"; mail goes to MAILDIR.
Runs until SIGTERM.
"""
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult

port, maildir, mode, cert, key, user, password = sys.argv[1:8]
auth_log = maildir.rstrip("/").rsplit("/", 1)[0] + "/auth.log"

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)


def authenticate(server, session, envelope, mechanism, auth_data):
    login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
    secret = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
    ok = login == user and secret == password
    with open(auth_log, "a") as f:
        f.write(f"{login} {'ok' if ok else 'bad'}\n")
    return AuthResult(success=ok)


options = dict(
    hostname="127.0.0.1",
    port=int(port),
    authenticator=authenticate,
    auth_required=True,
)
if mode == "starttls":
    options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
else:
    options.update(ssl_context=context, auth_require_tls=False)

controller = Controller(Mailbox(maildir), **options)
controller.start()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
done.wait()
controller.stop()
