#!/usr/bin/python3
"""Run a scriptable SMTP relay on loopback for the mailer's tests.

The relay is built on aiosmtpd (Debian's python3-aiosmtpd, run it with
/usr/bin/python3). It can require STARTTLS or implicit TLS and AUTH, fail
recipients on purpose, stall, or refuse to complete TCP connections at all.

Each accepted message is stored in a Maildir, as aiosmtpd's Mailbox handler
stores it, with these trace headers appended to its header:

    X-Peer        the client's address and port
    X-MailFrom    the envelope sender
    X-RcptTo      the envelope recipients, comma separated
    X-Peer-TLS    the TLS version of the session (TLSv1.2, TLSv1.3) or "none"
    X-Auth-User   the login the client authenticated as, or "none"

The log has one line per session ("session N opened from HOST:PORT") and one
per command with the full reply, for example

    session 3: EHLO vm -> 250-localhost | 250-8BITMIME | 250-STARTTLS | 250 HELP

so a test can count sessions and see STARTTLS and AUTH. AUTH credentials,
including the base64 responses to 334 challenges, are never logged, and the
password is printed nowhere.

The process writes --pidfile once it accepts connections, and removes it and
exits with status 0 on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import collections
import hmac
import itertools
import logging
import mailbox
import os
import select
import signal
import socket
import ssl
import sys
import warnings

from aiosmtpd.handlers import Message
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException

log = logging.getLogger("relay")

TEMP_FAIL_REPLY = "451 4.3.0 try again later"
PERM_FAIL_REPLY = "550 5.1.1 mailbox unavailable"
SERVER_HOSTNAME = "localhost"
# aiosmtpd closes a session after this many seconds without a command. A
# stalled session is kept for an hour instead, so that a client's own
# time-out (libesmtp's RFC 5321 minimums reach 10 minutes) decides.
IDLE_TIMEOUT = 300
STALL_IDLE_TIMEOUT = 3600
# How long a filler connection may take to complete before --blackhole
# decides that the accept queue is full.
FILLER_CONNECT_TIMEOUT = 0.5
MAX_FILLER_CONNECTIONS = 16


class RelayConfig:
    """Command line settings and counters shared by all sessions."""

    def __init__(self, args, tls_context, password):
        self.args = args
        self.tls_context = tls_context
        self.auth_user = args.auth_user
        self.password = password
        self.session_ids = itertools.count(1)
        self.temp_failures_left = args.temp_fail
        self.open_sessions = set()

    def take_temp_failure(self):
        """Return True while --temp-fail still has failures to give out."""
        if self.temp_failures_left <= 0:
            return False
        self.temp_failures_left -= 1
        return True


def describe_command(line):
    """Return a command line as text for the log, without AUTH credentials."""
    text = line.rstrip(b"\r\n").decode("ascii", "replace")
    words = text.split()
    if words and words[0].upper() == "AUTH" and len(words) > 2:
        text = f"{words[0]} {words[1]} [credentials not logged]"
    if len(text) > 200:
        text = text[:200] + "..."
    return text


def tls_version_of(transport):
    """Return the TLS version of a transport, or "none" for plain TCP."""
    if transport is None:
        return "none"
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return "none"
    return ssl_object.version() or "none"


class RelayHandler(Message):
    """aiosmtpd handler: hides AUTH without --auth, applies --temp-fail,
    --perm-fail and --stall data, and stores accepted messages."""

    def __init__(self, config, maildir):
        super().__init__()
        self.config = config
        self.maildir = maildir

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd leaves recording the client's name to this hook.
        session.host_name = hostname
        if self.config.auth_user is None:
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.config.args.perm_fail:
            return PERM_FAIL_REPLY
        if self.config.args.temp_fail_at == "rcpt" and self.config.take_temp_failure():
            return TEMP_FAIL_REPLY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.config.args.stall == "data":
            log.info("session %d: message received, stalling without a reply (--stall data)",
                     server.session_id)
            await asyncio.get_running_loop().create_future()
        if self.config.args.stall == "partial":
            log.info("session %d: message received, sending '250' without a line end "
                     "and stalling (--stall partial)", server.session_id)
            server.transport.write(b"250")
            await asyncio.get_running_loop().create_future()
        if self.config.args.temp_fail_at == "data" and self.config.take_temp_failure():
            return TEMP_FAIL_REPLY

        message = self.prepare_message(session, envelope)
        message["X-Peer-TLS"] = tls_version_of(server.transport)
        login = getattr(session.auth_data, "login", None)
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        message["X-Auth-User"] = login or "none"
        if self.maildir is None:
            log.info("session %d: message accepted and discarded (no --maildir)", server.session_id)
        else:
            key = self.maildir.add(message)
            log.info("session %d: message stored as %s", server.session_id, key)
        return "250 OK"

    def handle_message(self, message):
        # Never called because handle_DATA above stores the message itself,
        # but aiosmtpd's Message declares it abstract.
        raise NotImplementedError


class RelaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with per-session logging and --stall greeting.

    Client lines are split off in data_received and paired with the replies
    in push, so the log shows each command next to its reply. While a
    message body or an AUTH challenge response is being read, those lines
    are counted or hidden instead of being logged.
    """

    def __init__(self, handler, config, **kwargs):
        super().__init__(handler, **kwargs)
        self.config = config
        # asyncio calls the protocol factory once per accepted TCP
        # connection, before any TLS handshake, so every connection gets a
        # number even when --tls implicit fails the handshake.
        self.session_id = next(config.session_ids)
        self.line_buffer = bytearray()
        self.pending_commands = collections.deque()
        self.reply_lines = []
        self.reading_message = False
        self.message_bytes = 0
        self.hide_next_line = False
        self.command_count = 0
        self.closed = False

    def connection_made(self, transport):
        upgrading_to_tls = self._original_transport is not None
        super().connection_made(transport)
        if upgrading_to_tls:
            # aiosmtpd discards any plain-text bytes that arrived after
            # STARTTLS (RFC 3207 section 4.2), so the command log discards
            # them too.
            self.line_buffer.clear()
            self.pending_commands.clear()
            log.info("session %d: TLS established, %s", self.session_id, tls_version_of(transport))
            return

        self.config.open_sessions.add(self)
        host, port = transport.get_extra_info("peername")[:2]
        tls = tls_version_of(transport)
        suffix = "" if tls == "none" else f" over {tls}"
        log.info("session %d opened from %s:%d%s", self.session_id, host, port, suffix)

    def connection_lost(self, error):
        # aiosmtpd calls this itself after a failed STARTTLS handshake and
        # asyncio calls it again when the socket closes.
        if not self.closed:
            self.closed = True
            self.config.open_sessions.discard(self)
            log.info("session %d closed after %d commands", self.session_id, self.command_count)
        super().connection_lost(error)

    def data_received(self, data):
        self.track_client_lines(data)
        super().data_received(data)

    def track_client_lines(self, data):
        self.line_buffer += data
        while True:
            end = self.line_buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self.line_buffer[:end + 1])
            del self.line_buffer[:end + 1]
            self.track_client_line(line)
        # A client that never sends a line feed must not grow the buffer
        # without limit. aiosmtpd rejects such long lines by itself.
        if len(self.line_buffer) > 65536:
            self.line_buffer.clear()

    def track_client_line(self, line):
        if self.reading_message:
            if line.rstrip(b"\r\n") == b".":
                self.reading_message = False
                self.pending_commands.append(f"message data ({self.message_bytes} bytes)")
            else:
                self.message_bytes += len(line)
        elif self.hide_next_line:
            self.hide_next_line = False
            self.pending_commands.append("[AUTH response not logged]")
        else:
            self.command_count += 1
            self.pending_commands.append(describe_command(line))

    async def push(self, status):
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        self.reply_lines.append(text)
        # A reply line with "-" after the code is followed by more lines.
        if len(text) < 4 or text[3] != "-":
            self.log_exchange()
        await super().push(status)

    def log_exchange(self):
        if self.pending_commands:
            command = self.pending_commands.popleft()
        elif self.reply_lines[0].startswith("220 ") and self.command_count == 0:
            command = "greeting"
        else:
            command = "(no command)"
        reply = " | ".join(self.reply_lines)
        log.info("session %d: %s -> %s", self.session_id, command, reply)

        # The client sends the message after 354 and a challenge response
        # after 334, so these flags are set before the reply goes out.
        if reply.startswith("354"):
            self.reading_message = True
            self.message_bytes = 0
        elif reply.startswith("334"):
            self.hide_next_line = True
        self.reply_lines = []

    async def handle_exception(self, error):
        if isinstance(error, TLSSetupException):
            # aiosmtpd closes the connection without a reply after this.
            log.info("session %d: TLS handshake failed: %s", self.session_id, error.__cause__)
            return "454 4.7.0 TLS handshake failed"
        log.info("session %d: error %s: %s", self.session_id, type(error).__name__, error)
        return await super().handle_exception(error)

    async def _handle_client(self):
        # _handle_client is aiosmtpd's coroutine that sends the greeting and
        # then reads commands (aiosmtpd 1.4.3).
        if self.config.args.stall == "greeting":
            log.info("session %d: stalling without a greeting (--stall greeting)", self.session_id)
            try:
                await self.loop.create_future()
            except asyncio.CancelledError:
                # aiosmtpd cancels this coroutine when the client closes its
                # side. The transport stays half open unless it is closed here.
                if self.transport is not None:
                    self.transport.close()
                raise
        await super()._handle_client()


