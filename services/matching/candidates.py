"""Matching's candidate index: each process's copy of its volunteers' profiles as numpy arrays, so that the rules on
a volunteer's profile are judged for everyone within reach of a request (or a whole community) at once, and only
the volunteers finally asked are loaded from the database.

What it holds of each volunteer is what `domain.profile_exclusion` reads: place, community, status, whether SMS
reaches them, skills, languages, gender, availability, weekly cap, how far they will go, each check's dates and
their time away. Their tasks and offers (the weekly cap, already asked, the ranking's load and continuity) change
with every offer, so they stay in the database: the service layer reads them for the few volunteers the profile
rules leave.

The search. Volunteers are sorted by community and grid cell (CELL_DEGREES square, numbered row by row): the cells
a circle can touch are one run of keys per grid row (`cell_ranges`), found by binary search, so a search looks at
the volunteers near the request, however many the community has. The exact great-circle distance then decides.

Kept current across processes. Several matching workers, and the web process, change volunteers, and the database
stays the source of truth: every write to a volunteer, their checks or their time away sets the volunteer's
`changed` (adapters), and before each search the index reads the volunteers changed since its mark, with one
indexed query, in the searching unit of work's transaction (adapters.VolunteerRepository.suited):

- PostgreSQL: `changed` is the writing transaction's id (`pg_current_xact_id()`), and the mark is the oldest
  transaction still running when the read began (`pg_snapshot_xmin`). Ids are handed out as transactions start,
  not in the order they commit, so a row with a lower id can commit after a higher one was read; but no
  transaction older than the snapshot's xmin can still commit, so reading `changed >= xmin` each time misses
  nothing (and reads again the few rows of transactions running at the time, which is harmless).
- SQLite: one writer at a time (every transaction begins IMMEDIATE), so a write's `changed` is one more than the
  largest stored, commit order is the order of the numbers, and the mark is one more than the largest read.

A transaction's own uncommitted changes never enter the shared index (it may roll back): the repository judges
the volunteers it changed from its session instead. Volunteers changed since the arrays were built are kept as
`Profile`s and judged one at a time by `domain.judge_profiles`, the rules' reference, until there are enough of them
to make rebuilding the arrays worthwhile; so are the few the arrays cannot hold (a 65th language).
"""

from __future__ import annotations

import math
import threading
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable, NamedTuple

import numpy as np

from services.matching.domain import (DEFAULT_RULES, EARTH_RADIUS_KM, CheckRules, Policy, Suited, distance_km,
                                      judge_profiles)
from shared.taxonomy import DAYS, KINDS, PARTS_OF_DAY, SKILLS

# --- the grid --------------------------------------------------------------------------------------------------

# Cells CELL_DEGREES of latitude by CELL_DEGREES of longitude (about 4.4 km north to south; 2.7 km east to west in
# Lancashire, 3.2 km in Ontario), numbered row by row in one integer.
CELL_DEGREES = 0.04
CELL_COLUMNS = 10_000  # more than the 9,000 columns round the world, so a row's cells are one range of keys
LAST_COLUMN = round(360 / CELL_DEGREES) - 1
MARGIN_DEGREES = 1e-9  # rounding in the bounds must never cost a volunteer on the edge of the circle


def grid_row(latitude: float) -> int:
    """The grid row a latitude falls in."""
    return math.floor(latitude / CELL_DEGREES)


def grid_column(longitude: float) -> int:
    """The grid column a longitude falls in (0 to 8,999, from 180° west)."""
    return min(math.floor((longitude + 180.0) / CELL_DEGREES), LAST_COLUMN)


def grid_cell(latitude: float, longitude: float) -> int:
    """The one integer naming the grid cell of a place: row by row, so a run of cells in a row is a key range."""
    return grid_row(latitude) * CELL_COLUMNS + grid_column(longitude)


def _hav(angle: float) -> float:
    """The haversine of an angle."""
    return math.sin(angle / 2) ** 2


