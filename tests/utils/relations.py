"""Relations a community worker needs before acting for someone (services/onbehalf.py)."""

from __future__ import annotations

from models.codes import DoorPlate, Household
from models.users import Person
from services import onbehalf, people

COMMUNITY = ("西峰区", "长庆社区")


async def lives_in_workers_grid(worker_user_id: int, *, name: str, id_number: str,
                                community: tuple[str, str] = COMMUNITY) -> Person:
    """The person lives at a door plate of a community whose grid the worker looks after:
    the ordinary reason a worker books for a neighbour."""
    county, community_name = community
    plate, _ = await DoorPlate.get_or_create(
        code=f"T-{county}-{community_name}", defaults={
            "county": county, "street": "长庆路", "community": community_name,
            "address": "测试门牌 1 号", "lat": 35.7, "lng": 107.6})
    person = await people.upsert_person(name=name, id_number=id_number)
    await Household.get_or_create(doorplate=plate, person=person,
                                  defaults={"relation": "户主"})
    await onbehalf.assign_grid_worker(user_id=worker_user_id, county=county,
                                      community=community_name, contact_name="网格员",
                                      contact_phone="0934-8212345")
    return person
