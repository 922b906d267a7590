"""The client commands of ``ollama-deck``: pulls that outlive the terminal, and the rest.

Each command is a click command on :class:`~ollama_deck.client.DeckClient`; ``register``
adds them to the ``ollama-deck`` group. A deck that cannot be reached, a refused token or
an unknown name is one line on stderr and a non-zero exit status, never a traceback.

Exit statuses: 0 all went well; 1 an operation failed (or was cancelled), or the deck
refused the request; 2 bad usage; 3 the deck could not be reached; 130 Ctrl-C (the
operations go on in the deck unless ``--cancel-on-interrupt``).
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import IO
from typing import NoReturn
from typing import TypeVar

import click
from pydantic import TypeAdapter
from pydantic import ValidationError

from ..client import DeckAPIError
from ..client import DeckClient
from ..client import DeckUnreachable
from ..client import DEFAULT_URL
from ..client import dumps
from ..client import TOKEN_VARIABLE
from ..client import URL_VARIABLE
from ..lifecycle import ACTIVE
from ..lifecycle import FINAL
from ..lifecycle import Kind
from ..lifecycle import Status
from ..schemas import LogLine
from ..schemas import NotBefore
from ..schemas import Operation
from ..schemas import Operations
from ..services.names import InvalidModelName
from ..services.names import parse_model_name
from . import text
from .display import Display
from .display import display_for
from .display import PlainDisplay
from .follow import follow

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
# Errors that concern one model of several: the others still start.
PER_MODEL_STATUSES = (400, 404, 409, 429)

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """One line on stderr, ``ollama-deck: ...``, and an exit status; no traceback."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ollama-deck: {self.message}", err=True, file=file)


class Unreachable(Failure):
    exit_code = EXIT_UNREACHABLE


def failure_of(error: DeckAPIError) -> Failure:
    """What a user reads for an error of the deck (or of reaching it), with what to do."""
    if isinstance(error, DeckUnreachable):
        return Unreachable(f"{error.message} (set --url or {URL_VARIABLE})")
    if error.status == 401 and error.code == "unauthorized":
        if os.environ.get(TOKEN_VARIABLE):
            return Failure(f"the deck refused the token in {TOKEN_VARIABLE} (401)")
        return Failure(f"the deck needs a token: set {TOKEN_VARIABLE} to it (401)")
    return Failure(error.message)