def cell_ranges(latitude: float, longitude: float, radius_km: float) -> list[tuple[int, int]]:
    """The (first, last) cell numbers, one range per grid row, of every cell a circle of `radius_km` touches.

    Per row the longitude span comes from the haversine formula at the row's nearest latitude to the centre,
    so it hugs the circle rather than its bounding box, and is never too narrow. Places are not wrapped round
    the antimeridian (no community straddles it)."""
    reach = radius_km / EARTH_RADIUS_KM  # the radius as an angle
    dlat = math.degrees(reach) + MARGIN_DEGREES
    south, north = max(latitude - dlat, -90.0), min(latitude + dlat, 90.0)
    ranges = []
    for row in range(grid_row(south), grid_row(north) + 1):
        low, high = max(row * CELL_DEGREES, south), min((row + 1) * CELL_DEGREES, north)
        nearest = 0.0 if low <= latitude <= high else min(abs(low - latitude), abs(high - latitude))
        across = math.cos(math.radians(latitude)) * min(math.cos(math.radians(low)), math.cos(math.radians(high)))
        spare = _hav(reach) - _hav(math.radians(nearest))
        if across <= 1e-12 or spare >= across:
            first, last = 0, LAST_COLUMN  # near a pole the circle can reach any longitude
        else:
            dlon = math.degrees(2 * math.asin(math.sqrt(max(spare, 0.0) / across))) + MARGIN_DEGREES
            first, last = max(grid_column(longitude - dlon), 0), grid_column(longitude + dlon)
        ranges.append((row * CELL_COLUMNS + first, row * CELL_COLUMNS + last))
    return ranges


# --- what the index keeps of a volunteer ----------------------------------------------------------------------

class Check(NamedTuple):
    """A check's dates, as the rules read them."""

    check: str
    done_on: date
    expires_on: date | None


class Away(NamedTuple):
    """Days away, as the rules read them."""

    starts_on: date
    ends_on: date


@dataclass(eq=False, kw_only=True)
class Profile:
    """One volunteer as the profile rules read them: the fields of domain.Volunteer that `profile_exclusion` uses."""

    id: uuid.UUID
    community: str
    name: str
    latitude: float
    longitude: float
    max_distance_km: float
    skills: list[str]
    languages: list[str]
    gender: str | None
    availability: list[str]
    weekly_cap: int
    status: str
    sms_opted_out_at: datetime | None
    checks: list[Check] = field(default_factory=list)
    time_away: list[Away] = field(default_factory=list)


# Rule codes in the arrays: 0 for suited, then the profile rules other than checks; a check's rule is coded
# len(RULES) + its number in `Codes.checks` (checks are each community's own, so their codes are handed out as
# checks are met). A code only names a rule: the order the rules are judged in is `_profile_codes`'s.
RULES = (None, "status", "sms", "skill", "away", "availability", "too_far", "language", "gender")
CODE = {rule: code for code, rule in enumerate(RULES)}
NEVER = np.iinfo(np.int32).max  # a check never done starts, and one that never expires ends, on this day
SLOT_BIT = {f"{day}:{part}": d * len(PARTS_OF_DAY) + p for d, day in enumerate(DAYS)
            for p, part in enumerate(PARTS_OF_DAY)}
EDGE_KM = 1e-9  # numpy's sine may differ from math's in the last bit: so close to a limit, math's distance decides
LANGUAGE_BITS = 64


class Codes:
    """The small integers the arrays store communities, genders, languages and checks as (only ever added to)."""

    def __init__(self):
        self.communities: dict[str, int] = {}
        self.genders: dict[str | None, int] = {None: 0}
        self.languages: dict[str, int] = {}
        self.checks: dict[str, int] = {}  # every check key met, in a volunteer's record or a community's rules

    def admit(self, profile: Profile) -> bool:
        """Give the profile's languages their bits (and its checks their numbers), and True; or False if there are
        not enough bits left (then the arrays cannot hold the profile)."""
        new = set(profile.languages) - self.languages.keys()
        if len(self.languages) + len(new) > LANGUAGE_BITS:
            return False
        for language in sorted(new):
            self.of(self.languages, language)
        for check in sorted({c.check for c in profile.checks}):
            self.of(self.checks, check)
        return True

    def rule(self, code: int) -> str | None:
        """The rule a code stands for."""
        return RULES[code] if code < len(RULES) else f"check:{list(self.checks)[code - len(RULES)]}"

    def check_code(self, check: str) -> int:
        """The code of a check's rule (the check numbered now if it is new)."""
        return len(RULES) + self.of(self.checks, check)

    def of(self, table: dict, value) -> int:
        """The code of a value, given a new one if it has none."""
        return table.setdefault(value, len(table))


