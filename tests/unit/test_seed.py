from typing import Any

from miniprogram_stub import demo_accounts
from miniprogram_stub.platform import FakeWeChatPlatform
from models.catalogue import Bundle, Hall, ServiceItem, Window
from models.codes import DoorPlate
from models.enterprises import Enterprise
from models.users import Person, Role, User, UserRole
from services import seed
from services.settings import get_settings


async def test_demo_seed_loads_everything_and_is_idempotent():
    await seed.run()
    await seed.run()
    data = seed.load_demo_data()
    assert await Hall.all().count() == len(data["halls"])
    assert await ServiceItem.all().count() == 61
    assert await Bundle.all().count() == 13
    assert await Person.all().count() == len(data["persons"])
    assert await Enterprise.all().count() == len(data["enterprises"])
    assert await Window.filter(hall__code="H-QY-000").count() == 7


# --- seeding again never undoes what staff changed ------------------------------------------

async def test_staff_edits_survive_a_second_seed(api: Any) -> None:
    await seed.run()
    hall = await Hall.get(code="H-QY-000")
    admin = await api.login("seed-admin", Role.admin, Role.staff)
    new_hours = {"weekdays": [1, 2, 3], "periods": [["10:00", "12:00"]]}
    put = await admin.put(f"/api/v1/admin/map/halls/{hall.code}", json={
        "name": hall.name, "level": hall.level, "county": hall.county, "address": hall.address,
        "lat": hall.lat, "lng": hall.lng, "phone": "0934-1111111", "hours": new_hours})
    assert put.status == 200, put.text
    item = await ServiceItem.get(code="MZ-004")
    await ServiceItem.filter(code="MZ-004").update(promised_limit_days=2, name="改过的名称")
    await Bundle.filter(code=(await Bundle.first()).code).update(description="工作人员改的说明")
    plate = await DoorPlate.first()
    await DoorPlate.filter(id=plate.id).update(address="更正后的地址")
    person = await Person.first()
    await Person.filter(id=person.id).update(tags=[])
    firms = [e for e in await Enterprise.all() if "tech_sme" in (e.tags or [])]
    assert firms  # the demo tags one on the first seed
    await Enterprise.filter(id=firms[0].id).update(tags=[])

    await seed.run()

    again = await Hall.get(code="H-QY-000")
    assert again.hours == new_hours and again.phone == "0934-1111111"
    edited = await ServiceItem.get(code="MZ-004")
    assert (edited.promised_limit_days, edited.name) == (2, "改过的名称") != (
        item.promised_limit_days, item.name)
    assert await Bundle.filter(description="工作人员改的说明").exists()
    assert (await DoorPlate.get(id=plate.id)).address == "更正后的地址"
    assert (await Person.get(id=person.id)).tags == []
    assert (await Enterprise.get(id=firms[0].id)).tags == []


async def test_revoked_demo_role_stays_revoked() -> None:
    await seed.run()
    appid = get_settings().wechat_appid
    await demo_accounts.seed(appid)
    worker = await User.get(openid=FakeWeChatPlatform(appid=appid).openid_for(
        demo_accounts.GRID_WORKER))
    await UserRole.filter(user=worker, role=Role.community_worker).delete()
    await demo_accounts.seed(appid)
    assert not await UserRole.filter(user=worker, role=Role.community_worker).exists()