def deck_errors(command: F) -> F:
    """Turn the client's errors into one-line failures."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DeckAPIError as exc:
            raise failure_of(exc) from None

    return wrapper  # type: ignore[return-value]


def url_option(command: F) -> F:
    return click.option(
        "--url",
        envvar=URL_VARIABLE,
        default=DEFAULT_URL,
        show_default=True,
        help=f"The deck's URL, with its prefix when embedded (http://host/models); "
        f"default ${URL_VARIABLE}. The token comes from ${TOKEN_VARIABLE}.",
    )(command)


def host_option(command: F) -> F:
    return click.option(
        "--host",
        "ollama_host",
        default=None,
        metavar="NAME",
        help="The Ollama host, by its name in the deck's configuration (default: its first).",
    )(command)


def hosts_option(command: F) -> F:
    return click.option(
        "--hosts",
        "ollama_hosts",
        default=None,
        metavar="NAMES",
        help="Several Ollama hosts, comma-separated, or '*' for every host: one group "
        "operation across them (shown with a line per host).",
    )(command)


def host_scope(host: str | None, hosts: str | None) -> dict[str, Any]:
    """``host`` and ``hosts`` as the client takes them; both at once is a usage error."""
    if host is not None and hosts is not None:
        raise click.UsageError("give --host or --hosts, not both")
    if hosts is None:
        return {"host": host}
    names = [name.strip() for name in hosts.split(",") if name.strip()]
    if not names:
        raise click.UsageError("--hosts needs host names, comma-separated, or '*'")
    return {"hosts": "*" if names == ["*"] else names}


def start_time(value: str | None) -> str | None:
    """``--at``, checked as the deck checks ``not_before``: bad usage (2) before any pull."""
    if value is None:
        return None
    try:
        TypeAdapter(NotBefore).validate_python(value)
    except ValidationError:
        raise click.BadParameter(
            "use a time of day such as 01:00 (the next one), or a date and time such as "
            "2026-12-01T01:00 (the deck's time zone) or 2026-12-01T01:00:00Z, at most a year "
            "ahead",
            param_hint="'--at'",
        ) from None
    return value


def json_option(help_text: str) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def follow_options(command: F) -> F:
    command = click.option(
        "--cancel-on-interrupt",
        is_flag=True,
        help="Ctrl-C cancels the operations (as 'ollama pull' does) instead of leaving "
        "them running in the deck.",
    )(command)
    return json_option("Print every event as a line of JSON (NDJSON).")(command)


# ---------------------------------------------------------------------- following


def run_operations(
    client: DeckClient,
    start: Callable[[Display, list[Operation]], int],
    *,
    as_json: bool,
    detach: bool = False,
    cancel_on_interrupt: bool = False,
    what: str = "operations",
) -> NoReturn:
    """Start operations (``start`` appends each to the list and returns how many were
    refused), then follow them to their end, or return at once with ``detach``."""
    # Detached, stdout holds only the ids (or one JSON document): refusals go to stderr.
    display = PlainDisplay(sys.stderr, sys.stderr) if detach else display_for(as_json)
    started: list[Operation] = []
    try:
        refused = start(display, started)
        started[:] = {op.id: op for op in started}.values()  # a model named twice: one
        if detach:
            print_started(client, started, as_json)
            exit_with(EXIT_FAILED if refused else 0)
        outcome = follow(client, started, display)
    except KeyboardInterrupt:
        display.close()
        active = [op for op in started if not _ended(op, display)]
        if cancel_on_interrupt:
            cancel_all(client, active)
        else:
            print_detached(client, active, what)
        exit_with(EXIT_INTERRUPTED)
    display.close()
    failed = [s for s in outcome.finals.values() if s.status != Status.SUCCEEDED]
    if as_json:  # the display said it on stdout, as JSON; say it for people too
        for state in failed:
            click.echo(f"ollama-deck: {state.model} {text.final_line(state)}", err=True)
    for op_id, error in outcome.lost.items():
        model = display.rows[op_id].model
        click.echo(f"ollama-deck: lost {model} ({op_id}): {error.message}", err=True)
    if outcome.lost and all(isinstance(e, DeckUnreachable) for e in outcome.lost.values()):
        exit_with(EXIT_UNREACHABLE)
    exit_with(EXIT_FAILED if failed or refused or outcome.lost else 0)


def _ended(op: Operation, display: Display) -> bool:
    row = display.rows.get(op.id)
    return row.final if row is not None else op.status in FINAL


def exit_with(code: int) -> NoReturn:
    raise click.exceptions.Exit(code)


def attach_command(client: DeckClient, ids: Sequence[str]) -> str:
    """The command that follows ``ids`` again (with ``--url`` when it was given). Ids are
    shortened as ``ps`` shows them: attach takes a prefix, and says so if one is ambiguous."""
    parts = ["ollama-deck", "attach"]
    source = click.get_current_context().get_parameter_source("url")
    if source is click.core.ParameterSource.COMMANDLINE:
        parts += ["--url", client.url]
    return shlex.join(parts + [text.short_id(op_id) for op_id in ids])


def print_started(client: DeckClient, started: list[Operation], as_json: bool) -> None:
    if as_json:
        click.echo(dumps(Operations(operations=started)))
        return
    for op in started:
        click.echo(f"{op.id}  {op.model}")
    if started:
        click.echo(f"Follow: {attach_command(client, [op.id for op in started])}", err=True)


def print_detached(client: DeckClient, active: list[Operation], what: str) -> None:
    if not active:
        return
    say = functools.partial(click.echo, err=True)
    one = len(active) == 1
    noun, verb = (what[:-1], "goes") if one else (what, "go")
    say(f"Detached: {len(active)} {noun} {verb} on in the deck.")
    for op in active:
        say(f"  {op.id}  {op.model}")
    say(f"Attach again: {attach_command(client, [op.id for op in active])}")


def cancel_all(client: DeckClient, active: list[Operation]) -> None:
    try:
        for op in active:
            try:
                state = client.cancel(op.id)
            except DeckAPIError as exc:
                click.echo(f"ollama-deck: {op.model}: {exc.message}", err=True)
                continue
            ended = "cancelled" if state.status in FINAL else "cancelling"
            click.echo(f"{ended} {op.model} ({op.id})", err=True)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop asking


def start_each(
    names: Sequence[str], start_one: Callable[[str], Operation]
) -> Callable[[Display, list[Operation]], int]:
    """A ``start`` for ``run_operations``: one operation per name, refusals shown per name
    (an error that is not about the name, such as a 401, stops them all)."""

    def start(display: Display, started: list[Operation]) -> int:
        refused = 0
        for name in names:
            try:
                started.append(start_one(name))
            except DeckUnreachable:
                raise
            except DeckAPIError as exc:
                if exc.status not in (None, *PER_MODEL_STATUSES) or exc.code == "unknown_host":
                    raise
                display.refused(name, exc)
                refused += 1
        return refused

    return start


# ---------------------------------------------------------------------- commands


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@url_option
@host_option
@hosts_option
@click.option("--detach", "-d", is_flag=True, help="Start the pulls, print their ids, return.")
@click.option(
    "--at",
    "not_before",
    default=None,
    metavar="TIME",
    callback=lambda _ctx, _param, value: start_time(value),
    help="Start no earlier than TIME: 01:00 (the next one), or a date and time such as "
    "2026-12-01T01:00 (the deck's time zone unless it names one). Until then the pulls are "
    "scheduled; with --detach the command returns at once.",
)
@follow_options
@deck_errors
def pull(
    models: tuple[str, ...],
    url: str,
    ollama_host: str | None,
    ollama_hosts: str | None,
    detach: bool,
    not_before: str | None,
    cancel_on_interrupt: bool,
    as_json: bool,
) -> None:
    """Pull MODELs in the deck and show their progress until they end.

    A pull of a model already being pulled joins it. With --hosts, each model is pulled
    on each host as one group. Ctrl-C detaches: the pulls go on in the deck, and
    'ollama-deck attach' follows them again. Exits 0 when every pull succeeded, 1 when
    one failed.
    """
    client = DeckClient(url)
    scope = host_scope(ollama_host, ollama_hosts)
    run_operations(
        client,
        start_each(models, lambda name: client.pull(name, not_before=not_before, **scope)),
        as_json=as_json,
        detach=detach,
        cancel_on_interrupt=cancel_on_interrupt,
        what="pulls",
    )


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="ID|MODEL...")
@url_option
@host_option
@follow_options
@deck_errors
def attach(
    targets: tuple[str, ...],
    url: str,
    ollama_host: str | None,
    cancel_on_interrupt: bool,
    as_json: bool,
) -> None:
    """Follow operations to their end: by id (or the start of one, as 'ps' shows it) or
    by model (its active operation, else its latest).

    The same display and exit statuses as 'pull'.
    """
    client = DeckClient(url)

    def start(display: Display, started: list[Operation]) -> int:
        started += [resolve(client, target, host=ollama_host) for target in targets]
        return 0

    run_operations(
        client, start, as_json=as_json, cancel_on_interrupt=cancel_on_interrupt, what="pulls"
    )


@click.command()
@click.argument("models", nargs=-1, metavar="[MODEL...]")
@url_option
@host_option
@hosts_option
@click.option("--detach", "-d", is_flag=True, help="Start the updates, print their ids, return.")
@follow_options
@deck_errors
def update(
    models: tuple[str, ...],
    url: str,
    ollama_host: str | None,
    ollama_hosts: str | None,
    detach: bool,
    cancel_on_interrupt: bool,
    as_json: bool,
) -> None:
    """Update installed MODELs (every installed model when none is named) and show the
    progress: each says whether it changed ('updated') or was already current. With
    --hosts, on each host that has them, as one group."""
    client = DeckClient(url)
    scope = host_scope(ollama_host, ollama_hosts)

    def start(display: Display, started: list[Operation]) -> int:
        started += client.update(list(models) or None, **scope)
        if not started:
            click.echo("No models installed: nothing to update.", err=True)
        return 0

    run_operations(
        client,
        start,
        as_json=as_json,
        detach=detach,
        cancel_on_interrupt=cancel_on_interrupt,
        what="updates",
    )


@click.command()
@click.option("--all", "-a", "show_all", is_flag=True, help="Finished operations too.")
@url_option
@json_option("Print the operations as one JSON document.")
@deck_errors
def ps(show_all: bool, url: str, as_json: bool) -> None:
    """List operations: the active ones (queued, scheduled, running, paused), or all
    with --all."""
    client = DeckClient(url)
    operations = client.list(status=None if show_all else ACTIVE)
    if as_json:
        click.echo(dumps(Operations(operations=operations)))
        return
    if not operations:
        more = "" if show_all else " (ps --all lists finished ones too)"
        click.echo(f"No operations{'' if show_all else ' running'}.{more}")
        return
    now = datetime.now().timestamp()
    rows = [
        [
            text.short_id(op.id),
            op.model,
            op.host,
            text.stage(op),
            f"{text.percent(op)}%",
            text.speed(op.speed) if op.active else "",
            text.duration(op.eta_seconds) if op.status == Status.RUNNING else "",
            text.age(op.created_at, now),
        ]
        for op in operations
    ]
    headers = ["ID", "MODEL", "HOST", "STATUS", "PERCENT", "SPEED", "ETA", "AGE"]
    click.echo(text.table(headers, rows))


@click.command()
@click.argument("target", metavar="ID|MODEL")
@url_option
@host_option
@click.option("--follow", "-f", "keep_following", is_flag=True, help="Then follow new lines.")
@json_option("Print the lines as one JSON document (with -f: a JSON line each).")
@deck_errors
def logs(
    target: str, url: str, ollama_host: str | None, keep_following: bool, as_json: bool
) -> None:
    """Print an operation's log (the lines the deck keeps, OLLAMA_DECK_LOG_LINES)."""
    client = DeckClient(url)
    op = resolve(client, target, host=ollama_host)
    op = client.get(op.id, log=op.log_count if op.log_count is not None else None)
    lines = op.log or []
    if as_json and not keep_following:
        click.echo(dumps({"id": op.id, "model": op.model, "log": lines}))
        return
    for line in lines:
        print_log_line(line, as_json)
    if not keep_following or op.status in FINAL:
        return
    last = max([line.seq for line in lines] + [op.seq])
    try:
        for event in client.watch(op.id, last_event_id=last):
            if isinstance(event.data, LogLine):
                print_log_line(event.data, as_json)
    except KeyboardInterrupt:
        exit_with(EXIT_INTERRUPTED)


