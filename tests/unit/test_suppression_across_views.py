"""Suppression that subtracting one view from another cannot undo: a manager of two or three communities who asks
for every view of one span (all their communities and each, all kinds of help and each, all sources and each, and
the communities side by side) and knows what each number counts cannot work out any count from 1 to 4 exactly.

The attacker is independent of the suppression's own reasoning: each count a view shows is a sum of unknown
non-negative cells (a community's requests of one kind from one source, its tasks, ...); every number shown, every
"<5", every "hidden" and every part a breakdown lists (or does not) is a linear constraint on those cells, and a
small exact linear programme (the simplex method below) finds the least and the most each suppressed count can be
given ALL of them together. A count it pins down is given away."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime, timezone

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.metrics.domain import (ALL, HIDDEN, SIDE_BY_SIDE, TOTAL, Fact, columns_of, every_view, jointly_shown,
                                     requests_known, shown)
from shared.equity import NOT_RECORDED
from shared.taxonomy import KINDS

DAY = date(2026, 3, 4)
COMMUNITIES = ("north", "south", "east")
KINDS_USED = ("shopping", "meals", "bereavement_visit")
SOURCES_USED = ("coordinator", "pcn")
GRIEF = {k for k in KINDS_USED if KINDS[k].category == "bereavement"}
# What a request became in the span: each is a count of its own in the cell of its community, kind and source.
OUTCOMES = ("open", "done", "unmatched")
ATOMS = ("received", "done", "unmatched", "people", "volunteers")


# --- the span's facts ----------------------------------------------------------------------------------------------

def facts_of(requests: list[tuple[str, str, str, str]]) -> list[Fact]:
    """A day's facts: each request submitted (a person of its own), and done by a volunteer of their own, or found
    no volunteer, or left open."""
    at = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
    facts = []
    for community, kind, source, outcome in requests:
        request = uuid.uuid4()
        facts.append(Fact(event_id=uuid.uuid4(), event_type="request.submitted", occurred_at=at, day=DAY,
                          community=community, request_id=request, source=source, support_type=kind,
                          person_ref=f"p_{uuid.uuid4().hex[:12]}"))
        if outcome == "done":
            facts.append(Fact(event_id=uuid.uuid4(), event_type="task.completed", occurred_at=at, day=DAY,
                              community=community, request_id=request, support_type=kind,
                              volunteer_id=uuid.uuid4(), hours=1.0))
        elif outcome == "unmatched":
            facts.append(Fact(event_id=uuid.uuid4(), event_type="request.unmatched", occurred_at=at, day=DAY,
                              community=community, request_id=request))
    return facts


def views_of(requests, communities) -> dict:
    """Every view of the span, unsuppressed, as the service counts them."""
    facts = facts_of(requests)
    return every_view(facts, [], volunteer_changes=[], history=facts, requests=requests_known(facts),
                      communities=communities)


def truth_of(requests) -> dict[tuple, int]:
    """Each cell (community, kind, source, atom) as it really is."""
    truth: Counter = Counter()
    for community, kind, source, outcome in requests:
        truth[(community, kind, source, "received")] += 1
        if outcome == "done":
            for atom in ("done", "people", "volunteers"):
                truth[(community, kind, source, atom)] += 1
        if outcome == "unmatched":
            truth[(community, kind, source, "unmatched")] += 1
    return truth


# --- what a reader knows: each number shown as a sum of cells ------------------------------------------------------

def published_sums(published: dict, ics: dict | None, communities: list[str]):
    """(cells summed, what is shown, whether a breakdown lists it) for every count every view shows, with the ones
    a breakdown does not list (0). Cells: (community, kind, source, atom)."""

    def cells(view, atom, kinds=KINDS_USED, sources=SOURCES_USED):
        community, kind, source = view
        return frozenset((c, k, s, atom) for c in ([community] if community else communities)
                         for k in kinds if kind in (None, k) for s in sources if source in (None, s))

    found = []
    for view, values in published.items():
        found += [(cells(view, "received"), values["requests_received"], False),
                  (cells(view, "done"), values["tasks_completed"], False),
                  (cells(view, "done", kinds=GRIEF), values["bereavement_supports"], False),
                  (cells(view, "unmatched"), values["requests_unmatched"], False),
                  (cells(view, "people"), values["people_reached"], False),
                  (cells(view, "volunteers"), values["active_volunteers"], False)]
        for breakdown, atom, axis in (("requests_by_kind", "received", "kinds"), ("tasks_by_kind", "done", "kinds"),
                                      ("requests_by_source", "received", "sources")):
            for part in (KINDS_USED if axis == "kinds" else SOURCES_USED):
                summed = cells(view, atom, **{axis: [part]})
                if summed:
                    found.append((summed, values[breakdown].get(part, 0), part in values[breakdown]))
        for key in [k for k in values if k.startswith("people_by_")]:
            assert set(values[key]) <= {NOT_RECORDED}
            found.append((cells(view, "people"), values[key].get(NOT_RECORDED, 0), bool(values[key])))
        others = set(SIDE_BY_SIDE) - {"requests_received", "tasks_completed", "bereavement_supports",
                                      "requests_unmatched", "people_reached", "active_volunteers"}
        assert all(values[key] == 0 for key in others), view  # nothing else happened
    for column, values in (ics or {}).items():
        view = (None if column == TOTAL else column, None, None)
        found += [(cells(view, "received"), values["requests_received"], False),
                  (cells(view, "done"), values["tasks_completed"], False),
                  (cells(view, "unmatched"), values["requests_unmatched"], False),
                  (cells(view, "people"), values["people_reached"], False)]
    return found


def bounds_of(value, listed: bool, below: int) -> tuple[float, float]:
    if value == HIDDEN:
        return (1 if listed else 0), np.inf
    if isinstance(value, str):
        return 1, below - 1
    return value, value


# --- a small exact linear programme ---------------------------------------------------------------------------------

EPS = 1e-9


def _pivot(table, basis, row, col):
    table[row] /= table[row, col]
    for r in range(table.shape[0]):
        if r != row and abs(table[r, col]) > EPS:
            table[r] -= table[r, col] * table[row]
    basis[row] = col


def _optimise(table, basis, columns) -> bool:
    """The simplex method with Bland's rule on the objective in the last row; False when it is unbounded."""
    while True:
        entering = next((j for j in range(columns) if table[-1, j] < -EPS), None)
        if entering is None:
            return True
        rows = [r for r in range(table.shape[0] - 1) if table[r, entering] > EPS]
        if not rows:
            return False
        row = min(rows, key=lambda r: (table[r, -1] / table[r, entering], basis[r]))
        _pivot(table, basis, row, entering)


