from models.catalogue import Bundle, Hall, ServiceItem, Window
from models.enterprises import Enterprise
from models.users import Person
from services import seed


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
