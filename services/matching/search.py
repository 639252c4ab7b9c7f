"""Finding the volunteers near a place without looking at every volunteer."""

from __future__ import annotations

import math

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.matching.model import Volunteer
from services.matching.rules import distance_km

KM_PER_DEGREE = 111.2


def nearby(session: Session, community: str, latitude: float, longitude: float,
           radius_km: float) -> list[tuple[Volunteer, float]]:
    """A community's active volunteers within `radius_km`, nearest first.

    A bounding box on the (community, status, latitude, longitude) index narrows the search; the exact
    great-circle distance then decides."""
    dlat = radius_km / KM_PER_DEGREE
    dlon = radius_km / (KM_PER_DEGREE * max(math.cos(math.radians(latitude)), 0.01))
    rows = session.scalars(sa.select(Volunteer).where(
        Volunteer.community == community, Volunteer.status == "active",
        Volunteer.latitude.between(latitude - dlat, latitude + dlat),
        Volunteer.longitude.between(longitude - dlon, longitude + dlon))).all()
    found = [(v, distance_km(latitude, longitude, v.latitude, v.longitude)) for v in rows]
    return sorted([(v, d) for v, d in found if d <= radius_km], key=lambda item: (item[1], item[0].name))
