"""政务地图: halls, self-service points, "open now", and what's near me."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sanic import Blueprint, Request, Sanic

from api.endpoint import endpoint
from models.catalogue import HallLevel
from models.users import Role
from services import guide, halls
from services.auth import Principal
from services.halls import Place, PlaceKind

bp = Blueprint("map", url_prefix="/api/v1/map")
admin_bp = Blueprint("admin_map", url_prefix="/api/v1/admin/map")

# China's bounding box: anything outside is a client bug, not a place we serve.
Lat = Field(ge=3.8, le=53.6, description="纬度（GCJ-02）")
Lng = Field(ge=73.5, le=135.1, description="经度（GCJ-02）")


class MarkerOut(BaseModel):
    """Exactly what the mini program's <map markers> entry needs."""

    id: int = Field(description="数字 id（大厅与自助点不重复）")
    latitude: float
    longitude: float
    title: str


class WindowOut(BaseModel):
    kind: str
    name: str


class PlaceOut(BaseModel):
    type: Literal["hall", "self_service_point"]
    id: int = Field(description="与 marker.id 相同")
    code: str
    name: str
    title: str = Field(description="地图标记标题")
    lat: float = Field(description="纬度（GCJ-02）")
    lng: float = Field(description="经度（GCJ-02）")
    coord: Literal["gcj02"] = "gcj02"
    level: str | None = Field(description="city / county / township；自助点为空")
    county: str
    address: str
    phone: str
    hours: str = Field(description="开放时间说明")
    open_now: bool | None = Field(description="此刻是否开放（已计入法定节假日与调休）；未知为空")
    next_open: datetime | None = Field(description="未开放时，下次开放时间")
    self_service_24h: bool = Field(description="设有24小时自助服务区/自助终端")
    windows: list[WindowOut]
    distance_m: float | None = Field(description="距离（米），仅附近查询")
    marker: MarkerOut


class PlacesQuery(BaseModel):
    level: HallLevel | None = None
    county: str | None = Field(default=None, max_length=32)
    kind: PlaceKind | None = Field(default=None,
                                   description="hall / self_service，或窗口类型（有该窗口的大厅）")
    item: str | None = Field(default=None, max_length=32, description="事项编码：能办该事项的大厅")


class PlacesOut(BaseModel):
    places: list[PlaceOut]


class NearbyQuery(BaseModel):
    lat: float = Lat
    lng: float = Lng
    radius_km: float = Field(default=10, gt=0, le=200, description="半径（千米）")
    kind: PlaceKind | None = Field(default=None,
                                   description="hall / self_service，或窗口类型（有该窗口的大厅）")
    item: str | None = Field(default=None, max_length=32, description="事项编码：附近哪里能办")
    limit: int = Field(default=20, ge=1, le=50)


class NearbyOut(BaseModel):
    source: Literal["redis", "database"] = Field(description="redis 为 GEO 索引；database 为降级")
    places: list[PlaceOut]


HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class HoursIn(BaseModel):
    """Weekly hours; holidays and 调休 are applied on top from the calendar."""

    model_config = ConfigDict(extra="forbid")

    always: StrictBool = Field(default=False, description="24小时开放（忽略以下字段）")
    weekdays: list[Annotated[int, Field(strict=True, ge=1, le=7)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], max_length=7, description="1=周一 … 7=周日")
    periods: list[tuple[HHMM, HHMM]] = Field(
        default_factory=list, max_length=6, description='[["09:00","12:00"],["14:00","17:30"]]')

    def stored(self) -> dict[str, Any]:
        if self.always:
            return {"always": True}
        return {"weekdays": sorted(set(self.weekdays)),
                "periods": [list(p) for p in self.periods]}


class HallUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2, max_length=128)
    level: HallLevel
    county: str = Field(min_length=1, max_length=32)
    address: str = Field(default="", max_length=255)
    # Strict in a JSON body (true is not a latitude); the query models must stay lax.
    lat: float = Field(strict=True, ge=3.8, le=53.6, description="纬度（GCJ-02）")
    lng: float = Field(strict=True, ge=73.5, le=135.1, description="经度（GCJ-02）")
    phone: str = Field(default="", max_length=32)
    hours: HoursIn
    self_service_24h: StrictBool = False
    is_active: StrictBool = True


def place_out(p: Place) -> PlaceOut:
    return PlaceOut(
        type=p.type, id=p.marker_id, code=p.code, name=p.name, title=p.name, lat=p.lat,
        lng=p.lng, level=p.level, county=p.county, address=p.address, phone=p.phone,
        hours=p.hours, open_now=p.open_now, next_open=p.next_open,
        self_service_24h=p.self_service_24h,
        windows=[WindowOut(kind=k, name=n) for k, n in p.windows], distance_m=p.distance_m,
        marker=MarkerOut(id=p.marker_id, latitude=p.lat, longitude=p.lng, title=p.name))


@bp.after_server_start
async def warm_indexes(_app: Sanic) -> None:  # type: ignore[type-arg]
    # Each worker refreshing the GEO set at start is harmless (the swap is atomic) and means a
    # Redis restarted empty is filled again before the first "near me". Building the search
    # index here too spares the first resident the ~1 s jieba load.
    await halls.rebuild_quietly()
    await guide.warm_quietly()


@bp.get("/places")
@endpoint(query=PlacesQuery, response=PlacesOut, public=True, errors=(404,), tag="map",
          summary="大厅与24小时自助服务点（含窗口、开放时间与当前是否开放）")
async def places(_request: Request, query: PlacesQuery) -> PlacesOut:
    rows = await halls.list_places(level=query.level, county=query.county, kind=query.kind,
                                   item_code=query.item)
    return PlacesOut(places=[place_out(p) for p in rows])


@bp.get("/halls/<code:str>")
@endpoint(response=PlaceOut, public=True, errors=(404,), tag="map", summary="大厅详情")
async def hall(_request: Request, code: str) -> PlaceOut:
    return place_out(await halls.get_hall(code))


@bp.get("/nearby")
@endpoint(query=NearbyQuery, response=NearbyOut, public=True, errors=(404,), tag="map",
          summary="附近的大厅与自助点（可按事项：附近哪里能办）")
async def nearby(_request: Request, query: NearbyQuery) -> NearbyOut:
    found = await halls.nearby(lat=query.lat, lng=query.lng, radius_km=query.radius_km,
                               kind=query.kind, item_code=query.item, limit=query.limit)
    return NearbyOut(source=found.source, places=[place_out(p) for p in found.places])


@admin_bp.put("/halls/<code:str>")
@endpoint(body=HallUpdateIn, response=PlaceOut, roles=[Role.staff, Role.admin], tag="admin",
          summary="更新大厅位置、开放时间等（同时刷新附近索引）")
async def update_hall(_request: Request, code: str, body: HallUpdateIn,
                      principal: Principal) -> PlaceOut:
    values = body.model_dump(mode="json", exclude={"hours"}) | {"hours": body.hours.stored()}
    place = await halls.update_hall(actor=principal, code=code, values=values)
    return place_out(place)
