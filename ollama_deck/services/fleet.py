"""Fleets: one action across several Ollama hosts, and declared model sets.

An action across hosts (pull, update, delete with ``hosts``) is a *group*: an operation of
kind ``group`` whose children are the per-host operations (``store.create_group``). A
desired model set says which models each host should have; :func:`plan_fleet` compares it
with what each host has and what operations are doing, a pure function, and
:meth:`Fleet.apply` queues what the plan says as one group: pulls for what is missing (an
active fetch of it is joined), deletes for what is undeclared where ``prune`` is set.
A delete is never planned for a model an operation is using, and the database's
one-active-operation-per-model rule keeps it so between the plan and the delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Literal

from ..errors import DeckError
from ..errors import NotFound
from ..lifecycle import FETCHING
from ..lifecycle import Kind
from ..schemas import DesiredModels
from .hosts import Hosts
from .hosts import OllamaHost
from .names import check_registry
from .names import InvalidModelName
from .names import parse_model_name
from .runner import Runner
from .store import GroupCreated
from .store import OperationStore
from .updates import registry_allowed

ALL = "*"
HostChoice = Sequence[str] | Literal["*"]


# ---------------------------------------------------------------------- the plan (pure)


@dataclass(frozen=True)
class HostDesire:
    """What one host should have: model names (display form, each once) and prune."""

    models: tuple[str, ...]
    prune: bool


@dataclass
class HostPlan:
    host: str
    prune: bool
    missing: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    in_place: list[str] = field(default_factory=list)
    in_progress: list[str] = field(default_factory=list)
    undeclared: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def changes(self) -> int:
        return len(self.missing) + len(self.delete)


@dataclass
class FleetPlan:
    hosts: list[HostPlan]

    @property
    def changes(self) -> int:
        """Models to pull and to delete."""
        return sum(host.changes for host in self.hosts)

    @property
    def pending(self) -> int:
        """Changes, and models an operation is fetching already: a host that does not match
        yet, whether or not applying has anything to start."""
        return self.changes + sum(len(host.in_progress) for host in self.hosts)

    @property
    def errors(self) -> int:
        return sum(1 for host in self.hosts if host.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "hosts": [
                {
                    "host": h.host,
                    "prune": h.prune,
                    "missing": h.missing,
                    "delete": h.delete,
                    "in_place": h.in_place,
                    "in_progress": h.in_progress,
                    "undeclared": h.undeclared,
                    "busy": h.busy,
                    "error": h.error,
                }
                for h in self.hosts
            ],
            "changes": self.changes,
            "pending": self.pending,
            "errors": self.errors,
        }


def desires(desired: DesiredModels, host_names: Sequence[str]) -> dict[str, HostDesire]:
    """Each host's models and prune, in the configuration's order: ``all`` applies to every
    configured host, ``hosts.<name>`` adds to it (its ``prune`` wins). Hosts named by
    neither are left out of the plan."""
    found: dict[str, HostDesire] = {}
    for name in host_names:
        own = desired.hosts.get(name)
        if desired.all is None and own is None:
            continue
        names = (desired.all.models if desired.all else []) + (own.models if own else [])
        # The host's own ``prune`` when its table says it, else the one under ``all``.
        if own is not None and "prune" in own.model_fields_set:
            prune = own.prune
        else:
            prune = bool(desired.all and desired.all.prune)
        found[name] = HostDesire(tuple(_unique(names)), prune)
    return found


def plan_host(
    host: str,
    desire: HostDesire,
    installed: Sequence[str] | None,
    active: Mapping[str, str],
    *,
    error: str | None = None,
) -> HostPlan:
    """One host's plan: ``installed`` are the names Ollama lists (None with ``error``: it
    did not answer); ``active`` maps the model keys of its active operations to their kinds.
    """
    plan = HostPlan(host, desire.prune, error=error)
    if installed is None:
        return plan
    have: dict[str, str] = {}
    for name in installed:
        have.setdefault(_key(name), name)
    wanted = {_key(name): name for name in desire.models}
    for key, name in wanted.items():
        if key in have:
            plan.in_place.append(have[key])
        elif active.get(key) in FETCHING:
            plan.in_progress.append(name)
        else:
            plan.missing.append(name)
    for key, name in have.items():
        if key in wanted:
            continue
        if not desire.prune or not _nameable(name):
            plan.undeclared.append(name)
        elif key in active:
            plan.busy.append(name)  # an operation uses it: never deleted under it
        else:
            plan.delete.append(name)
    return plan


def plan_fleet(
    wanted: Mapping[str, HostDesire],
    installed: Mapping[str, Sequence[str] | str],
    active: Mapping[str, Mapping[str, str]],
) -> FleetPlan:
    """The plan of every host in ``wanted``: ``installed`` maps a host to the names it
    has, or to the text of why it could not be asked; ``active`` a host to the keys and
    kinds of its active operations. A pure function of the three."""
    plans = []
    for host, desire in wanted.items():
        seen = installed.get(host, "not asked")
        if isinstance(seen, str):
            plans.append(plan_host(host, desire, None, {}, error=seen))
        else:
            plans.append(plan_host(host, desire, seen, active.get(host, {})))
    return FleetPlan(plans)


def plan_title(plan: FleetPlan, origin: str) -> str:
    """``apply: 2 to pull, 1 to delete``: what a group of the plan is called."""
    pulls = sum(len(h.missing) + len(h.in_progress) for h in plan.hosts)
    deletes = sum(len(h.delete) for h in plan.hosts)
    parts = [f"{pulls} to pull"] if pulls else []
    parts += [f"{deletes} to delete"] if deletes else []
    return f"{origin}: {', '.join(parts)}"


def _key(name: str) -> str:
    try:
        return parse_model_name(name).key
    except InvalidModelName:
        return name.lower()


def _nameable(name: str) -> bool:
    """A name the deck can ask Ollama to delete (a name it cannot parse is left alone)."""
    try:
        parse_model_name(name)
    except InvalidModelName:
        return False
    return True


def _unique(names: Iterable[str]) -> list[str]:
    """Display names, each model once (the first spelling wins)."""
    seen: dict[str, str] = {}
    for name in names:
        parsed = parse_model_name(name)
        seen.setdefault(parsed.key, parsed.display)
    return list(seen.values())


# ---------------------------------------------------------------------- the service


@dataclass
class Applied:
    plan: FleetPlan
    made: GroupCreated | None = None


class Fleet:
    """Actions across the configured hosts, and desired sets planned and applied."""

    def __init__(self, hosts: Hosts, store: OperationStore, runner: Runner) -> None:
        self.hosts = hosts
        self.store = store
        self.runner = runner

    def pick(self, names: HostChoice) -> list[OllamaHost]:
        """The hosts ``names`` names (each once, in the order given), or all for "*";
        UnknownHost (400) for a name that is not configured."""
        if names == ALL:
            return list(self.hosts)
        return [self.hosts.get(name) for name in dict.fromkeys(names)]

    # -- one action, several hosts ----------------------------------------------------

    def pull(
        self, model: str, names: HostChoice, *, not_before: float | None = None
    ) -> dict[str, Any]:
        """A group pulling ``model`` on each host (joining a pull already active there),
        each no earlier than ``not_before`` and within its host's download window."""
        display = parse_model_name(model).display
        targets = [(Kind.PULL, display, host.url) for host in self.pick(names)]
        return self._group(display, targets, not_before=not_before)

    def delete(self, model: str, names: HostChoice) -> dict[str, Any]:
        """A group deleting ``model`` on each host: children of kind ``delete``, each one
        call to Ollama, run by the runner without waiting for a pull's slot. A host that
        does not have the model is fine (``not installed``). Conflict (409) while an
        operation of the model is active on one of them: nothing is deleted then."""
        display = parse_model_name(model).display
        targets = [(Kind.DELETE, display, host.url) for host in self.pick(names)]
        return self._group(display, targets)

    def update(self, models: list[str] | None, names: HostChoice) -> dict[str, Any]:
        """A group updating ``models`` (all installed ones for None) on each host. A named
        model is updated where it is installed; NotFound (404) if no host has it."""
        allowed = self.runner.settings.allowed_registries
        wanted = None if models is None else [parse_model_name(m) for m in models]
        for name in wanted or []:
            check_registry(name, allowed)
        targets: list[tuple[Kind, str, str]] = []
        found: set[str] = set()
        for host in self.pick(names):
            have = {}
            for entry in host.client.tags():
                try:
                    parsed = parse_model_name(entry.get("name") or entry.get("model") or "")
                except InvalidModelName:
                    continue
                have[parsed.key] = parsed.display
            if wanted is None:
                chosen = [n for n in have.values() if registry_allowed(n, allowed)]
            else:
                chosen = [have[n.key] for n in wanted if n.key in have]
            found.update(parse_model_name(n).key for n in chosen)
            targets += [(Kind.UPDATE, name, host.url) for name in chosen]
        for name in wanted or []:
            if name.key not in found:
                raise NotFound(
                    f"{name} is not installed on any of those hosts", code="model_not_found"
                )
        if not targets:
            raise NotFound("no models are installed on those hosts", code="model_not_found")
        title = wanted[0].display if wanted and len(wanted) == 1 else "update"
        return self._group(title, targets)

    def _group(
        self,
        title: str,
        targets: list[tuple[Kind, str, str]],
        *,
        not_before: float | None = None,
    ) -> dict[str, Any]:
        made = self.runner.submit_group(title, targets, not_before=not_before)
        assert made.group is not None  # without skip_busy a group is made or refused
        return made.group

    # -- desired sets -----------------------------------------------------------------

    def plan(self, desired: DesiredModels) -> FleetPlan:
        """What applying ``desired`` would do on each host it names, as things are now."""
        wanted = desires(desired, [host.name for host in self.hosts])
        installed: dict[str, Sequence[str] | str] = {}
        for name in wanted:
            host = self.hosts.get(name)
            try:
                installed[name] = [
                    entry.get("name") or entry.get("model") or "" for entry in host.client.tags()
                ]
            except DeckError as exc:
                installed[name] = exc.message
        return plan_fleet(wanted, installed, self._active())

    def apply(
        self, desired: DesiredModels, *, origin: str = "apply", join_pending: bool = True
    ) -> Applied:
        """Plan ``desired`` and queue the plan as one group: pulls of what is missing (and
        of what is being fetched, joined, so the group ends when the host matches) and
        deletes where pruned. A change another operation got to first is skipped.

        Without ``join_pending`` (the reconciler) a plan whose only pending models are
        being fetched already makes no group: nothing would start.
        """
        plan = self.plan(desired)
        if not (plan.pending if join_pending else plan.changes):
            return Applied(plan)
        targets: list[tuple[Kind, str, str]] = []
        for host_plan in plan.hosts:
            url = self.hosts.get(host_plan.host).url
            fetch = host_plan.missing + host_plan.in_progress
            targets += [(Kind.PULL, model, url) for model in fetch]
            targets += [(Kind.DELETE, model, url) for model in host_plan.delete]
        made = self.runner.submit_group(plan_title(plan, origin), targets, skip_busy=True)
        return Applied(plan, made)

    def _active(self) -> dict[str, dict[str, str]]:
        """Host name -> model key -> kind, of every active operation (groups aside)."""
        names = self.store.host_names
        found: dict[str, dict[str, str]] = {}
        for row in self.store.active():
            if row["kind"] == Kind.GROUP:
                continue
            host = names.get(row["host"]) or row["host"]
            found.setdefault(host, {})[row["model_key"]] = row["kind"]
        return found


def skipped_json(made: GroupCreated | None, names: Mapping[str, str]) -> list[dict[str, str]]:
    """The changes a group left out, with why: what the API answers as ``skipped``."""
    if made is None:
        return []
    return [
        {
            "host": names.get(spec.host, spec.host),
            "model": spec.model,
            "reason": f"a {row['kind']} of it is {row['status']}",
        }
        for spec, row in made.skipped
    ]