class Polytope:
    """{x >= 0 : lows <= A x <= highs}: the least and the most a linear form can be on it."""

    def __init__(self, forms: np.ndarray, lows: list[float], highs: list[float]):
        rows = []
        for form, low, high in zip(forms, lows, highs):
            if low == high:
                rows.append((form, low, 0))
            else:
                rows.append((-form, -low, 1))  # -form + slack = -low
                if high != np.inf:
                    rows.append((form, high, 1))
        n, slacks = forms.shape[1], sum(s for *_, s in rows)
        m = len(rows)
        self.n = n
        table = np.zeros((m + 1, n + slacks + m + 1))
        slack = n
        for r, (form, bound, has_slack) in enumerate(rows):
            table[r, :n] = form
            if has_slack:
                table[r, slack] = 1
                slack += 1
            table[r, -1] = bound
            if bound < 0:
                table[r] *= -1
            table[r, n + slacks + r] = 1  # artificial
        self.columns = n + slacks
        basis = [n + slacks + r for r in range(m)]
        table[-1, :self.columns] = -table[:m, :self.columns].sum(axis=0)
        table[-1, -1] = -table[:m, -1].sum()
        _optimise(table, basis, self.columns + m)
        assert abs(table[-1, -1]) < 1e-7, "what is shown contradicts itself"
        for r in range(m):  # artificials out of the basis (or their rows, which say nothing more, left alone)
            if basis[r] >= self.columns:
                col = next((j for j in range(self.columns) if abs(table[r, j]) > EPS), None)
                if col is not None:
                    _pivot(table, basis, r, col)
        keep = [r for r in range(m) if basis[r] < self.columns]
        self.table = np.vstack([table[keep][:, :self.columns], table[-1:, :self.columns]])
        self.rhs = np.append(table[keep, -1], 0.0)
        self.basis = [basis[r] for r in keep]

    def least(self, form: np.ndarray) -> float:
        table = np.hstack([self.table, self.rhs[:, None]]).copy()
        basis = list(self.basis)
        table[-1] = 0
        table[-1, :self.n] = form
        for r, col in enumerate(basis):
            if abs(table[-1, col]) > EPS:
                table[-1] -= table[-1, col] * table[r]
        if not _optimise(table, basis, self.columns):
            return -np.inf
        return -table[-1, -1]

    def range_of(self, form: np.ndarray) -> tuple[float, float]:
        return self.least(form), -self.least(-form)


