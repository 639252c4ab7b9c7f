"""Suppression that subtraction cannot undo: whatever the counts, a reader who knows every number a table shows,
what "<5" and "hidden" mean, and every sum the table obeys (a breakdown adds up to its total; the kinds of
bereavement support add up to the bereavement supports) cannot work out any count from 1 to 4 exactly.

The attacker here is independent of the code under test: it tries every total the table allows and, for each, every
value a hidden part could take, rather than reusing the suppression's own reasoning."""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.metrics.domain import HIDDEN, shown
from shared.taxonomy import KINDS, SOURCES

GRIEF = [k for k, kind in KINDS.items() if kind.category == "bereavement"]
OTHER = [k for k, kind in KINDS.items() if kind.category != "bereavement"]
counts = st.integers(min_value=0, max_value=14)


def measures(by_source: dict[str, int], by_kind: dict[str, int], tasks: dict[str, int]) -> dict:
    """A period's measures as `measures()` makes them: breakdowns list only what happened, totals are their sums."""
    by_source, by_kind, tasks = ({k: v for k, v in d.items() if v} for d in (by_source, by_kind, tasks))
    return {"requests_received": sum(by_source.values()), "requests_by_source": by_source,
            "requests_by_kind": by_kind, "tasks_completed": sum(tasks.values()),
            "bereavement_supports": sum(v for k, v in tasks.items() if k in GRIEF), "tasks_by_kind": tasks}


def bounds(value, below: int, ceiling: int, is_part: bool = True) -> tuple[int, int]:
    """A breakdown lists only what happened: a hidden part is at least 1; a hidden total may be 0."""
    if value == HIDDEN:
        return (1 if is_part else 0), ceiling
    if isinstance(value, str):
        assert value == f"<{below}"
        return 1, below - 1
    return value, value


def possible(parts: dict, total: int, below: int, ceiling: int) -> dict[str, set[int]] | None:
    """Each part's values that some assignment adding up to `total` allows; None if no assignment does."""
    ranges = {name: bounds(v, below, ceiling) for name, v in parts.items()}
    low, high = sum(lo for lo, _ in ranges.values()), sum(hi for _, hi in ranges.values())
    if not low <= total <= high:
        return None
    found = {}
    for name, (lo, hi) in ranges.items():
        rest_low, rest_high = low - lo, high - hi
        found[name] = {x for x in range(lo, hi + 1) if rest_low <= total - x <= rest_high}
    return found


def merge(into: dict[str, set[int]], more: dict[str, set[int]], prefix: str) -> None:
    for name, values in more.items():
        into.setdefault(f"{prefix}:{name}", set()).update(values)


def recoverable(published: dict, below: int, ceiling: int) -> dict[str, set[int]]:
    """Every value each cell can take given everything the table shows."""
    seen: dict[str, set[int]] = {}
    lo, hi = bounds(published["requests_received"], below, ceiling, is_part=False)
    for total in range(lo, hi + 1):
        sources = possible(published["requests_by_source"], total, below, ceiling)
        kinds = possible(published["requests_by_kind"], total, below, ceiling)
        if sources is None or kinds is None:
            continue
        seen.setdefault("requests_received", set()).add(total)
        merge(seen, sources, "source")
        merge(seen, kinds, "kind")
    tasks = published["tasks_by_kind"]
    lo1, hi1 = bounds(published["tasks_completed"], below, ceiling, is_part=False)
    lo2, hi2 = bounds(published["bereavement_supports"], below, ceiling, is_part=False)
    for completed in range(lo1, hi1 + 1):
        for grief in range(lo2, min(hi2, completed) + 1):
            grieving = possible({k: v for k, v in tasks.items() if k in GRIEF}, grief, below, ceiling)
            others = possible({k: v for k, v in tasks.items() if k not in GRIEF}, completed - grief, below, ceiling)
            if grieving is None or others is None:
                continue
            seen.setdefault("tasks_completed", set()).add(completed)
            seen.setdefault("bereavement_supports", set()).add(grief)
            merge(seen, grieving, "task")
            merge(seen, others, "task")
    return seen


def cells(values: dict) -> dict[str, int]:
    out = {key: values[key] for key in ("requests_received", "tasks_completed", "bereavement_supports")}
    for key, prefix in (("requests_by_source", "source"), ("requests_by_kind", "kind"), ("tasks_by_kind", "task")):
        out.update({f"{prefix}:{name}": n for name, n in values[key].items()})
    return out


def table(requests: list[tuple[str, str]], tasks: list[str]) -> dict:
    """A period's measures as `measures()` makes them, from the requests (source, kind) and tasks (kind) in it."""
    return measures(Counter(s for s, _ in requests), Counter(k for _, k in requests), Counter(tasks))