def make_authenticator(config):
    """Return an aiosmtpd authenticator that accepts only --auth's login."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        valid = (hmac.compare_digest(auth_data.login, config.auth_user.encode())
                 and hmac.compare_digest(auth_data.password, config.password))
        outcome = "accepted" if valid else "rejected"
        log.info("session %d: AUTH %s %s for user %r", server.session_id, mechanism, outcome, login)
        # aiosmtpd keeps auth_data in session.auth_data, and its login
        # becomes the X-Auth-User header.
        return AuthResult(success=valid, handled=False, auth_data=auth_data if valid else None)

    return authenticate


def make_protocol_factory(config, handler, loop):
    args = config.args
    starttls = args.tls == "starttls"
    kwargs = {
        "hostname": SERVER_HOSTNAME,
        "loop": loop,
        "tls_context": config.tls_context if starttls else None,
        "require_starttls": starttls,
        # With --tls none and --auth, AUTH is offered on the plain
        # connection so that a client's refusal to send a password in clear
        # text can be tested. With --tls implicit every byte is encrypted.
        "auth_require_tls": starttls,
        "timeout": STALL_IDLE_TIMEOUT if args.stall else IDLE_TIMEOUT,
    }
    if config.auth_user is not None:
        kwargs["authenticator"] = make_authenticator(config)
        kwargs["auth_required"] = True
    return lambda: RelaySMTP(handler, config, **kwargs)


def log_handshake_failure(loop, context):
    """Log implicit-TLS handshake failures, which asyncio reports only here."""
    protocol = context.get("protocol")
    if isinstance(protocol, RelaySMTP):
        error = context.get("exception")
        log.info("session %d: TLS handshake failed: %s", protocol.session_id, error)
        return
    loop.default_exception_handler(context)


def parse_listen(value):
    """Parse HOST:PORT or [IPV6]:PORT into a host and a port."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid --listen {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_auth(value):
    user, sep, password_file = value.partition(":")
    if not sep or not user or not password_file:
        raise argparse.ArgumentTypeError(f"invalid --auth {value!r}: expected USER:PASSWORD_FILE")
    return user, password_file


