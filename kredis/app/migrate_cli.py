"""``kredis migrate``: move hash slots and their keys between masters.

Reads the moves, the connection settings and the password (from a file or the
environment, never from argv), runs the migration engine and shows progress:
a bar on a terminal, log lines otherwise. It holds no migration logic of its
own. Exit codes: 0 done, 1 the migration failed, 2 bad input.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from kredis.adapters.redis_client import (
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_CONNECT_TIMEOUT_S,
    ConnectionSettings,
    CredentialsError,
    TlsFiles,
    read_credentials,
)
from kredis.adapters.redis_migration import (
    MigrationProgress,
    MigrationReport,
    MigrationTuning,
    Move,
    MoveError,
    check_moves,
    migrate,
    parse_move,
)
from kredis.app.logs import LogFormat, setup_logging
from kredis.domain.errors import KredisError
from kredis.domain.slots import count_slots

logger = logging.getLogger("kredis.migrate")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# Without a terminal, progress is logged at most this often.
LOG_INTERVAL_S = 1.0
_DEFAULTS = MigrationTuning()


def register(app: typer.Typer) -> None:
    """Add the ``migrate`` command to a typer application."""
    app.command("migrate")(migrate_command)


def migrate_command(
    moves: Annotated[
        list[str],
        typer.Option(
            "--move",
            help="'SOURCE TARGET SLOTS', e.g. 'ID@10.0.0.1:6379 10.0.0.2:6379 "
            "0-1364,2000'; SOURCE and TARGET are host:port, optionally "
            "prefixed by nodeid@. Repeatable.",
        ),
    ],
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            help="A file whose first line is the Redis password (else "
            "KREDIS_REDIS_PASSWORD_FILE or KREDIS_REDIS_PASSWORD).",
            dir_okay=False,
        ),
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-ca", help="CA bundle that verifies the nodes.", exists=True
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="Client certificate.", exists=True),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="Client certificate's key.", exists=True),
    ] = None,
    connect_timeout: Annotated[
        float,
        typer.Option("--connect-timeout", help="Seconds to connect.", min=0.001),
    ] = DEFAULT_CONNECT_TIMEOUT_S,
    command_timeout: Annotated[
        float,
        typer.Option("--command-timeout", help="Seconds per reply.", min=0.001),
    ] = DEFAULT_COMMAND_TIMEOUT_S,
    slot_batch: Annotated[
        int,
        typer.Option("--slot-batch", help="Slots opened per round trip.", min=1),
    ] = _DEFAULTS.slot_batch,
    key_batch: Annotated[
        int,
        typer.Option("--key-batch", help="Keys per MIGRATE.", min=1),
    ] = _DEFAULTS.key_batch,
    log_format: Annotated[
        LogFormat | None,
        typer.Option("--log-format", help="Log lines as text or JSON."),
    ] = None,
) -> None:
    """Move hash slots and their keys from source masters to target masters."""
    if log_format is not None or not logging.getLogger("kredis").handlers:
        setup_logging(log_format or LogFormat.TEXT)
    try:
        parsed = [parse_move(text) for text in moves]
        check_moves(parsed)
        credentials = read_credentials(password_file=password_file)
        tuning = MigrationTuning(slot_batch=slot_batch, key_batch=key_batch)
    except (MoveError, CredentialsError) as err:
        _fail(str(err), EXIT_BAD_INPUT)
    tls = None
    if tls_ca or tls_cert or tls_key:
        tls = TlsFiles(ca=tls_ca, cert=tls_cert, key=tls_key)
    settings = ConnectionSettings(
        connect_timeout_s=connect_timeout,
        command_timeout_s=command_timeout,
        credentials=credentials,
        tls=tls,
    )

    try:
        if sys.stdout.isatty():
            report = _with_bar(parsed, settings, tuning)
        else:
            report = migrate(
                parsed, settings=settings, tuning=tuning, on_progress=_LogProgress()
            )
    except KredisError as err:
        logger.error("migration failed problem=%s", " ".join(str(err).split()))
        _fail(str(err), EXIT_FAILED)
    typer.echo(
        f"moved {report.slots_moved} slots and {report.keys_moved} keys in "
        f"{report.seconds:.1f} s ({report.rate:.0f} keys/s); "
        f"{report.slots_already_moved} slots were already moved"
    )


def _with_bar(
    moves: list[Move], settings: ConnectionSettings, tuning: MigrationTuning
) -> MigrationReport:
    total = sum(count_slots(move.slots) for move in moves)
    shown = 0
    # The bar and the closing summary say what the engine's info lines say;
    # those lines would break the bar.
    engine = logging.getLogger(migrate.__module__)
    level = engine.level
    engine.setLevel(logging.WARNING)
    with typer.progressbar(
        length=total, label="migrating slots", item_show_func=_describe
    ) as bar:

        def show(progress: MigrationProgress) -> None:
            nonlocal shown
            bar.current_item = progress
            bar.update(progress.slots_done - shown)
            shown = progress.slots_done

        try:
            return migrate(moves, settings=settings, tuning=tuning, on_progress=show)
        finally:
            engine.setLevel(level)


def _describe(progress: MigrationProgress | None) -> str | None:
    if progress is None:
        return None
    return f"keys={progress.keys_moved} rate={progress.rate:.0f}/s"


class _LogProgress:
    """Logs progress snapshots, at most one line per interval and the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0.0

    def __call__(self, progress: MigrationProgress) -> None:
        now = time.monotonic()
        with self._lock:
            finished = progress.slots_done == progress.slots_total
            if not finished and now - self._last < LOG_INTERVAL_S:
                return
            self._last = now
        logger.info(
            "migration progress slots=%d/%d keys=%d rate=%.0f source=%s",
            progress.slots_done,
            progress.slots_total,
            progress.keys_moved,
            progress.rate,
            progress.source,
        )


def _fail(message: str, code: int) -> typer.Exit:
    # One line: replies from remote nodes may carry newlines.
    typer.echo("error: " + " ".join(message.split()), err=True)
    raise typer.Exit(code)