@settings(max_examples=300, deadline=None)
@given(requests=st.lists(st.tuples(st.sampled_from(SOURCES[:3]), st.sampled_from(["shopping", "meals", *GRIEF])),
                         max_size=30),
       tasks=st.lists(st.sampled_from([*GRIEF, *OTHER[:2]]), max_size=30),
       below=st.sampled_from([3, 5]))
@example(requests=[("coordinator", "shopping")] * 3 + [("pcn", "meals")] * 6, tasks=["shopping"] * 4, below=5)
@example(requests=[("coordinator", "shopping"), ("pcn", "shopping"), ("partner", "shopping")],  # a small total
         tasks=["bereavement_visit"] * 4 + ["bereavement_group"] * 4, below=5)
@example(requests=[], tasks=["bereavement_visit"] * 3 + ["bereavement_group"] * 6 + ["shopping"] * 4
         + ["meals"] * 4, below=5)
def test_no_suppressed_count_can_be_worked_out_from_a_total_and_its_parts(requests, tasks, below):
    values = table(requests, tasks)
    truth = cells(values)
    published = shown(table(requests, tasks), below)
    ceiling = 2 * max(truth.values(), default=0) + below
    seen = recoverable(published, below, ceiling)
    for cell, value in cells(published).items():
        assert truth[cell] in seen[cell], f"{cell}: the table contradicts its own count"  # it tells no lies
        if isinstance(value, int):
            assert value == truth[cell]
        elif value != HIDDEN:
            assert 0 < truth[cell] < below
        if 0 < truth[cell] < below:
            assert isinstance(value, str), f"{cell} = {truth[cell]} is shown"
            assert len(seen[cell]) > 1, f"{cell} = {truth[cell]} can be worked out from {published}"


def test_a_breakdown_with_one_small_part_hides_one_more_and_leaves_the_total_shown():
    published = shown(measures({"coordinator": 20}, {"shopping": 3, "meals": 6, "transport": 11}, {}), 5)
    assert published["requests_received"] == 20 and published["requests_by_source"] == {"coordinator": 20}
    assert published["requests_by_kind"] == {"shopping": "<5", "meals": HIDDEN, "transport": 11}


def test_the_requests_signposted_by_kind_are_protected_like_the_others():
    values = {"requests_signposted": 9, "signposted_by_kind": {"shopping": 2, "meals": 7}}
    assert shown(values, 5) == {"requests_signposted": 9, "signposted_by_kind": {"shopping": "<5", "meals": HIDDEN}}


def test_nothing_more_is_hidden_when_nothing_is_small_or_suppression_is_off():
    values = measures({"coordinator": 7, "pcn": 5}, {"shopping": 12}, {"shopping": 6})
    assert shown(values, 5) == values
    small = measures({"coordinator": 7, "pcn": 1}, {"shopping": 8}, {})
    assert shown(small, 0) == small


@settings(max_examples=200, deadline=None)
@given(held=st.lists(st.tuples(st.sampled_from(["death_cafe", "grief_cafe", "dying_matters_event", "public_training"]),
                               st.integers(min_value=0, max_value=9)), max_size=20),
       below=st.sampled_from([3, 5]))
@example(held=[("death_cafe", 6)] * 6 + [("grief_cafe", 4)], below=5)
def test_no_small_count_of_group_activities_or_their_attendance_can_be_worked_out(held, below):
    """The activities of each kind add up to the group activities, and their attendance to the people at them."""
    values = {"group_activities": len(held), "group_attendance": sum(n for _, n in held),
              "activities_by_kind": dict(Counter(kind for kind, _ in held)),
              "attendance_by_kind": {kind: sum(n for k, n in held if k == kind) for kind, _ in held}}
    published = shown(values, below)
    for total, breakdown in (("group_activities", "activities_by_kind"), ("group_attendance", "attendance_by_kind")):
        truth = {"total": values[total], **values[breakdown]}
        ceiling = 2 * max(truth.values(), default=0) + below
        seen: dict[str, set[int]] = {}
        lo, hi = bounds(published[total], below, ceiling)
        for n in range(lo, hi + 1):
            if (parts := possible(published[breakdown], n, below, ceiling)) is not None:
                seen.setdefault("total", set()).add(n)
                for name, options in parts.items():
                    seen.setdefault(name, set()).update(options)
        for cell, value in {"total": published[total], **published[breakdown]}.items():
            assert truth[cell] in seen[cell], f"{cell}: the table contradicts its own count"
            if 0 < truth[cell] < below:
                assert isinstance(value, str) and len(seen[cell]) > 1, f"{breakdown} {cell} in {published}"


