"""``ollama-deck plan FILE`` and ``apply FILE``: a desired model set from a TOML file,
compared with what each host has, and applied as one group.

``plan`` exits as ``terraform plan -detailed-exitcode`` does: 0 when every host matches,
2 when changes are pending, 1 on any error (a usage error too, so that 2 means one thing).
``apply`` shows the plan, asks unless ``--yes``, queues it as one group and follows it as
``pull`` does: 0 once every host matches.
"""

from __future__ import annotations

from typing import NoReturn

import click

from ..client import DeckAPIError
from ..client import DeckClient
from ..client import dumps
from ..client import read_desired_models
from ..schemas import HostPlan
from ..schemas import Operation
from ..schemas import Plan
from .commands import deck_errors
from .commands import EXIT_FAILED
from .commands import exit_with
from .commands import failure_of
from .commands import follow_options
from .commands import json_option
from .commands import run_operations
from .commands import url_option
from .display import Display

EXIT_PENDING = 2
# How each list of a host's plan is marked, in the order shown.
MARKS = (
    ("missing", "+", "to pull"),
    ("in_progress", "~", "being pulled"),
    ("delete", "-", "to delete"),
    ("busy", "!", "not declared, but in use: kept"),
    ("in_place", "=", "in place"),
    ("undeclared", "?", "not declared: kept (no prune)"),
)


class PlanUsageError(click.UsageError):
    exit_code = EXIT_FAILED


class DetailedExitCommand(click.Command):
    """A command whose exit status 2 means "changes pending", so that a usage error
    (click's 2) exits 1 like any other error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise PlanUsageError(exc.message, exc.ctx) from None


def plan_lines(plan: Plan) -> list[str]:
    """The plan as a person reads it: each host, each model marked, then a summary."""
    lines: list[str] = []
    width = max([len(m) for h in plan.hosts for key, _, _ in MARKS for m in _of(h, key)] + [8])
    for host in plan.hosts:
        if host.error is not None:
            lines.append(f"{host.host}: cannot plan: {host.error}")
            continue
        lines.append(f"{host.host}{' (prune)' if host.prune else ''}")
        shown = 0
        for key, mark, said in MARKS:
            for model in _of(host, key):
                lines.append(f"  {mark} {model.ljust(width)}  {said}")
                shown += 1
        if not shown:
            lines.append("  (no models declared or installed)")
    lines.append(summary(plan))
    return lines


def summary(plan: Plan) -> str:
    counts = {key: sum(len(_of(h, key)) for h in plan.hosts) for key, _, _ in MARKS}
    parts = [
        f"{counts['missing']} to pull" if counts["missing"] else "",
        f"{counts['delete']} to delete" if counts["delete"] else "",
        f"{counts['in_progress']} being pulled" if counts["in_progress"] else "",
    ]
    said = ", ".join(p for p in parts if p)
    hosts = len(plan.hosts)
    on = f"on {hosts} host{'s' if hosts != 1 else ''}"
    if plan.errors:
        failed = f"{plan.errors} host{'s' if plan.errors != 1 else ''} could not be planned"
        return f"Plan: {said or 'no changes'} {on}; {failed}."
    if not plan.pending:
        return f"No changes: every host matches ({counts['in_place']} models in place {on})."
    return f"Plan: {said} {on}."


def _of(host: HostPlan, key: str) -> list[str]:
    return list(getattr(host, key))


def show_plan(plan: Plan, *, err: bool = False) -> None:
    for line in plan_lines(plan):
        click.echo(line, err=err)


def planned_exit(plan: Plan) -> int:
    """terraform's -detailed-exitcode: 1 an error, 2 changes pending, 0 nothing to do."""
    if plan.errors:
        return EXIT_FAILED
    return EXIT_PENDING if plan.pending else 0


@click.command(cls=DetailedExitCommand)
@click.argument("file", metavar="FILE")
@url_option
@json_option("Print the plan as one JSON document.")
def plan(file: str, url: str, as_json: bool) -> NoReturn:
    """Show what 'apply FILE' would do on each host: the models missing there (to pull),
    those being pulled already, those it would delete (only with prune), and those in
    place.

    FILE is a desired model set in TOML: [all] models = [...] for every host,
    [hosts.NAME] models = [...] and prune = true per host.

    Exits 0 when every host matches, 2 when changes are pending, 1 on an error (as
    'terraform plan -detailed-exitcode').
    """
    try:
        result = DeckClient(url).plan(read_desired_models(file))
    except DeckAPIError as exc:
        failure_of(exc).show()
        exit_with(EXIT_FAILED)
    if as_json:
        click.echo(dumps(result))
    else:
        show_plan(result)
    exit_with(planned_exit(result))


@click.command()
@click.argument("file", metavar="FILE")
@url_option
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@follow_options
@deck_errors
def apply(file: str, url: str, yes: bool, cancel_on_interrupt: bool, as_json: bool) -> None:
    """Make each host match FILE (a desired model set, see 'plan'): show the plan, ask
    (unless --yes), then queue it as one group of pulls and, with prune, deletes, and
    show its progress until it ends.

    Exits 0 once every host matches, 1 when something failed or a host could not be
    planned. Ctrl-C detaches, as for 'pull'.
    """
    client = DeckClient(url)
    desired = read_desired_models(file)
    shown = client.plan(desired)
    show_plan(shown, err=as_json)  # with --json, stdout holds the events alone
    if not shown.pending:
        exit_with(planned_exit(shown))
    if shown.changes and not yes:
        if not click.confirm("Apply these changes?", err=True):
            click.echo("Apply cancelled.", err=True)
            exit_with(EXIT_FAILED)
    applied = client.apply(desired)
    for left in applied.skipped:
        click.echo(f"ollama-deck: left out {left.model} on {left.host}: {left.reason}", err=True)
    group = applied.group
    if group is None:  # another apply (or the reconciler) got there first
        click.echo("Nothing to do any more: every host matches.", err=True)
        exit_with(planned_exit(applied.plan))

    def start(display: Display, started: list[Operation]) -> int:
        for host in applied.plan.hosts:
            if host.error is not None:
                display.refused(host.host, DeckAPIError(host.error, code="host_error"))
        started.append(group)
        return applied.plan.errors + len(applied.skipped)

    run_operations(
        client, start, as_json=as_json, cancel_on_interrupt=cancel_on_interrupt, what="changes"
    )


FLEET_COMMANDS = (plan, apply)
