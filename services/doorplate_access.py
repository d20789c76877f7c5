"""Which door plates (门楼牌) a staff member may act on: issue their codes, print the sheet,
revoke a code, fetch its mini-program code. The one decision for every door-plate staff route.

A plate belongs to a place, not to a hall or a department: it names its county (区县), street
or township (街道/乡镇) and community (社区/村) as text (``models/codes.py``). Those names are
matched against the organisation's regions (``models/org.py``), level by level, as deep as
they match, which gives the plate a region path. Staff act on the plates of the area they
serve (``Scope.area_paths``):

- clerk, hall manager: the region of their hall and below (a county hall: the county's
  plates; a street's 便民服务中心: that street's; the city hall: the city's);
- supervisor: their region and below;
- admin: every plate;
- approver: none (a department's records carry its name; plates carry none);
- a plate whose county matches no region: only whoever serves the whole city.

Outside that area a plate does not exist for them (404, like a missing one); someone who is
not staff is refused (403). Issuing, reissuing and revoking (``for_change``) admit the same
people as reading on purpose: the clerk who prints a street's plates is the one who replaces
a damaged one, so the area is the whole rule.
"""

from __future__ import annotations

import re

from models.codes import DoorPlate
from models.org import Region, RegionLevel
from services.auth import Principal
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.scope import scope_of

# A path segment that can't be a plate code is simply absent (not a 422 from the ORM).
PLATE_CODE = re.compile(r"^[A-Za-z0-9-]{1,32}$")

# The plate's place names, outermost first, with the region level each one names.
_LEVELS = ((RegionLevel.county, "county"), (RegionLevel.township, "street"),
           (RegionLevel.community, "community"))


async def region_paths(plates: list[DoorPlate]) -> dict[int, str]:
    """Each plate's region path by plate id: its county's, then its street's within that
    county, then its community's within that street, stopping at the first name that matches
    no region (or several); "" when not even the county matches. One query for any number."""
    names = {getattr(p, attr) for p in plates for _, attr in _LEVELS}
    paths: dict[tuple[RegionLevel, str], list[str]] = {}
    if names:
        for name, level, path in await Region.filter(name__in=sorted(names)).values_list(
                "name", "level", "path"):
            paths.setdefault((RegionLevel(level), str(name)), []).append(str(path))
    out: dict[int, str] = {}
    for plate in plates:
        at = ""
        for level, attr in _LEVELS:
            inside = [p for p in paths.get((level, getattr(plate, attr)), [])
                      if p.startswith(at)]
            if len(inside) != 1:
                break
            at = inside[0]
        out[plate.id] = at
    return out


async def _in_area(actor: Principal, codes: list[str]) -> dict[str, DoorPlate]:
    """The plates among ``codes`` that exist and lie in the actor's area, by code."""
    if not actor.is_staff:
        raise forbidden()
    valid = [c for c in codes if PLATE_CODE.match(c)]
    plates = {p.code: p for p in await DoorPlate.filter(code__in=valid)} if valid else {}
    sc = await scope_of(actor)
    if sc.everything or not plates:
        return plates
    paths = await region_paths(list(plates.values()))
    return {c: p for c, p in plates.items() if sc.covers_area(paths[p.id])}


async def access_doorplate(actor: Principal, plate_code: str, *,
                           for_change: bool = False) -> DoorPlate:
    """The door plate a staff member acts on, by its code, if it lies in their area."""
    del for_change  # the same people read and change (module docstring)
    plate = (await _in_area(actor, [plate_code])).get(plate_code)
    if plate is None:
        raise not_found("门牌")
    return plate


async def access_doorplates(actor: Principal, plate_codes: list[str], *,
                            for_change: bool = False) -> list[DoorPlate]:
    """``access_doorplate`` for the plates of one request at once (a batch, a sheet), in the
    order asked, each once. Any plate missing or outside the actor's area: 404 naming them,
    the same answer for both, so a batch can't probe which plates exist elsewhere."""
    del for_change
    wanted = list(dict.fromkeys(plate_codes))
    plates = await _in_area(actor, wanted)
    missing = [c for c in wanted if c not in plates]
    if missing:
        raise AppError(ErrorCode.not_found, "门牌不存在",
                       fields={"plate_codes": "、".join(missing)})
    return [plates[c] for c in wanted]
