"""Distances on the map. Every coordinate we store is GCJ-02 (the map SDKs in China and the
demo catalogue use it). GCJ-02 shifts WGS-84 by an offset that is nearly uniform over a city,
so great-circle distances between two GCJ-02 points are good to a few metres at city scale —
no conversion to WGS-84 needed for "nearest hall"."""

from __future__ import annotations

import math

# Redis's own earth radius (geohelper.c): distances from the hall index (GEOSEARCH) and from
# this function agree, so the map's database fallback answers what Redis would.
EARTH_RADIUS_M = 6372797.560856


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance in metres between two GCJ-02 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
