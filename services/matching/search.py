"""Finding the volunteers near a place without looking at every volunteer.

Each volunteer is stored with the grid cell they live in (model.grid_cell, a row-by-row integer), indexed with
their community and status. A search asks only for the cells a circle of the radius can touch: in each grid row
one range of cell numbers, so the index answers it as a few short range scans on SQLite and PostgreSQL alike.
The exact great-circle distance then decides. Places are not wrapped round the antimeridian (no community
straddles it).
"""

from __future__ import annotations

import json
import math
from datetime import date
from functools import lru_cache
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.matching.model import CELL_COLUMNS, CELL_DEGREES, Volunteer, VolunteerCheck, grid_column, grid_row
from services.matching.rules import EARTH_RADIUS_KM, distance_km
from shared.taxonomy import KINDS

MARGIN_DEGREES = 1e-9  # rounding in the bounds must never cost a volunteer on the edge of the circle
LAST_COLUMN = round(360 / CELL_DEGREES) - 1


def _hav(angle: float) -> float:
    return math.sin(angle / 2) ** 2


def cell_ranges(latitude: float, longitude: float, radius_km: float) -> list[tuple[int, int]]:
    """The (first, last) cell numbers, one range per grid row, of every cell a circle of `radius_km` touches.

    Per row the longitude span comes from the haversine formula at the row's nearest latitude to the centre,
    so it hugs the circle rather than its bounding box, and is never too narrow."""
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


@lru_cache(maxsize=128)
def _in_cells(rows: int) -> sa.Select:
    """The search's statement for a circle touching `rows` grid rows, built once (building it costs more than
    the index takes to answer it)."""
    community = sa.bindparam("community")
    return sa.select(Volunteer).where(sa.or_(*(
        sa.and_(Volunteer.community == community, Volunteer.status == "active",
                Volunteer.cell.between(sa.bindparam(f"first{n}"), sa.bindparam(f"last{n}"))) for n in range(rows))))


def near_query(community: str, latitude: float, longitude: float, radius_km: float) -> tuple[sa.Select, dict]:
    """The query, and its parameters, for a community's active volunteers in the cells a circle touches."""
    ranges = cell_ranges(latitude, longitude, radius_km)
    parameters = {"community": community}
    for n, (first, last) in enumerate(ranges):
        parameters[f"first{n}"], parameters[f"last{n}"] = first, last
    return _in_cells(len(ranges)), parameters


def prefilter(request: Any, days: list[date]) -> list[sa.ColumnElement[bool]]:
    """Conditions the database can judge for a request, so volunteers who cannot be asked are never loaded.

    Each is looser than or equal to its rule in rules.exclusion, which still decides: reachable by SMS, has the
    skill, holds each check at some time between the first and last day the task could happen, and the
    language and gender asked for. JSON lists are matched as text, the same on SQLite and PostgreSQL."""
    kind = KINDS[request.support_type]
    where = [Volunteer.sms_opted_out_at.is_(None), _lists(Volunteer.skills, kind.skill)]
    if days:
        first, last = min(days), max(days)
        where += [sa.exists().where(VolunteerCheck.volunteer_id == Volunteer.id, VolunteerCheck.check == check,
                                    VolunteerCheck.done_on <= last,
                                    sa.or_(VolunteerCheck.expires_on.is_(None), VolunteerCheck.expires_on >= first))
                  for check in kind.checks]
    if request.volunteer_language:
        where.append(_lists(Volunteer.languages, request.volunteer_language))
    if request.volunteer_gender:
        where.append(Volunteer.gender == request.volunteer_gender)
    return where


def _lists(column, value: str) -> sa.ColumnElement[bool]:
    """A JSON list of short codes holds `value` (stored as json.dumps writes it)."""
    return sa.cast(column, sa.Text).like(f'%{json.dumps(value)}%')


def nearby(session: Session, community: str, latitude: float, longitude: float, radius_km: float,
           where: Iterable[sa.ColumnElement[bool]] = ()) -> list[tuple[Volunteer, float]]:
    """A community's active volunteers within `radius_km` (and meeting any `where`, e.g. a `prefilter`),
    nearest first.

    The (community, status, cell) index finds those in the cells the circle touches; the exact great-circle
    distance then decides."""
    query, parameters = near_query(community, latitude, longitude, radius_km)
    rows = session.scalars(query.where(*where), parameters).all()
    found = [(v, distance_km(latitude, longitude, v.latitude, v.longitude)) for v in rows]
    return sorted([(v, d) for v, d in found if d <= radius_km], key=lambda item: (item[1], item[0].name))