class Arrays:
    """Every volunteer's profile as columns, sorted by (community, grid cell); `alive` false for rows changed since.
    Time away is kept flat (`away_*`), grouped by row: each row's from `away_first`, `away_count` long."""

    def __init__(self, columns: dict[str, np.ndarray], away: dict[str, np.ndarray]):
        self.__dict__.update(columns)
        self.columns, self.away = columns, away
        self.size = len(columns["key"])
        # in radians, and the cosine of the latitude, once rather than in every search
        self.phi, self.lam = np.radians(self.latitude), np.radians(self.longitude)
        self.cos_phi = np.cos(self.phi)
        self.position = {id_: n for n, id_ in enumerate(self.ids.tolist())}
        order = np.argsort(away["row"], kind="stable")
        self.away_row, self.away_start, self.away_end = away["row"][order], away["start"][order], away["end"][order]
        self.away_count = np.bincount(self.away_row, minlength=self.size).astype(np.int64)
        self.away_first = np.cumsum(self.away_count) - self.away_count

    @classmethod
    def build(cls, profiles: list[Profile], codes: Codes) -> "Arrays":
        """The arrays of these profiles (each of which `codes.admit`ted), unsorted."""
        n = len(profiles)
        columns = {
            "ids": np.array([p.id for p in profiles] or [], dtype=object),
            "names": np.array([p.name for p in profiles] or [], dtype=object),
            "community": np.array([codes.of(codes.communities, p.community) for p in profiles], dtype=np.int64),
            "latitude": np.array([p.latitude for p in profiles], dtype=np.float64),
            "longitude": np.array([p.longitude for p in profiles], dtype=np.float64),
            "max_distance": np.array([p.max_distance_km for p in profiles], dtype=np.float64),
            "weekly_cap": np.array([p.weekly_cap for p in profiles], dtype=np.int32),
            "active": np.array([p.status == "active" for p in profiles], dtype=bool),
            "reachable": np.array([p.sms_opted_out_at is None for p in profiles], dtype=bool),
            "skills": np.array([sum(1 << SKILLS.index(s) for s in set(p.skills) if s in SKILLS) for p in profiles],
                               dtype=np.int32),
            "languages": np.array([sum(1 << codes.of(codes.languages, lang) for lang in set(p.languages))
                                   for p in profiles], dtype=np.uint64),
            "gender": np.array([codes.of(codes.genders, p.gender) for p in profiles], dtype=np.int32),
            "any_time": np.array([not p.availability for p in profiles], dtype=bool),
            "availability": np.array([sum(1 << SLOT_BIT[s] for s in set(p.availability) if s in SLOT_BIT)
                                      for p in profiles], dtype=np.int32),
            "alive": np.ones(n, dtype=bool),
        }
        columns["key"] = (columns["community"] << 32) + np.array(
            [grid_cell(p.latitude, p.longitude) for p in profiles], dtype=np.int64) + (1 << 31)
        for check in codes.checks:  # a column pair for every check met so far
            held = [next((c for c in p.checks if c.check == check), None) for p in profiles]
            columns[f"done:{check}"] = np.array([c.done_on.toordinal() if c else NEVER for c in held], dtype=np.int32)
            columns[f"expires:{check}"] = np.array(
                [c.expires_on.toordinal() if c and c.expires_on else NEVER for c in held], dtype=np.int32)
        away = [(row, t.starts_on.toordinal(), t.ends_on.toordinal())
                for row, p in enumerate(profiles) for t in p.time_away]
        return cls(columns, {name: np.array([a[k] for a in away], dtype=np.int64)
                             for k, name in enumerate(("row", "start", "end"))})

    def merged(self, other: "Arrays") -> "Arrays":
        """The rows still alive here and every row of `other`, sorted by key."""
        keep = np.flatnonzero(self.alive)
        renumber = np.full(self.size + 1, -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        # `other` is the newer: it has a column for every check these arrays have, and for any met since (of which
        # these rows hold none)
        columns = {name: np.concatenate([self.columns[name][keep] if name in self.columns
                                         else np.full(len(keep), NEVER, dtype=column.dtype), column])
                   for name, column in other.columns.items()}
        rows = np.concatenate([renumber[self.away["row"]], other.away["row"] + len(keep)])
        away = {name: np.concatenate([self.away[name], other.away[name]])[rows >= 0] for name in ("start", "end")}
        away["row"] = rows[rows >= 0]
        order = np.argsort(columns["key"], kind="stable")
        place = np.empty(len(order), dtype=np.int64)
        place[order] = np.arange(len(order))
        away["row"] = place[away["row"]]
        return Arrays({name: column[order] for name, column in columns.items()}, away)


def empty(codes: Codes) -> Arrays:
    """Arrays of nobody."""
    return Arrays.build([], codes)


# --- the index ------------------------------------------------------------------------------------------------

class CandidateIndex:
    """One process's index of its volunteers' profiles (one per engine: `index_of`). Its methods hold its lock, so
    threads of a process (a worker's consumer and timers, the web app's) may share it."""

    def __init__(self, rebuild_at: int = 256):
        self.codes = Codes()
        self.arrays = empty(self.codes)
        self.recent: dict[uuid.UUID, Profile] = {}  # changed since the arrays were built, or unfit for them
        self.mark: int | None = None  # where the next read of changes starts; None: nothing read yet
        self.rebuild_at = rebuild_at
        self.lock = threading.RLock()
        # each community's check rules, with the version they were read at (adapters.CheckRuleRepository.rules)
        self.check_rules: dict[str, tuple[int, CheckRules]] = {}

    def load(self, profiles: Iterable[Profile], mark: int | None) -> None:
        """Hold these volunteers (everyone), read up to `mark`."""
        with self.lock:
            self.arrays, self.recent = empty(self.codes), {}
            self._take(list(profiles), rebuild=True)
            self.mark = mark

    def take(self, profiles: Iterable[Profile], mark: int) -> None:
        """Volunteers changed since the last read, now read up to `mark`: they replace what was held of them."""
        with self.lock:
            self._take(list(profiles), rebuild=False)
            self.mark = mark

    def _take(self, profiles: list[Profile], rebuild: bool) -> None:
        """Mark the old rows of these volunteers dead and keep them as profiles; rebuild the arrays when enough
        have changed (or when asked)."""
        for profile in profiles:
            row = self.arrays.position.get(profile.id)
            if row is not None:
                self.arrays.alive[row] = False
            self.recent[profile.id] = profile
        if rebuild or len(self.recent) > max(self.rebuild_at, self.arrays.size // 64):
            fit, unfit = [], []
            for profile in self.recent.values():
                (fit if self.codes.admit(profile) else unfit).append(profile)
            self.arrays = self.arrays.merged(Arrays.build(fit, self.codes))
            self.recent = {p.id: p for p in unfit}

    @property
    def size(self) -> int:
        """How many volunteers it holds."""
        with self.lock:
            return int(self.arrays.alive.sum()) + len(self.recent)

    def search(self, request: Any, slots: list[tuple[date, str]], policy: Policy, everyone: bool = False,
               own: Iterable[Any] = (), rules: CheckRules = DEFAULT_RULES) -> tuple["Found", Counter]:
        """The volunteers within the request's radius (`everyone`: in its community) whose profile lets them be
        asked, nearest first, and how many of the others each profile rule ruled out: the same answer as
        `domain.judge_profiles` over the same volunteers, under the community's check `rules`. `own` are volunteers
        (domain objects) as the caller's transaction has them, in place of what the index holds of them."""
        own = list(own)
        skip = {v.id for v in own}
        with self.lock:
            arrays = self.arrays
            rows, distance, free, excluded = self._search_arrays(request, slots, policy, everyone, skip, rules)
            others = [(p, distance_km(request.latitude, request.longitude, p.latitude, p.longitude))
                      for p in (*(p for p in self.recent.values() if p.id not in skip), *own)
                      if p.community == request.community]
        more, excluded_more = judge_profiles(
            [(p, d) for p, d in others if everyone or d <= policy.request_radius_km], request, slots, policy, rules)
        return Found(arrays, request, [day for day, _ in slots], rows, distance, free, more), excluded + excluded_more

    def _rows_for(self, request: Any, radius: float, everyone: bool) -> np.ndarray:
        """The rows of the request's community: all of them, or those in the cells its circle touches."""
        a = self.arrays
        community = self.codes.communities.get(request.community)
        if community is None or a.size == 0:
            return np.empty(0, dtype=np.int64)
        if everyone:
            bounds = [(community << 32, (community + 1) << 32)]
        else:
            base = (community << 32) + (1 << 31)
            bounds = [(base + first, base + last + 1)
                      for first, last in cell_ranges(request.latitude, request.longitude, radius)]
        edges = np.searchsorted(a.key, np.array(bounds, dtype=np.int64).ravel()).reshape(-1, 2)
        rows = np.concatenate([np.arange(lo, hi) for lo, hi in edges if hi > lo] or [np.empty(0, dtype=np.int64)])
        return rows[a.alive[rows]]

    def _search_arrays(self, request: Any, slots: list[tuple[date, str]], policy: Policy, everyone: bool,
                       skip: set[uuid.UUID], rules: CheckRules) -> tuple[np.ndarray, np.ndarray, np.ndarray, Counter]:
        """`search` over the arrays: the rows suited, their distances and free slots, and the counts of the rest."""
        a, radius = self.arrays, policy.request_radius_km
        rows = self._rows_for(request, radius, everyone)
        if skip:
            rows = rows[~np.isin(rows, [a.position[i] for i in skip if i in a.position])]
        distance = _distances(request.latitude, request.longitude, a.phi[rows], a.cos_phi[rows], a.lam[rows])
        if not everyone:
            near = distance <= radius + EDGE_KM
            rows, distance = rows[near], distance[near]
        limit = np.minimum(a.max_distance[rows], radius)
        close = np.flatnonzero((np.abs(distance - radius) <= EDGE_KM) | (np.abs(distance - limit) <= EDGE_KM))
        for n in close.tolist():
            distance[n] = distance_km(request.latitude, request.longitude, a.latitude[rows[n]], a.longitude[rows[n]])
        if not everyone and len(close):
            near = distance <= radius
            rows, distance, limit = rows[near], distance[near], limit[near]
        codes, free = _profile_codes(a, rows, distance, limit, request, slots, self.codes, rules)
        counts = np.bincount(codes, minlength=len(RULES))
        excluded = Counter({self.codes.rule(code): int(n) for code, n in enumerate(counts) if code and n})
        chosen = codes == 0
        return rows[chosen], distance[chosen], free[chosen], excluded


class Found:
    """The volunteers a search found suited, nearest first, each made a `Suited` only when read: in a city, a
    national pool has thousands within reach, of whom the service layer reads the nearest until the best batch is
    certain. Read one (`found[n]`) or a run (`found[a:b]`, ordered by distance and name)."""

    def __init__(self, arrays: Arrays, request: Any, days: list[date], rows: np.ndarray, distance: np.ndarray,
                 free: np.ndarray, more: list[Suited]):
        self.arrays, self.request, self.days, self.rows, self.free, self.more = arrays, request, days, rows, free, more
        self.order = np.argsort(np.concatenate([distance, [s.distance_km for s in more]]), kind="stable")

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, which: int | slice) -> Suited | list[Suited]:
        if isinstance(which, slice):
            return sorted(self._made(self.order[which]), key=lambda s: (s.distance_km, s.name))
        return self._made(self.order[which:which + 1 or None])[0]

    def _made(self, chosen: np.ndarray) -> list[Suited]:
        """The suited at these places as found (the arrays' rows, then the others), with math's exact distance."""
        ours = chosen < len(self.rows)
        a, rows, free = self.arrays, self.rows[chosen[ours]], self.free[chosen[ours]].tolist()
        latitude, longitude = self.request.latitude, self.request.longitude
        made = [Suited(id_, name, distance_km(latitude, longitude, lat, lon), cap,
                       tuple(day for j, day in enumerate(self.days) if mask >> j & 1))
                for id_, name, lat, lon, cap, mask in zip(
                    a.ids[rows].tolist(), a.names[rows].tolist(), a.latitude[rows].tolist(),
                    a.longitude[rows].tolist(), a.weekly_cap[rows].tolist(), free)]
        return made + [self.more[n - len(self.rows)] for n in chosen[~ours].tolist()]


def _distances(latitude: float, longitude: float, phi: np.ndarray, cos_phi: np.ndarray,
               lam: np.ndarray) -> np.ndarray:
    """domain.distance_km from one place to many (their latitudes and longitudes in radians, and the cosines of
    their latitudes), over arrays: the same formula, to within EDGE_KM."""
    phi1 = math.radians(latitude)
    a = np.sin((phi - phi1) / 2) ** 2 + math.cos(phi1) * cos_phi * np.sin((lam - math.radians(longitude)) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a))