def print_log_line(line: LogLine, as_json: bool) -> None:
    if as_json:
        click.echo(dumps(line))
        return
    when = text.parse_time(line.time)
    stamp = datetime.fromtimestamp(when).strftime("%H:%M:%S") if when is not None else ""
    click.echo(f"{stamp}  {line.text}" if stamp else line.text)


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="ID|MODEL...")
@url_option
@host_option
@deck_errors
def cancel(targets: tuple[str, ...], url: str, ollama_host: str | None) -> None:
    """Cancel queued or running operations, by id or by model. Ollama keeps what a pull
    downloaded: pulling the model again resumes."""

    def said(op: Operation, state: Operation) -> str:
        if state.status in FINAL:
            return f"cancelled {op.model} ({op.id})"
        return f"cancelling {op.model} ({op.id}): it is winding down"

    client = DeckClient(url)
    act_on_each(client, targets, ollama_host, client.cancel, said)


def act_on_each(
    client: DeckClient,
    targets: Sequence[str],
    host: str | None,
    act: Callable[[str], Operation],
    said: Callable[[Operation, Operation], str],
) -> None:
    """``act`` on the active operation each target names, a line each (``said`` of the
    operation and its new state); one refused goes to stderr and the others go on, and
    the exit status is then 1."""
    failed = False
    for target in targets:
        op = resolve(client, target, host=host, active_only=True)
        try:
            state = act(op.id)
        except DeckUnreachable:
            raise
        except DeckAPIError as exc:
            failure_of(exc).show()
            failed = True
            continue
        click.echo(said(op, state))
    if failed:
        exit_with(EXIT_FAILED)


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="ID|MODEL...")
@url_option
@host_option
@deck_errors
def pause(targets: tuple[str, ...], url: str, ollama_host: str | None) -> None:
    """Pause queued, scheduled or running operations, by id or by model: the download
    stops, Ollama keeps what it fetched, and 'ollama-deck resume' goes on from there. A
    pull of the model meanwhile joins the paused operation."""

    def said(op: Operation, state: Operation) -> str:
        if state.status == Status.PAUSED:
            return f"paused {op.model} ({op.id})"
        return f"pausing {op.model} ({op.id}): its download is closing"

    client = DeckClient(url)
    act_on_each(client, targets, ollama_host, client.pause, said)


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="ID|MODEL...")
@url_option
@host_option
@deck_errors
def resume(targets: tuple[str, ...], url: str, ollama_host: str | None) -> None:
    """Resume operations a user paused, by id or by model: queued again (scheduled while
    a download window is closed or a start time is ahead), from where they stopped."""

    def said(op: Operation, state: Operation) -> str:
        when = f": {state.message}" if state.status == Status.SCHEDULED and state.message else ""
        return f"resumed {op.model} ({op.id}), {state.status}{when}"

    client = DeckClient(url)
    act_on_each(client, targets, ollama_host, client.resume, said)