def given_away(sums, truth: dict, below: int) -> list[tuple]:
    """The cells summed of every count from 1 to `below` - 1 that a reader can work out exactly from everything
    shown, with its value."""
    atoms = sorted({atom for summed, _, _ in sums for atom in summed})
    index = {atom: n for n, atom in enumerate(atoms)}
    merged: dict[frozenset, tuple[float, float]] = {}
    for summed, value, listed in sums:
        low, high = bounds_of(value, listed, below)
        was = merged.get(summed, (0, np.inf))
        merged[summed] = (max(was[0], low), min(was[1], high))
    forms = np.zeros((len(merged), len(atoms)))
    for row, summed in enumerate(merged):
        forms[row, [index[a] for a in summed]] = 1
    polytope = Polytope(forms, [low for low, _ in merged.values()], [high for _, high in merged.values()])
    found = []
    for row, (summed, (low, high)) in enumerate(merged.items()):
        real = sum(truth.get(atom, 0) for atom in summed)
        assert low <= real <= high, f"{sorted(summed)} is {real}, shown as {low}..{high}"  # it tells no lies
        if 0 < real < below and low != high:
            least, most = polytope.range_of(forms[row])
            if most - least < 0.5:
                found.append((sorted(summed), real))
        elif 0 < real < below:
            found.append((sorted(summed), real))  # shown as a number
    return found


# --- the property ---------------------------------------------------------------------------------------------------

requests = st.lists(st.tuples(st.sampled_from(COMMUNITIES), st.sampled_from(KINDS_USED),
                              st.sampled_from(SOURCES_USED), st.sampled_from(OUTCOMES)), max_size=24)


@settings(max_examples=25, deadline=None)
@given(requests=requests, several=st.sampled_from([2, 3]))
@example(requests=[("north", "shopping", "coordinator", "open")] * 9
         + [("south", "shopping", "coordinator", "open")] * 3, several=2)
@example(requests=[("north", "shopping", "coordinator", "done")] * 6 + [("north", "meals", "pcn", "done")] * 7
         + [("south", "meals", "coordinator", "unmatched")] * 2 + [("south", "shopping", "pcn", "open")] * 8,
         several=2)
@example(requests=[("north", "shopping", "coordinator", "open")] * 8 + [("north", "shopping", "pcn", "open")] * 2
         + [("south", "meals", "coordinator", "done")] * 6 + [("east", "meals", "pcn", "done")] * 3, several=3)
def test_no_small_count_can_be_worked_out_from_every_view_a_manager_can_ask_for(requests, several):
    communities = list(COMMUNITIES[:several])
    requests = [r for r in requests if r[0] in communities]
    published = jointly_shown(views_of(requests, communities), 5)
    assert set(published) >= {(c, None, None) for c in communities} | {ALL}
    ics = columns_of(published, communities)
    assert given_away(published_sums(published, ics, communities), truth_of(requests), 5) == []


def test_each_view_protected_alone_gives_a_count_away_across_views():
    """The attacker does find what per-view protection leaves: all communities' 12 requests less north's 9 are
    south's 3, though south's own view says "<5"."""
    requests = [("north", "shopping", "coordinator", "open")] * 9 + [("south", "shopping", "coordinator", "open")] * 3
    communities = ["north", "south"]
    alone = {view: shown(values, 5) for view, values in views_of(requests, communities).items()}
    assert alone[("south", None, None)]["requests_received"] == "<5"
    found = given_away(published_sums(alone, None, communities), truth_of(requests), 5)
    assert (sorted({("south", "shopping", "coordinator", "received"), ("south", "meals", "coordinator", "received"),
                    ("south", "bereavement_visit", "coordinator", "received"),
                    ("south", "shopping", "pcn", "received"), ("south", "meals", "pcn", "received"),
                    ("south", "bereavement_visit", "pcn", "received")}), 3) in found
    jointly = jointly_shown(views_of(requests, communities), 5)
    assert HIDDEN in (jointly[ALL]["requests_received"], jointly[("north", None, None)]["requests_received"])
    assert given_away(published_sums(jointly, None, communities), truth_of(requests), 5) == []