def _profile_codes(a: Arrays, rows: np.ndarray, distance: np.ndarray, limit: np.ndarray, request: Any,
                   slots: list[tuple[date, str]], codes: Codes,
                   rules: CheckRules = DEFAULT_RULES) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the code of the first profile rule that rules the volunteer out (0: none), and a mask of the
    slots they are free in (bit j for slots[j]; 0 for those ruled out): `domain.profile_exclusion` over arrays, the
    checks those the community's `rules` ask for the kind. The first three rules (status, SMS, skill) read one bit
    each and rule out most of a national pool, so they are judged first and the others only for those they leave;
    within each part the rules are applied last first, so the first that applies writes last."""
    kind = KINDS[request.support_type]
    result = np.zeros(len(rows), dtype=np.int64)
    if kind.skill in SKILLS:
        result[(a.skills[rows] >> SKILLS.index(kind.skill)) & 1 == 0] = CODE["skill"]
    else:  # a kind nobody is offered (intake holds "other" for a coordinator): no volunteer has its skill
        result[:] = CODE["skill"]
    result[~a.reachable[rows]] = CODE["sms"]
    result[~a.active[rows]] = CODE["status"]
    left = np.flatnonzero(result == 0)
    free = np.zeros(len(rows), dtype=np.int64)
    result[left], free[left] = _later_codes(a, rows[left], distance[left], limit[left], request, slots, codes, rules)
    return result, free


def _later_codes(a: Arrays, rows: np.ndarray, distance: np.ndarray, limit: np.ndarray, request: Any,
                 slots: list[tuple[date, str]], codes: Codes, rules: CheckRules) -> tuple[np.ndarray, np.ndarray]:
    """`_profile_codes` for the rules after the skill (the checks, time away, availability, distance, language,
    gender), for rows the first three left."""
    n, days = len(rows), [day.toordinal() for day, _ in slots]
    away = _away_masks(a, rows, days)
    any_time, availability = a.any_time[rows], a.availability[rows]
    free = np.zeros(n, dtype=np.int64)
    for j, (day, part) in enumerate(slots):
        open_then = any_time | ((availability >> SLOT_BIT[f"{DAYS[day.weekday()]}:{part}"]) & 1).astype(bool)
        free |= ((~(away >> j) & 1).astype(bool) & open_then).astype(np.int64) << j
    result = np.zeros(n, dtype=np.int64)
    if request.volunteer_gender:
        result[a.gender[rows] != codes.genders.get(request.volunteer_gender, -1)] = CODE["gender"]
    if request.volunteer_language:
        bit = codes.languages.get(request.volunteer_language)
        wanted = np.uint64(0) if bit is None else np.uint64(1 << bit)
        result[(a.languages[rows] & wanted) == 0] = CODE["language"]
    result[distance > limit] = CODE["too_far"]
    result[~any_time & (free == 0)] = CODE["availability"]
    if slots:
        result[away == (1 << len(slots)) - 1] = CODE["away"]
    ordered_days = np.array(sorted(set(days)), dtype=np.int64)
    for check in reversed(rules.needed(request.support_type)):
        if f"done:{check}" not in a.columns:  # nobody in the arrays holds it
            result[:] = codes.check_code(check)
            continue
        done, expires = a.columns[f"done:{check}"][rows], a.columns[f"expires:{check}"][rows]
        if len(ordered_days):
            first = np.searchsorted(ordered_days, done)  # the first task day on or after it was done
            valid = (first < len(ordered_days)) & (ordered_days[np.minimum(first, len(ordered_days) - 1)] <= expires)
        else:
            valid = np.zeros(n, dtype=bool)
        result[~valid] = codes.check_code(check)
    return result, free


def _away_masks(a: Arrays, rows: np.ndarray, days: list[int]) -> np.ndarray:
    """For each row, a mask of the task days (bit j for days[j]) the volunteer is away on."""
    masks = np.zeros(len(rows), dtype=np.int64)
    counts = a.away_count[rows]
    some = np.flatnonzero(counts)
    if not len(some) or not days:
        return masks
    counts = counts[some]
    starts = np.cumsum(counts) - counts
    spans = np.repeat(a.away_first[rows[some]] - starts, counts) + np.arange(int(counts.sum()))
    begin, end = a.away_start[spans], a.away_end[spans]
    bits = np.zeros(len(spans), dtype=np.int64)
    for j, day in enumerate(days):
        bits |= ((begin <= day) & (day <= end)).astype(np.int64) << j
    masks[some] = np.bitwise_or.reduceat(bits, starts)
    return masks


_INDEXES: "weakref.WeakKeyDictionary[Any, CandidateIndex]" = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def index_of(engine: Any) -> CandidateIndex:
    """The index of the volunteers in an engine's database, one per engine (so one per app, as each app has its
    own engine), made empty on first use and gone with the engine."""
    with _INDEXES_LOCK:
        index = _INDEXES.get(engine)
        if index is None:
            index = _INDEXES[engine] = CandidateIndex()
        return index
