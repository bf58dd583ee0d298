"""Carrying out the planner's cluster actions with native Redis commands.

One method per action kind that touches Redis: reset, meet, slots, replicate,
failover, forget and open-slot repair. Migrations of whole slot ranges are
not done here: they run as Jobs (``kredis migrate``). Every wait is bounded;
every failure is a ``RedisNodeError`` that names node, command and reply.
This module decides nothing: the plan says what, and it only says how.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from kredis.adapters.redis_client import (
    Address,
    ConnectionSettings,
    RedisNode,
    RedisNodeError,
    RedisReplyError,
    RedisUnreachableError,
)
from kredis.domain.actions import (
    AssignSlots,
    Failover,
    FailoverMode,
    FinishMigration,
    ForgetNode,
    MeetNode,
    Replicate,
    ResetNode,
)
from kredis.domain.errors import KredisError
from kredis.domain.nodes import ClusterView
from kredis.domain.slots import SlotRange

_log = logging.getLogger(__name__)
_POLL_S = 0.1


class ActionError(KredisError):
    """An action could not be carried out; the next pass plans again."""


@attrs.frozen
class ActionTimeouts:
    """How long the executor waits for Redis to catch up with a command."""

    # A replica learns its master's id by gossip a moment after a MEET.
    known_s: float = 15.0
    # A default failover needs the master's agreement; a forced one, votes.
    failover_s: float = 20.0


ResumeMigration = Callable[[FinishMigration, Address, Address], None]
"""Moves the keys of open slots from a live source to the target, then
closes them: the migration engine, given the action and both addresses."""


class RedisActions:
    """Runs cluster actions against the pods' Redis nodes."""

    def __init__(
        self,
        *,
        addresses: Mapping[str, Address],
        settings: ConnectionSettings,
        command_pod: str,
        resume: ResumeMigration,
        timeouts: ActionTimeouts | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = dict(addresses)
        self._settings = settings
        self._command_pod = command_pod
        self._resume = resume
        self._timeouts = timeouts or ActionTimeouts()
        self._sleep = sleep
        self._clock = clock

    def reset_node(self, action: ResetNode) -> None:
        """Empty the pod and make it a fresh node that knows nobody."""
        with self._node(action.pod) as node:
            # A replica refuses FLUSHALL; CLUSTER RESET empties it first.
            try:
                node.call("FLUSHALL")
            except RedisReplyError as err:
                if err.code != "READONLY":
                    raise
                node.call("CLUSTER", "RESET", "HARD")
                node.call("FLUSHALL")
            node.call("CLUSTER", "RESET", "HARD")

    def meet_node(self, action: MeetNode) -> None:
        """Introduce the pod to the cluster through the command pod."""
        address = self._address(action.pod)
        via = self._command_pod if self._command_pod != action.pod else ""
        if not via:
            raise ActionError(
                f"cannot meet pod {action.pod!r}: there is no other member to "
                "introduce it to"
            )
        with self._node(via) as node:
            node.call("CLUSTER", "MEET", address.host, address.port)

    def assign_slots(self, action: AssignSlots) -> None:
        """Give the pod slots: at creation with its epoch, or taken over."""
        args = _range_args(action.slots)
        with self._node(action.pod) as node:
            if action.from_node_id is not None:
                # The failed owner's claim is dropped and the new claim gets
                # the newest epoch, so every view prefers it.
                node.call("CLUSTER", "DELSLOTSRANGE", *args)
                node.call("CLUSTER", "ADDSLOTSRANGE", *args)
                node.call("CLUSTER", "BUMPEPOCH")
                return
            node.call("CLUSTER", "ADDSLOTSRANGE", *args)
            if action.config_epoch is not None:
                node.call("CLUSTER", "SET-CONFIG-EPOCH", action.config_epoch)

    def replicate(self, action: Replicate) -> None:
        """Make the pod a replica of the master, once it has heard of it."""
        with self._node(action.pod) as node:
            self._until_known(node, action.master_id)
            node.call("CLUSTER", "REPLICATE", action.master_id)

    def failover(self, action: Failover) -> None:
        """Promote the replica and wait until it reports itself master."""
        with self._node(action.pod) as node:
            args: tuple[str, ...] = ("CLUSTER", "FAILOVER")
            match action.mode:
                case FailoverMode.DEFAULT:
                    pass
                case FailoverMode.FORCE:
                    args += ("FORCE",)
                case FailoverMode.TAKEOVER:
                    args += ("TAKEOVER",)
            node.call(*args)
            deadline = self._clock() + self._timeouts.failover_s
            while self._clock() < deadline:
                if _role(node) == "master":
                    return
                self._sleep(_POLL_S)
        raise ActionError(
            f"pod {action.pod!r} was asked to fail over ({action.mode.value}) and "
            f"is still not a master after {self._timeouts.failover_s:.0f} s; the "
            "next pass looks again"
        )

    def forget_node(self, action: ForgetNode) -> None:
        """CLUSTER FORGET the id on every other pod, all within the ban window."""
        others = [p for p in sorted(self._addresses) if p != action.pod]
        problems: list[str] = []

        def forget(pod: str) -> None:
            try:
                with self._node(pod) as node:
                    node.call("CLUSTER", "FORGET", action.node_id)
            except RedisReplyError as err:
                if "Unknown node" in err.problem:
                    return
                if "forget myself" in err.problem:
                    return
                problems.append(str(err))
            except RedisUnreachableError as err:
                # A node that is down forgets by gossip once back, while the
                # others still ban the id for 60 s.
                _log.warning("forget skipped unreachable pod=%s error=%s", pod, err)

        # Parallel, so the 60 s ban that keeps gossip from re-adding the id
        # is in force on every node before it expires on the first.
        _parallel(forget, others)
        if problems:
            raise ActionError("; ".join(problems))

    def finish_migration(self, action: FinishMigration) -> None:
        """Close slots left open by an interrupted migration."""
        args = [s for r in action.slots for s in range(r.start, r.end + 1)]
        if action.target_id == action.source_id:
            # The move is called off: the owner keeps the slots.
            self._on_every_pod(
                [("CLUSTER", "SETSLOT", slot, "STABLE") for slot in args],
                skip=(),
            )
            return

        # A live source still holds keys: the migration is resumed.
        source = self._addresses.get(action.source)
        if source is not None:
            self._resume(action, source, self._address(action.target))
            return

        # The source is gone for good: the target is named owner, first on
        # itself, then everywhere else.
        owner = [
            ("CLUSTER", "SETSLOT", slot, "NODE", action.target_id) for slot in args
        ]
        with self._node(action.target) as node:
            _raise_first(node.pipeline(owner))
        self._on_every_pod(owner, skip=(action.target,))

    def _on_every_pod(
        self, commands: Sequence[Sequence[str | int]], *, skip: Iterable[str]
    ) -> None:
        skipped = set(skip)

        def send(pod: str) -> None:
            try:
                with self._node(pod) as node:
                    for reply in node.pipeline(commands):
                        if isinstance(reply, RedisReplyError):
                            _log.debug("setslot refused pod=%s reply=%s", pod, reply)
            except RedisUnreachableError as err:
                _log.warning("setslot skipped unreachable pod=%s error=%s", pod, err)

        _parallel(send, [p for p in sorted(self._addresses) if p not in skipped])

    def _until_known(self, node: RedisNode, node_id: str) -> None:
        deadline = self._clock() + self._timeouts.known_s
        while True:
            view = ClusterView.parse(node.text("CLUSTER", "NODES"))
            entry = view.by_id.get(node_id)
            if entry is not None and not entry.in_handshake:
                return
            if self._clock() >= deadline:
                raise ActionError(
                    f"node {node.address} has not heard of node {node_id} after "
                    f"{self._timeouts.known_s:.0f} s; the next pass looks again"
                )
            self._sleep(_POLL_S)

    def _address(self, pod: str) -> Address:
        address = self._addresses.get(pod)
        if address is None:
            raise ActionError(f"pod {pod!r} has no address to reach it at")
        return address

    def _node(self, pod: str) -> RedisNode:
        return RedisNode(self._address(pod), self._settings)


def _range_args(ranges: tuple[SlotRange, ...]) -> list[int]:
    return [bound for r in ranges for bound in (r.start, r.end)]


def _role(node: RedisNode) -> str:
    reply = node.call("ROLE")
    first = reply[0]
    return first.decode() if isinstance(first, bytes) else str(first)


def _raise_first(replies: list[object]) -> None:
    for reply in replies:
        if isinstance(reply, RedisNodeError):
            raise reply


def _parallel(work: Callable[[str], None], pods: list[str]) -> None:
    if not pods:
        return
    with ThreadPoolExecutor(max_workers=min(32, len(pods))) as pool:
        list(pool.map(work, pods))