@click.command("ls")
@url_option
@host_option
@json_option("Print the list as one JSON document.")
@deck_errors
def list_models(url: str, ollama_host: str | None, as_json: bool) -> None:
    """List the models installed on an Ollama host, with their sizes and the total."""
    client = DeckClient(url)
    listing = client.models(host=ollama_host)
    if as_json:
        click.echo(dumps(listing))
        return
    if listing.stale:
        seen = f", last seen {listing.cached_at}" if listing.cached_at else ""
        why = f": {listing.error}" if listing.error else ""
        click.echo(f"ollama-deck: Ollama ({listing.host}) does not answer{why}{seen}", err=True)
    if listing.models:
        rows = [[m.name, text.size(m.size)] for m in listing.models]
        click.echo(text.table(["NAME", "SIZE"], rows, right={1}))
    count = f"{listing.count} model{'s' if listing.count != 1 else ''}"
    click.echo(f"{count}, {text.size(listing.total_size)} on {listing.host}")
    for op in listing.pulls:
        click.echo(f"pulling {op.model}: {text.summary(op)}")


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@url_option
@host_option
@hosts_option
@json_option("With --hosts: print every event as a line of JSON (NDJSON).")
@deck_errors
def rm(
    models: tuple[str, ...],
    url: str,
    ollama_host: str | None,
    ollama_hosts: str | None,
    as_json: bool,
) -> None:
    """Delete installed models. With --hosts, each model on each host as one group (a
    host that does not have it is fine), shown until the deletes end."""
    client = DeckClient(url)
    scope = host_scope(ollama_host, ollama_hosts)
    if "hosts" in scope:
        run_operations(
            client,
            start_each(models, lambda name: client.delete_on(name, scope["hosts"])),
            as_json=as_json,
            what="deletes",
        )
    failed = False
    for model in models:
        try:
            click.echo(f"deleted {client.delete(model, host=ollama_host)}")
        except DeckUnreachable:
            raise
        except DeckAPIError as exc:
            failure_of(exc).show()
            failed = True
    if failed:
        exit_with(EXIT_FAILED)


