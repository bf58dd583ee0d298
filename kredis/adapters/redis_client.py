"""Connections to one Redis node: timeouts, credentials, TLS and raw replies.

The only place that builds redis-py clients. Every client has a connect and a
command timeout and never retries on its own (a retried MIGRATE or FAILOVER
is not the same command twice). Replies are raw: CLUSTER NODES comes back as
the server's text, never redis-py's parsed form. Library errors become
``RedisNodeError`` subclasses that name the node, the command and the reply.
Credentials come from a file or the environment and never reach a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kredis.domain.errors import KredisError, truncate

PASSWORD_ENV = "KREDIS_REDIS_PASSWORD"
PASSWORD_FILE_ENV = "KREDIS_REDIS_PASSWORD_FILE"
USERNAME_ENV = "KREDIS_REDIS_USERNAME"
DEFAULT_CONNECT_TIMEOUT_S = 3.0
DEFAULT_COMMAND_TIMEOUT_S = 5.0

Arg = str | bytes | int | float


class RedisNodeError(KredisError):
    """A Redis node could not carry out a command."""

    def __init__(self, *, address: str, command: str, problem: str) -> None:
        super().__init__(f"{address}: {command}: {problem}")
        self.address = address
        self.command = command
        self.problem = problem


class RedisUnreachableError(RedisNodeError):
    """No reply: the node refused the connection, timed out or hung up."""


class RedisReplyError(RedisNodeError):
    """The node answered the command with an error reply."""

    @property
    def code(self) -> str:
        """The first word of the error reply, such as BUSYKEY or MOVED."""
        return self.problem.split(" ", 1)[0]


class RedisAuthenticationError(RedisUnreachableError):
    """The node refused the credentials kredis was given."""


class CredentialsError(KredisError):
    """The Redis password could not be read from where it was configured."""


@attrs.frozen
class Credentials:
    """An ACL user (``default`` when empty) and its password."""

    password: str = attrs.field(repr=False)
    username: str = ""


@attrs.frozen
class TlsFiles:
    """Files for TLS to the nodes; ``ca`` verifies the servers."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@attrs.frozen
class ConnectionSettings:
    """How every connection to a node is made."""

    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    credentials: Credentials | None = None
    tls: TlsFiles | None = None


def read_credentials(
    *, password_file: Path | None, environ: Mapping[str, str] | None = None
) -> Credentials | None:
    """Credentials from a file, else from the environment, else none.

    The file holds the password on its first line. The environment may name
    a file (``KREDIS_REDIS_PASSWORD_FILE``) or hold the password itself
    (``KREDIS_REDIS_PASSWORD``); ``KREDIS_REDIS_USERNAME`` names an ACL user.
    """
    env = os.environ if environ is None else environ
    username = env.get(USERNAME_ENV, "")
    path = password_file or (
        Path(env[PASSWORD_FILE_ENV]) if env.get(PASSWORD_FILE_ENV) else None
    )
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise CredentialsError(
                f"cannot read the Redis password file {str(path)!r}: "
                f"{err.strerror or err}; point --password-file at a readable file"
            ) from err
        password = text.splitlines()[0] if text.strip() else ""
        if not password:
            raise CredentialsError(
                f"the Redis password file {str(path)!r} is empty; write the "
                "password on its first line"
            )
        return Credentials(password=password, username=username)
    if env.get(PASSWORD_ENV):
        return Credentials(password=env[PASSWORD_ENV], username=username)
    return None