@settings(max_examples=200, deadline=None)
@given(scores=st.lists(st.sampled_from("12345"), max_size=30), below=st.sampled_from([3, 5]))
@example(scores=["1"] + ["4"] * 7 + ["5"] * 9, below=5)  # one volunteer struggling: never picked out
def test_no_wellbeing_score_can_be_worked_out_from_the_answers_and_the_other_scores(scores, below):
    truth_parts = dict(Counter(scores))
    values = {"wellbeing_answered": len(scores), "wellbeing_scores": dict(truth_parts)}
    published = shown({"wellbeing_answered": len(scores), "wellbeing_scores": dict(truth_parts)}, below)
    truth = {"wellbeing_answered": len(scores), **{f"score:{k}": v for k, v in truth_parts.items()}}
    ceiling = 2 * len(scores) + below
    seen: dict[str, set[int]] = {}
    lo, hi = bounds(published["wellbeing_answered"], below, ceiling, is_part=False)
    for total in range(lo, hi + 1):
        parts = possible(published["wellbeing_scores"], total, below, ceiling)
        if parts is None:
            continue
        seen.setdefault("wellbeing_answered", set()).add(total)
        merge(seen, parts, "score")
    cells = {"wellbeing_answered": published["wellbeing_answered"],
             **{f"score:{k}": v for k, v in published["wellbeing_scores"].items()}}
    assert values["wellbeing_scores"] == truth_parts  # shown() leaves its argument alone
    for cell, value in cells.items():
        assert truth[cell] in seen[cell]
        if 0 < truth[cell] < below:
            assert isinstance(value, str), f"{cell} = {truth[cell]} is shown"
            assert len(seen[cell]) > 1, f"{cell} = {truth[cell]} can be worked out from {published}"


@given(life=st.lists(st.integers(min_value=0, max_value=10), max_size=20),
       anxiety=st.lists(st.integers(min_value=0, max_value=10), max_size=20),
       below=st.sampled_from([3, 5]))
@example(life=[8] * 9 + [1], anxiety=[0] * 6, below=5)
@example(life=[8] * 2, anxiety=[0] * 6 + [9] * 6, below=5)
def test_no_small_count_of_survey_answers_can_be_worked_out_and_no_mean_shows_beside_one(life, anxiety, below):
    """The survey tables: each question's answers by band add up to its answers, and the questions' answers to the
    carers' survey answers. A mean shows only beside a question whose answers and bands all show."""
    from services.metrics.domain import NOT_SHOWN, survey_tables
    from tests.unit.test_surveys import answers

    tables = survey_tables(answers(*[("carer", "ons4_life_satisfaction", a) for a in life],
                                   *[("carer", "ons4_anxiety", a) for a in anxiety]))
    values = {"carer_survey_answers": len(life) + len(anxiety), "user_survey_answers": 0, **tables}
    published = shown({k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}, below)
    questions = list(values["survey_responses"])
    truth = {"total": values["carer_survey_answers"], **{f"q:{q}": n for q, n in values["survey_responses"].items()},
             **{f"band:{p}": n for p, n in values["survey_answers"].items()}}
    cells = {"total": published["carer_survey_answers"],
             **{f"q:{q}": n for q, n in published["survey_responses"].items()},
             **{f"band:{p}": n for p, n in published["survey_answers"].items()}}
    ceiling = 2 * max(truth.values(), default=0) + below
    bands_of = {q: {p: n for p, n in published["survey_answers"].items() if p.rsplit(": ", 1)[0] == q}
                for q in questions}
    seen: dict[str, set[int]] = {}
    lo, hi = bounds(cells["total"], below, ceiling, is_part=False)
    ranges = [range(bounds(cells[f"q:{q}"], below, ceiling)[0], bounds(cells[f"q:{q}"], below, ceiling)[1] + 1)
              for q in questions]
    for total in range(lo, hi + 1):
        for split in ([()] if not questions else [(n,) for n in ranges[0]] if len(questions) == 1
                      else [(n, total - n) for n in ranges[0] if total - n in ranges[1]]):
            if sum(split) != total:
                continue
            parts = [possible(bands_of[q], n, below, ceiling) for q, n in zip(questions, split)]
            if any(p is None for p in parts):
                continue
            seen.setdefault("total", set()).add(total)
            for q, n, options in zip(questions, split, parts):
                seen.setdefault(f"q:{q}", set()).add(n)
                merge(seen, options, "band")
    for cell, value in cells.items():
        assert truth[cell] in seen[cell], f"{cell}: the table contradicts its own count"
        if 0 < truth[cell] < below:
            assert isinstance(value, str) and len(seen[cell]) > 1, f"{cell} = {truth[cell]} in {published}"
    for q, mean in published["survey_means"].items():
        if mean != NOT_SHOWN:
            assert all(isinstance(n, int) for n in [published["survey_responses"][q], *bands_of[q].values()])