def read_password(path):
    """Read the password: the first line of the file, without its line break."""
    with open(path, "rb") as password_file:
        return password_file.readline().rstrip(b"\r\n")


def build_tls_context(args):
    if args.tls == "none":
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as error:
        raise RuntimeError(f"failed to load --cert {args.cert} and --key {args.key}: {error}; "
                           "create them with tests/lib/test-ca.sh") from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_max == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_tickets is not None:
        context.num_tickets = args.tls_tickets
    return context


def open_maildir(path):
    """Open the Maildir at path, creating it and its tmp, new and cur folders."""
    for folder in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(path, folder), exist_ok=True)
    return mailbox.Maildir(path, create=False)


def fill_accept_queue(host, port):
    """Listen with backlog 0 and fill the accept queue with our own connections.

    Linux drops a SYN while the accept queue of its listening socket is
    full, so a client's connect then hangs in SYN-SENT and retries the SYN
    until its own time-out. On Debian 12 with net.ipv4.tcp_syn_retries = 6
    a blocking connect failed with ETIMEDOUT after 134.6 s. Returns the
    listening socket and the queued filler connections, which must stay open.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(0)
    address = listener.getsockname()

    fillers = []
    for _ in range(MAX_FILLER_CONNECTIONS):
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(address)
        _, writable, _ = select.select([], [filler], [], FILLER_CONNECT_TIMEOUT)
        if writable and filler.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            fillers.append(filler)
            continue
        # This connect did not complete: the queue is full. Closing the
        # socket stops its SYN retries.
        filler.close()
        return listener, fillers
    raise RuntimeError(f"accept queue of {host}:{port} still had room after "
                       f"{MAX_FILLER_CONNECTIONS} connections")


def write_pidfile(path):
    if path:
        with open(path, "w") as pidfile:
            pidfile.write(f"{os.getpid()}\n")


def remove_pidfile(path):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


async def wait_for_stop_signal():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def run_blackhole(args):
    listener, fillers = fill_accept_queue(args.host, args.port)
    log.info("blackhole listening on %s:%d, accept queue filled with %d connection(s), "
             "so new connections will not complete", args.host, args.port, len(fillers))
    write_pidfile(args.pidfile)
    try:
        await wait_for_stop_signal()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def run_relay(args, config):
    loop = asyncio.get_running_loop()
    if args.tls == "implicit":
        # asyncio reports a failed server-side handshake to the exception
        # handler only in debug mode (Python 3.11, selector_events).
        loop.set_debug(True)
        loop.slow_callback_duration = 3600
        loop.set_exception_handler(log_handshake_failure)

    maildir = open_maildir(args.maildir) if args.maildir else None
    handler = RelayHandler(config, maildir)
    factory = make_protocol_factory(config, handler, loop)
    server = await loop.create_server(
        factory, args.host, args.port,
        ssl=config.tls_context if args.tls == "implicit" else None,
        reuse_address=True)

    settings = [f"tls={args.tls}"]
    if args.tls != "none":
        settings.append(f"tls-max={args.tls_max}")
    settings.append(f"auth={config.auth_user or 'none'}")
    if args.temp_fail:
        settings.append(f"temp-fail={args.temp_fail} at {args.temp_fail_at}")
    if args.perm_fail:
        settings.append("perm-fail")
    if args.stall:
        settings.append(f"stall={args.stall}")
    log.info("relay listening on %s:%d (%s)", args.host, args.port, ", ".join(settings))
    write_pidfile(args.pidfile)

    try:
        await wait_for_stop_signal()
    finally:
        server.close()
        for session in list(config.open_sessions):
            if session.transport is not None:
                session.transport.close()
        await asyncio.sleep(0)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Scriptable SMTP relay for tests, on loopback only.")
    parser.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT",
                        help="address to listen on, such as 127.0.0.1:2525 or [::1]:2525")
    parser.add_argument("--maildir", metavar="DIR",
                        help="Maildir that stores accepted messages (created if missing); "
                             "without it messages are accepted and discarded")
    parser.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none",
                        help="none: plain SMTP; starttls: STARTTLS offered and required "
                             "before MAIL; implicit: TLS from the first byte (default none)")
    parser.add_argument("--cert", metavar="FILE", help="server certificate (PEM), with --tls")
    parser.add_argument("--key", metavar="FILE", help="server private key (PEM), with --tls")
    parser.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3",
                        help="highest TLS version the relay accepts (default 1.3)")
    parser.add_argument("--tls-tickets", type=int, metavar="N",
                        help="TLS 1.3 session tickets sent after each handshake "
                             "(default: OpenSSL's, 2); 0 sends none")
    parser.add_argument("--auth", type=parse_auth, metavar="USER:PASSWORD_FILE",
                        help="offer AUTH PLAIN and LOGIN and require them before MAIL; "
                             "the password is the first line of PASSWORD_FILE. With "
                             "--tls starttls AUTH is offered only after STARTTLS. Wrong "
                             "credentials get 535")
    parser.add_argument("--temp-fail", type=int, default=0, metavar="N",
                        help=f"answer '{TEMP_FAIL_REPLY}' N times, counted over all "
                             "sessions, then accept (default 0)")
    parser.add_argument("--temp-fail-at", choices=("rcpt", "data"), default="rcpt",
                        help="rcpt: the 451 answers RCPT, as greylisting does, and "
                             "aiosmtpd then answers the DATA that follows with 503 since "
                             "no recipient was accepted; data: the 451 answers the "
                             "final '.' of the message (default rcpt)")
    parser.add_argument("--perm-fail", action="store_true",
                        help=f"answer '{PERM_FAIL_REPLY}' to every RCPT")
    parser.add_argument("--stall", choices=("greeting", "data", "partial"),
                        help="greeting: accept TCP (and with --tls implicit the TLS "
                             "handshake) but never send the greeting; data: read the whole "
                             "message after DATA but never answer the final '.'; partial: "
                             "answer the final '.' with '250' and no line end, then stall. A stalled "
                             "session is closed after 3600 s, other idle sessions after 300 s")
    parser.add_argument("--blackhole", action="store_true",
                        help="listen with a full accept queue so that a client's connect "
                             "never completes and fails only at the client's own time-out "
                             "(Linux gives up after net.ipv4.tcp_syn_retries SYN retries). "
                             "All other options except --pidfile and --log are ignored")
    parser.add_argument("--pidfile", metavar="FILE",
                        help="file that receives the PID once the relay accepts connections")
    parser.add_argument("--log", metavar="FILE",
                        help="append the log to FILE instead of standard error")
    args = parser.parse_args(argv)

    args.host, args.port = args.listen
    args.auth_user, args.password_file = args.auth if args.auth else (None, None)
    if args.tls != "none" and not (args.cert and args.key):
        parser.error(f"--tls {args.tls} needs --cert and --key")
    if args.temp_fail < 0:
        parser.error(f"invalid --temp-fail {args.temp_fail}: expected 0 or more")
    if args.tls_tickets is not None and args.tls_tickets < 0:
        parser.error(f"invalid --tls-tickets {args.tls_tickets}: expected 0 or more")
    return args


def configure_logging(path):
    if path:
        handler = logging.FileHandler(path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d relay[%(process)d] %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # aiosmtpd's own INFO lines repeat what this script logs, but its
    # warnings and errors still go to the log. Two warnings that every
    # session would repeat are dropped. One is about AUTH without STARTTLS,
    # which --tls none and --tls implicit allow on purpose. The other is the
    # deprecation of Session.login_data, which aiosmtpd 1.4.3 itself sets
    # after each successful AUTH.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    aiosmtpd_log.addFilter(lambda record: not any(
        text in record.getMessage() for text in ("auth_require_tls", "login_data is deprecated")))
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def main(argv=None):
    args = parse_arguments(argv)
    configure_logging(args.log)
    try:
        if args.blackhole:
            asyncio.run(run_blackhole(args))
        else:
            password = read_password(args.password_file) if args.auth_user else None
            config = RelayConfig(args, build_tls_context(args), password)
            asyncio.run(run_relay(args, config))
    except (OSError, ssl.SSLError, RuntimeError) as error:
        log.error("relay failed: %s", error)
        remove_pidfile(args.pidfile)
        return 1
    remove_pidfile(args.pidfile)
    log.info("relay stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