@attrs.frozen
class Address:
    """Where a node listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Read ``host:port``."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, found {text!r}")
        return cls(host=host.strip("[]"), port=int(port))


class RedisNode:
    """One connection to one node, with raw replies and translated errors."""

    def __init__(self, address: Address, settings: ConnectionSettings) -> None:
        self.address = address
        self.settings = settings
        options: dict[str, Any] = {
            "host": address.host,
            "port": address.port,
            "socket_connect_timeout": settings.connect_timeout_s,
            "socket_timeout": settings.command_timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "single_connection_client": True,
        }
        if settings.credentials is not None:
            options["password"] = settings.credentials.password
            options["username"] = settings.credentials.username or None
        if settings.tls is not None:
            tls = settings.tls
            options["ssl"] = True
            options["ssl_ca_certs"] = str(tls.ca) if tls.ca else None
            options["ssl_certfile"] = str(tls.cert) if tls.cert else None
            options["ssl_keyfile"] = str(tls.key) if tls.key else None
            options["ssl_cert_reqs"] = "required" if tls.ca else "none"
            options["ssl_check_hostname"] = False
        self._options = options
        self._connected: redis.Redis | None = None

    @property
    def _client(self) -> redis.Redis:
        # Connecting happens at the first command, so that a refused or
        # rejected connection is reported like any other failed command.
        if self._connected is None:
            client = redis.Redis(**self._options)
            # Raw replies for every command: redis-py's parsers (INFO, ROLE,
            # CLUSTER ...) reshape what the server said.
            client.response_callbacks.clear()
            self._connected = client
        return self._connected

    def __enter__(self) -> RedisNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection."""
        if self._connected is not None:
            self._connected.close()
            self._connected = None

    def call(self, *args: Arg, timeout_s: float | None = None) -> Any:
        """Send one command and return its raw reply (bytes stay bytes)."""
        try:
            if timeout_s is None:
                execute = self._client.execute_command
                return execute(*args)  # type: ignore[no-untyped-call]
            return self._with_timeout(args, timeout_s)
        except redis.ResponseError as err:
            raise RedisReplyError(
                address=str(self.address),
                command=describe(args),
                problem=truncate(_reply_text(err), 200),
            ) from err
        except redis.AuthenticationError as err:
            raise _refused(self.address, describe(args), err) from err
        except redis.RedisError as err:
            raise RedisUnreachableError(
                address=str(self.address),
                command=describe(args),
                problem=truncate(str(err) or type(err).__name__, 200),
            ) from err

    def text(self, *args: Arg) -> str:
        """Send one command whose reply is text, decoded."""
        return decode(self.call(*args))

    def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, timeout_s: float | None = None
    ) -> list[Any]:
        """Send many commands in one round trip; replies in order.

        An error reply comes back in its place as a ``RedisReplyError``
        instance, so the caller decides which errors matter.
        """
        if not commands:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            if timeout_s is not None:
                self._set_timeout(timeout_s)
            replies = pipe.execute(raise_on_error=False)
        except redis.AuthenticationError as err:
            raise _refused(self.address, "a pipeline", err) from err
        except redis.RedisError as err:
            raise RedisUnreachableError(
                address=str(self.address),
                command=f"a pipeline of {len(commands)} commands",
                problem=truncate(str(err) or type(err).__name__, 200),
            ) from err
        finally:
            if timeout_s is not None:
                self._set_timeout(self.settings.command_timeout_s)
        return [
            RedisReplyError(
                address=str(self.address),
                command=describe(command),
                problem=truncate(_reply_text(reply), 200),
            )
            if isinstance(reply, redis.ResponseError)
            else reply
            for command, reply in zip(commands, replies, strict=True)
        ]

    def _with_timeout(self, args: Sequence[Arg], timeout_s: float) -> Any:
        self._set_timeout(timeout_s)
        try:
            return self._client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            self._set_timeout(self.settings.command_timeout_s)

    def _set_timeout(self, timeout_s: float) -> None:
        # A long MIGRATE of a large key needs more time than a PING.
        connection = self._client.connection
        if connection is None:
            return
        connection.socket_timeout = timeout_s
        sock = getattr(connection, "_sock", None)
        if sock is not None:
            sock.settimeout(timeout_s)


def _refused(
    address: Address, command: str, err: redis.AuthenticationError
) -> RedisAuthenticationError:
    return RedisAuthenticationError(
        address=str(address),
        command=command,
        problem=f"authentication failed ({truncate(str(err), 80)}); check the "
        f"password file or {PASSWORD_ENV} and {USERNAME_ENV}",
    )


def _reply_text(err: redis.ResponseError) -> str:
    # redis-py strips the code (READONLY, MOVED, CLUSTERDOWN...) from some
    # replies into ``status_code``; the message keeps the whole reply.
    text = str(err)
    code = getattr(err, "status_code", None)
    if code and not text.startswith(f"{code} "):
        return f"{code} {text}"
    return text


def decode(reply: Any) -> str:
    """A text reply as str."""
    if isinstance(reply, bytes):
        return reply.decode("utf-8", errors="replace")
    return str(reply)


def describe(args: Sequence[Arg]) -> str:
    """A command for a message: its name, never its values or a password."""
    words = [decode(a) for a in args[:2]]
    if words and words[0].upper() in {"CLUSTER", "CONFIG", "MEMORY", "CLIENT"}:
        return " ".join(w.upper() for w in words)
    return words[0].upper() if words else ""
