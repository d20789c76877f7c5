"""电子证照: the electronic licences a person or an enterprise holds. A staff scan of a 人码
shows the person's (services/codes), an enterprise's code shows its public ones, and online
applications reuse them as materials (services/online.py). No staff routes manage them yet:
the demo seed grants them (services/doorplates.py)."""

from __future__ import annotations

from datetime import date

from models.codes import ElectronicLicence
from services import codes


async def grant_licence(*, kind: str, title: str, number_masked: str, issuer: str,
                        issued_on: date, valid_until: date | None = None,
                        person_id: int | None = None, enterprise_id: int | None = None,
                        is_public: bool = False) -> ElectronicLicence:
    if (person_id is None) == (enterprise_id is None):
        raise ValueError("a licence belongs to exactly one person or enterprise")
    lic, _ = await ElectronicLicence.update_or_create(
        person_id=person_id, enterprise_id=enterprise_id, kind=kind,
        defaults={"title": title, "number_masked": number_masked, "issuer": issuer,
                  "issued_on": issued_on, "valid_until": valid_until, "is_public": is_public})
    if enterprise_id is not None:
        # The enterprise code's cached view lists its public licences. (A person code's view
        # is built at issue and lives a minute.)
        await codes.invalidate_views(enterprise_id=enterprise_id)
    return lic