COMMANDS = (pull, attach, ps, logs, cancel, pause, resume, list_models, rm, update)


def register(group: click.Group) -> None:
    """Add the client commands to ``group`` (the ``ollama-deck`` group of cli.py)."""
    from .fleet import FLEET_COMMANDS  # it builds on this module

    for command in (*COMMANDS, *FLEET_COMMANDS):
        group.add_command(command)


# ---------------------------------------------------------------------- finding operations


def resolve(
    client: DeckClient, target: str, *, host: str | None = None, active_only: bool = False
) -> Operation:
    """The operation ``target`` names: an id, the start of one (as ``ps`` shows it), or a
    model (its active operation, else its newest unless ``active_only``)."""
    if _is_uuid(target):
        return client.get(target)
    active = client.list(status=ACTIVE, limit=1000)
    found = _match(target, active, host)
    if found is None and not active_only:
        found = _match(target, client.list(limit=1000), host)
    if found is None:
        kind = "active operation" if active_only else "operation"
        on = f" on {host}" if host else ""
        raise Failure(
            f"no {kind} {target!r}{on}: give an id (ollama-deck ps{'' if active_only else ' --all'}"
            " lists them) or a model name"
        )
    return found


def _match(target: str, operations: list[Operation], host: str | None) -> Operation | None:
    prefix = target.lower()
    if len(prefix) >= 4 and all(c in "0123456789abcdef-" for c in prefix):
        by_id = [op for op in operations if op.id.startswith(prefix)]
        if len(by_id) > 1:
            raise Failure(f"{target!r} starts {len(by_id)} operation ids: give more of it")
        if by_id:
            return by_id[0]
    try:
        key = parse_model_name(target).key
    except InvalidModelName:
        return None
    mine = [
        op
        for op in operations
        if op.kind != Kind.GROUP  # a group is named by its id (its title is no model)
        and _key(op.model) == key
        and (host is None or host in (op.host, op.host_url))
    ]
    hosts = sorted({op.host for op in mine if op.active})
    if len(hosts) > 1:
        raise Failure(f"{target} is active on {', '.join(hosts)}: say which with --host")
    running = [op for op in mine if op.active]
    return next(iter(running or mine), None)


def _key(model: str) -> str:
    try:
        return parse_model_name(model).key
    except InvalidModelName:
        return model.lower()


def _is_uuid(text_: str) -> bool:
    try:
        uuid.UUID(text_)
    except ValueError:
        return False
    return len(text_) == 36
