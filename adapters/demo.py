"""``reflow demo``: a day of a dropshipping merchant, end to end, in one command.

1. A private ``nats-server`` (JetStream) starts on a free port, and ``reflow serve`` in this
   process, with the SQLite event store and the analysts' DuckDB file in a fresh data directory.
2. The demo publishes what the shops, the suppliers and the merchant's back office would: JSON
   bodies on the contract's ``reflow.in.*`` subjects, each with its own ``Nats-Msg-Id``, in four
   stages, waiting after each until serve has applied everything and published what it caused:

   - **opening**: six shops on six platforms, the merchant's settings (hold rules, split
     tolerance), a dozen suppliers with offers, stock and prices (one price rises at noon),
     merchant codes, links (reflow quantities, a two-supplier bundle, a warehouse serving only
     southern provinces, a micro-supply offer), stock rules;
   - **the day** (four days ago, China time): orders over the day's hours, address changes,
     cancellations, after-sales before tracking, a platform review, orders held by the hold
     rules, orders for a product not linked yet, and one message with a producer's bug (a supplier
     price as a JSON number) that goes to the dead letters;
   - **the suppliers**: each reads its allocations and intercepts from ``REFLOW_OUT`` (as a
     supplier would: it never sees order ids) and answers: tracking on time or late, some not yet;
     intercepts stopped, too late (with a tracking number), or ignored (a loss risk);
   - **this morning**: a sold-out SKU restocked, the late product linked and its pre-link orders
     pulled, reviews cleared and held orders released, returns of delivered parcels, a manual
     cancellation.
3. serve stops (draining), the projections catch up, one supplier statement is issued, and the
   report is read from the DuckDB views.

Deterministic for a seed and a day (``DemoDay.play`` is the timeline): the messages depend only
on the seed, the size and the day, and the suppliers' answers only on what ``REFLOW_OUT`` says;
each stage is published whole and applied before the next is made. Messages that carry no
business time of their own (offers, links, reviews, releases, the pull) take the time the broker
stored them, which is why the day lies in the past and the morning is now. The one time the
demo puts on a message that is not in the plan, the restock's ``at``, is the broker's time of the
last message before the morning (never the demo's own clock), so it comes after the offer's
publication whatever the speed of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from engine.servicelevel import LOCAL

UTC = timezone.utc
MERCHANT = "m-hangzhou-01"
MERCHANT_NAME = "杭州简物电子商务有限公司"
DEFAULT_ORDERS = 3000
QUICK_ORDERS = 300
DEFAULT_SEED = 2024
DAYS_AGO = 4
HOLD_OVER = Decimal("1500.00")
HOLD_WORDS = ("加急", "发票")

# -- the merchant's world -----------------------------------------------------------------------


@dataclass(frozen=True)
class SupplierSpec:
    supplier_id: str
    name: str
    ship_within_hours: int
    score: float
    carriers: tuple[str, ...]
    late: float  # share of allocations tracked after ship_by (T3)
    ignores: float  # share of intercepts shipped anyway: tracking comes back, a loss risk (I7)
    too_late: float  # share of intercepts answered too_late (I8)
    slow: float = 0.02  # share not tracked yet


SUPPLIERS = (
    SupplierSpec("yiwu-case-01", "义乌市美壳电子商务有限公司", 48, 96.5, ("ZTO", "YTO"), 0.02, 0.04, 0.08),
    SupplierSpec("shenzhen-acc-07", "深圳市酷联数码配件有限公司", 24, 94, ("SF",), 0.03, 0.0, 0.05),
    SupplierSpec("guangzhou-beauty-03", "广州市颜究化妆品有限公司", 48, 92, ("YTO", "ZTO"), 0.04, 0.03, 0.05),
    SupplierSpec("hangzhou-tea-02", "杭州西湖龙井茶业有限公司", 48, 97, ("SF",), 0.01, 0.0, 0.0),
    SupplierSpec("jinjiang-shoe-05", "晋江市步云鞋业有限公司", 48, 88, ("YUNDA", "ZTO"), 0.08, 0.05, 0.10),
    SupplierSpec("dongguan-toy-04", "东莞市乐童玩具厂", 48, 81, ("STO",), 0.16, 0.12, 0.10, 0.04),
    SupplierSpec("foshan-home-06", "佛山市居优家居用品有限公司", 48, 90, ("ZTO",), 0.05, 0.03, 0.05),
    SupplierSpec("yiwu-daily-11", "义乌市百纳日用品有限公司", 48, 85, ("YTO", "STO"), 0.07, 0.06, 0.08),
    SupplierSpec("ningbo-kitchen-08", "宁波市厨匠电器有限公司", 24, 93, ("JD",), 0.03, 0.0, 0.05),
    SupplierSpec("quanzhou-bag-09", "泉州市行者箱包有限公司", 48, 89, ("YUNDA",), 0.05, 0.03, 0.05),
    SupplierSpec("putian-sport-10", "莆田市速跑体育用品有限公司", 48, 86, ("ZTO",), 0.06, 0.05, 0.05),
    SupplierSpec("shantou-snack-12", "汕头市味道食品有限公司", 48, 91, ("YTO",), 0.04, 0.03, 0.05),
)
SUPPLIER = {s.supplier_id: s for s in SUPPLIERS}


@dataclass(frozen=True)
class OfferSpec:
    supplier_id: str
    offer_id: str
    title: str
    skus: tuple[tuple[str, str, str], ...]  # (supplier_sku_id, spec, settlement price)
    private: bool = False  # a micro-supply offer open only to this merchant (M1)


OFFERS = (
    OfferSpec("yiwu-case-01", "6541236987", "iPhone15 磨砂防摔手机壳 一件代发",
              (("4987001", "黑色", "6.80"), ("4987002", "白色", "6.80"), ("4987003", "透明", "5.90"))),
    OfferSpec("yiwu-case-01", "6541239912", "iPhone15 Pro 液态硅胶手机壳",
              (("4988101", "午夜黑", "8.50"), ("4988102", "远峰蓝", "8.50"))),
    OfferSpec("shenzhen-acc-07", "7012345678", "iPhone15 磨砂手机壳 深圳现货",
              (("5550101", "黑色", "7.00"), ("5550102", "白色", "7.00"))),
    OfferSpec("shenzhen-acc-07", "7012345679", "高清钢化膜 防指纹 单片",
              (("5550202", "iPhone15", "2.30"), ("5550203", "iPhone15 Pro", "2.50"))),
    OfferSpec("shenzhen-acc-07", "7012345680", "20W PD快充充电头 3C认证", (("5550301", "白色", "18.50"),)),
    OfferSpec("shenzhen-acc-07", "7012345681", "磁吸无线充电宝 10000mAh 新品",
              (("5550401", "星光白", "52.00"), ("5550402", "远峰蓝", "52.00"))),
    OfferSpec("guangzhou-beauty-03", "5829301147", "烟酰胺美白精华液 30ml", (("7700101", "30ml", "22.00"),)),
    OfferSpec("guangzhou-beauty-03", "5829301148", "氨基酸温和洁面乳 100g", (("7700201", "100g", "9.50"),)),
    OfferSpec("guangzhou-beauty-03", "5829309999", "微供专享 精华+洁面 护肤套装",
              (("7709901", "套装", "29.00"),), private=True),
    OfferSpec("hangzhou-tea-02", "6100200301", "2024明前西湖龙井 250g 礼盒装", (("8801001", "250g礼盒", "88.00"),)),
    OfferSpec("jinjiang-shoe-05", "6203304405", "男士透气飞织运动鞋",
              tuple((f"33001{size}", f"{size}码", "65.00") for size in range(39, 45))),
    OfferSpec("dongguan-toy-04", "6305506607", "儿童益智拼装积木 300粒", (("2201001", "300粒桶装", "25.00"),)),
    OfferSpec("foshan-home-06", "6407708809", "加厚珊瑚绒毛毯 150x200cm 华南仓",
              (("1101001", "灰色", "29.00"), ("1101002", "粉色", "29.00"))),
    OfferSpec("yiwu-daily-11", "6509901101", "加厚珊瑚绒毛毯 150x200cm",
              (("1201001", "灰色", "32.00"), ("1201002", "粉色", "32.00"))),
    OfferSpec("yiwu-daily-11", "6509901102", "桌面收纳盒三件套", (("1202001", "白色", "12.00"),)),
    OfferSpec("ningbo-kitchen-08", "6611223344", "家用空气炸锅 3.5L 无油",
              (("9901001", "奶白色", "118.00"), ("9901002", "墨绿色", "118.00"))),
    OfferSpec("quanzhou-bag-09", "6712345098", "通勤双肩包 防泼水 15.6寸",
              (("4401001", "黑色", "45.00"), ("4401002", "灰色", "45.00"))),
    OfferSpec("putian-sport-10", "6813579246", "纯棉中筒运动袜 5双装",
              (("5501001", "白色", "9.90"), ("5501002", "黑色", "9.90"))),
    OfferSpec("shantou-snack-12", "6924681357", "网红辣条零食大礼包 1.2kg", (("6601001", "大礼包", "15.80"),)),
)
OFFER_OF_SKU = {(o.supplier_id, sku): o.offer_id for o in OFFERS for sku, _, _ in o.skus}
PRICE_RISE = ("guangzhou-beauty-03", "7700101", "23.50")  # effective at noon of the day (RC1)
SCARCE = ("ningbo-kitchen-08", "9901001")  # sells out in the afternoon; restocked in part this morning
SOUTH = ("广东省", "广西壮族自治区", "海南省", "福建省")  # foshan-home-06's warehouse serves these (RT9)


def _c(supplier_id: str, sku: str, qty: int = 1) -> tuple[str, str, str, int]:
    return (supplier_id, OFFER_OF_SKU[(supplier_id, sku)], sku, qty)


@dataclass(frozen=True)
class ProductSpec:
    title: str
    skus: tuple[tuple[str, str, tuple[tuple[tuple, ...], ...]], ...]  # (spec, price, alternatives)
    weight: float
    sku_level: bool = True  # False: a product without SKUs, linked at product level (L6)
    south_first: bool = False  # the first alternative serves SOUTH only (RT9)


Y, SZ, GZ, FS, YD = "yiwu-case-01", "shenzhen-acc-07", "guangzhou-beauty-03", "foshan-home-06", "yiwu-daily-11"
PRODUCTS: dict[str, ProductSpec] = {
    "case15": ProductSpec("磨砂防摔手机壳 iPhone 15", (
        ("黑色", "19.90", ((_c(Y, "4987001"),), (_c(SZ, "5550101"),))),
        ("白色", "19.90", ((_c(Y, "4987002"),), (_c(SZ, "5550102"),))),
        ("透明", "16.90", ((_c(Y, "4987003"),),)),
    ), 16),
    "case15pro": ProductSpec("液态硅胶手机壳 iPhone 15 Pro", (
        ("午夜黑", "24.90", ((_c(Y, "4988101"),),)),
        ("远峰蓝", "24.90", ((_c(Y, "4988102"),),)),
    ), 8),
    "film": ProductSpec("高清钢化膜 两片装", (  # reflow quantity 2: one sold = two films (L3)
        ("iPhone15", "9.90", ((_c(SZ, "5550202", 2),),)),
        ("iPhone15 Pro", "9.90", ((_c(SZ, "5550203", 2),),)),
    ), 10),
    "bundle": ProductSpec("手机壳+钢化膜 超值套餐", (  # a bundle from two suppliers (L4)
        ("黑色套餐", "26.90", ((_c(Y, "4987001"), _c(SZ, "5550202", 2)),)),
        ("白色套餐", "26.90", ((_c(Y, "4987002"), _c(SZ, "5550202", 2)),)),
    ), 6),
    "charger": ProductSpec("20W PD快充充电头", (("白色", "39.90", ((_c(SZ, "5550301"),),)),), 7),
    "powerbank": ProductSpec("磁吸无线充电宝 10000mAh", (
        ("星光白", "99.00", ((_c(SZ, "5550401"),),)),
        ("远峰蓝", "99.00", ((_c(SZ, "5550402"),),)),
    ), 5),
    "serum": ProductSpec("烟酰胺美白精华液 30ml", (("30ml", "69.00", ((_c(GZ, "7700101"),),)),), 9),
    "cleanser": ProductSpec("氨基酸洗面奶 100g", (("100g", "29.90", ((_c(GZ, "7700201"),),)),), 8),
    "skinset": ProductSpec("精华+洁面 护肤套装 微供专享", (("套装", "89.00", ((_c(GZ, "7709901"),),)),), 6),
    "tea": ProductSpec("明前西湖龙井 250g 礼盒", (("250g礼盒", "198.00", ((_c("hangzhou-tea-02", "8801001"),),)),), 3),
    "shoes": ProductSpec("男士透气飞织运动鞋", tuple(
        (f"{size}码", "159.00", ((_c("jinjiang-shoe-05", f"33001{size}"),),)) for size in range(39, 45)), 6),
    "blocks": ProductSpec("儿童益智拼装积木 300粒", (("300粒桶装", "59.90", ((_c("dongguan-toy-04", "2201001"),),)),), 6),
    "blanket": ProductSpec("加厚珊瑚绒毛毯 150x200cm", (
        ("灰色", "79.00", ((_c(FS, "1101001"),), (_c(YD, "1201001"),))),
        ("粉色", "79.00", ((_c(FS, "1101002"),), (_c(YD, "1201002"),))),
    ), 7, south_first=True),
    "storage": ProductSpec("桌面收纳盒三件套", (("白色", "29.90", ((_c(YD, "1202001"),),)),), 6),
    "airfryer": ProductSpec("家用空气炸锅 3.5L", (
        ("奶白色", "239.00", ((_c("ningbo-kitchen-08", "9901001"),),)),
        ("墨绿色", "239.00", ((_c("ningbo-kitchen-08", "9901002"),),)),
    ), 4),
    "backpack": ProductSpec("通勤双肩包 15.6寸", (
        ("黑色", "119.00", ((_c("quanzhou-bag-09", "4401001"),),)),
        ("灰色", "119.00", ((_c("quanzhou-bag-09", "4401002"),),)),
    ), 5),
    "socks": ProductSpec("纯棉中筒运动袜", (
        ("白色 5双装", "25.90", ((_c("putian-sport-10", "5501001"),),)),
        ("黑色 5双装", "25.90", ((_c("putian-sport-10", "5501002"),),)),
        ("白色 10双装", "45.90", ((_c("putian-sport-10", "5501001", 2),),)),
    ), 8),
    "snack": ProductSpec("网红辣条零食大礼包", (("", "35.80", ((_c("shantou-snack-12", "6601001"),),)),), 7,
                         sku_level=False),
}
# Merchant codes (L7): the Kuaishou shop's socks are not linked; their lines carry these codes.
CODES = {"白色 5双装": ("WZ-5P-WHT", _c("putian-sport-10", "5501001")),
         "黑色 5双装": ("WZ-5P-BLK", _c("putian-sport-10", "5501002")),
         "白色 10双装": ("WZ-10P-WHT", _c("putian-sport-10", "5501001", 2))}


@dataclass(frozen=True)
class ShopSpec:
    platform: str
    shop_id: str
    name: str
    weight: float
    products: tuple[str, ...]
    live: float = 0.0  # share of orders from live streams (channel `live`)


SHOPS = (
    ShopSpec("douyin", "dy-880123", "抖音·简物数码旗舰店", 32,
             ("case15", "case15pro", "film", "bundle", "charger", "powerbank", "serum", "snack", "blocks"), 0.6),
    ShopSpec("kuaishou", "ks-5520917", "快手·简物好物小店", 10, ("snack", "socks", "blanket", "storage", "tea"), 0.7),
    ShopSpec("taobao", "tb-36871245", "淘宝·简物居家", 14, ("blanket", "storage", "airfryer", "backpack", "shoes", "tea")),
    ShopSpec("tmall", "tm-61002233", "天猫·简物美妆旗舰店", 12, ("serum", "cleanser", "tea", "airfryer")),
    ShopSpec("pinduoduo", "pdd-771204", "拼多多·简物百货", 24,
             ("case15", "film", "socks", "snack", "storage", "blanket", "shoes")),
    ShopSpec("weigong", "wg-3301", "微供·简物美妆分销", 8, ("skinset", "serum", "cleanser")),
)
LATE_LINK = ("douyin", "dy-880123", "powerbank")  # listed before it was linked: pre-link orders (L10)
CODE_ONLY = ("kuaishou", "ks-5520917", "socks")  # routed by merchant code, no link (L7)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
         "秀英", "霞", "平", "刚", "桂英", "浩然", "子涵", "欣怡", "梓轩", "雨桐", "一诺", "宇轩", "思琪", "俊杰",
         "佳怡", "晓东", "海燕", "建国", "丹", "鑫", "婷婷", "晨曦", "文博")
PHONE_PREFIXES = ("138", "139", "135", "136", "137", "150", "151", "152", "158", "159", "182", "187", "188",
                  "130", "131", "132", "155", "156", "185", "186", "133", "153", "180", "181", "189", "177", "199")
REGIONS = (  # (province, city, districts, weight)
    ("广东省", "广州市", ("天河区", "海珠区", "白云区", "番禺区"), 9),
    ("广东省", "深圳市", ("南山区", "福田区", "宝安区", "龙岗区"), 9),
    ("广东省", "东莞市", ("", ), 2),  # a city without districts
    ("浙江省", "杭州市", ("西湖区", "拱墅区", "余杭区", "滨江区"), 7),
    ("江苏省", "南京市", ("鼓楼区", "玄武区", "江宁区"), 5),
    ("江苏省", "苏州市", ("姑苏区", "吴中区", "相城区"), 5),
    ("上海市", "上海市", ("浦东新区", "徐汇区", "闵行区", "杨浦区"), 7),
    ("北京市", "北京市", ("朝阳区", "海淀区", "丰台区", "昌平区"), 7),
    ("山东省", "济南市", ("历下区", "市中区", "槐荫区"), 4),
    ("山东省", "青岛市", ("市南区", "崂山区", "黄岛区"), 4),
    ("四川省", "成都市", ("武侯区", "锦江区", "郫都区"), 6),
    ("湖北省", "武汉市", ("洪山区", "江汉区", "武昌区"), 5),
    ("河南省", "郑州市", ("金水区", "二七区", "中原区"), 5),
    ("福建省", "厦门市", ("思明区", "湖里区", "集美区"), 3),
    ("福建省", "福州市", ("鼓楼区", "仓山区"), 2),
    ("广西壮族自治区", "南宁市", ("青秀区", "西乡塘区"), 2),
    ("海南省", "海口市", ("美兰区", "龙华区"), 1),
    ("湖南省", "长沙市", ("岳麓区", "雨花区", "开福区"), 4),
    ("陕西省", "西安市", ("雁塔区", "未央区", "碑林区"), 4),
    ("重庆市", "重庆市", ("渝北区", "江北区", "沙坪坝区"), 4),
    ("河北省", "石家庄市", ("长安区", "裕华区"), 3),
    ("辽宁省", "沈阳市", ("和平区", "浑南区"), 2),
    ("安徽省", "合肥市", ("蜀山区", "包河区"), 3),
    ("江西省", "南昌市", ("红谷滩区", "青山湖区"), 2),
    ("云南省", "昆明市", ("五华区", "盘龙区"), 2),
)
STREETS = ("人民路", "解放路", "中山路", "建设路", "文化路", "新华路", "和平路", "学府路", "科技路", "长江路",
           "滨江大道", "光明街", "幸福路", "迎宾大道", "花园路", "青年路", "湖滨路", "工业大道")
REMARKS = ("请尽快发货", "送人的，不要放价格单", "不要发韵达", "颜色别发错，谢谢", "快递放门卫", "周末不在家，放驿站")
HOLD_REMARKS = ("加急！周末要用", "需要开发票，抬头：杭州某某科技有限公司")
HOUR_WEIGHTS = (2, 1, 1, 0.5, 0.5, 0.5, 1, 2, 4, 6, 7, 7, 6, 5, 5, 5, 5, 5, 6, 7, 9, 10, 9, 5)


def product_id(platform: str, key: str) -> str:
    """A platform-looking product id, the same for every run (the shop's listing)."""
    n = int(hashlib.sha256(f"{platform}/{key}".encode()).hexdigest(), 16)
    length = {"douyin": 19, "kuaishou": 14, "taobao": 12, "tmall": 12, "pinduoduo": 11, "weigong": 10}[platform]
    return str(3 + n % 6) + str(n)[1:length]


def sku_id(platform: str, key: str, k: int) -> str:
    return f"{product_id(platform, key)[-7:]}{k + 1:02d}"


def price_on(platform: str, price: str) -> Decimal:
    """Pinduoduo sells cheaper: a tenth off, ending in .90."""
    p = Decimal(price)
    if platform == "pinduoduo" and p > 10:
        p = (p * Decimal("0.9")).quantize(Decimal(1), rounding=ROUND_HALF_UP) - Decimal("0.10")
    return p


# -- messages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    subject: str  # without the `reflow.in.` prefix
    body: dict[str, Any]
    msg_id: str


def iso(dt: datetime) -> str:
    """RFC 3339 in China time, as Chinese platforms send it."""
    return dt.astimezone(LOCAL).isoformat(timespec="seconds")


def iso_exact(dt: datetime) -> str:
    """RFC 3339 in China time, to the microsecond: for a time taken from the broker, which the
    engine compares with other broker times (cut to the second it could fall before them)."""
    return dt.astimezone(LOCAL).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Line:
    line_id: str
    product: str
    k: int  # index of the SKU in the product
    qty: int
    price: Decimal


@dataclass
class PlannedOrder:
    shop: ShopSpec
    order_id: str
    placed_at: datetime
    buyer: dict[str, str]
    lines: list[Line]
    channel: str | None
    remark: str | None
    role: str = "plain"  # plain | held | review | cancel | address | refund_all | refund_line

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.shop.platform, self.shop.shop_id, self.order_id)

    @property
    def amount(self) -> Decimal:
        return sum((ln.price * ln.qty for ln in self.lines), Decimal(0))


@dataclass(frozen=True)
class Applied:
    """What one stage left once serve applied it: the ``REFLOW_OUT`` messages it caused (subject,
    body), in stream order, and the time the broker stored its last message."""

    out: list[tuple[str, dict[str, Any]]]
    last_at: datetime


Stage = Callable[[str, list[Message]], Awaitable[Applied]]
"""Publishes one stage's messages in order, waits until serve applied them and published what
they caused, and says so (``_Producer.stage``; the tests' in-process driver)."""


@dataclass
class SupplierWork:
    """What the simulated suppliers did (the morning needs it: returns, restock, cancellation)."""

    tracked_at: dict[str, datetime] = field(default_factory=dict)  # tracking_no -> upload time
    untracked: list[str] = field(default_factory=list)  # allocations still waiting for the supplier
    shipped_units: Counter = field(default_factory=Counter)  # (supplier, sku) -> units out


class DemoDay:
    """The generated day of one merchant: every message, deterministic for (seed, orders, day)."""

    def __init__(self, seed: int = DEFAULT_SEED, orders: int = DEFAULT_ORDERS, day: date | None = None) -> None:
        if orders < 50:
            raise ValueError(f"--orders: at least 50, got {orders}")
        self.seed, self.n_orders = seed, orders
        self.day = day or (datetime.now(LOCAL).date() - timedelta(days=DAYS_AGO))
        self.start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=LOCAL)
        self.rng = random.Random(f"reflow-demo/{seed}/{orders}")
        self._n = 0
        self.orders = self._orders()
        self._assign_roles()
        self.stock = self._stock()

    # ids -----------------------------------------------------------------------------------

    def msg(self, subject: str, body: dict[str, Any]) -> Message:
        self._n += 1
        return Message(subject, body, f"demo-{self.seed}-{self.day:%Y%m%d}-{self._n:06d}")

    def _order_id(self, platform: str, taken: set[str]) -> str:
        r = self.rng
        while True:
            if platform == "douyin":
                oid = "69" + "".join(r.choice("0123456789") for _ in range(17))
            elif platform == "kuaishou":
                oid = f"{self.day:%y%m}" + "".join(r.choice("0123456789") for _ in range(12))
            elif platform in ("taobao", "tmall"):
                oid = r.choice("23") + "".join(r.choice("0123456789") for _ in range(18))
            elif platform == "pinduoduo":
                oid = f"{self.day:%y%m%d}-" + "".join(r.choice("0123456789") for _ in range(15))
            else:
                oid = f"WG{self.day:%Y%m%d}{r.randrange(10**6):06d}"
            if oid not in taken:
                taken.add(oid)
                return oid

    def _buyer(self) -> dict[str, str]:
        r = self.rng
        province, city, districts, _ = r.choices(REGIONS, weights=[x[3] for x in REGIONS])[0]
        return {
            "name": r.choice(SURNAMES) + r.choice(GIVEN),
            "phone": r.choice(PHONE_PREFIXES) + f"{r.randrange(10**8):08d}",
            "province": province, "city": city, "district": r.choice(districts),
            "address": self._street(),
        }

    def _street(self) -> str:
        r = self.rng
        return (f"{r.choice(STREETS)}{r.randint(1, 899)}号 {r.randint(1, 30)}栋"
                f"{r.randint(1, 4)}单元{r.randint(1, 32)}{r.randint(1, 4):02d}室")

    # the orders ----------------------------------------------------------------------------

    def _orders(self) -> list[PlannedOrder]:
        r = self.rng
        taken: set[str] = set()
        seconds = sorted(self._second_of_day() for _ in range(self.n_orders))
        out = []
        for s in seconds:
            shop = r.choices(SHOPS, weights=[x.weight for x in SHOPS])[0]
            placed_at = self.start + timedelta(seconds=s)
            n_lines = r.choices((1, 2, 3), weights=(76, 19, 5))[0]
            keys: list[str] = []
            while len(keys) < n_lines:
                key = r.choices(shop.products, weights=[PRODUCTS[k].weight for k in shop.products])[0]
                if key not in keys:
                    keys.append(key)
            oid = self._order_id(shop.platform, taken)
            lines = []
            for i, key in enumerate(keys):
                spec = PRODUCTS[key]
                k = r.randrange(len(spec.skus))
                price = price_on(shop.platform, spec.skus[k][1])
                qty = r.choices((1, 2, 3), weights=(72, 21, 7))[0] if price < 100 else 1
                lines.append(Line(f"{oid}-{i + 1}", key, k, qty, price))
            remark = r.choice(REMARKS) if r.random() < 0.08 else None
            channel = "live" if r.random() < shop.live else None
            out.append(PlannedOrder(shop, oid, placed_at, self._buyer(), lines, channel, remark))
        # orders the hold rules stop (I6): a company buying tea gifts, rush and invoice remarks
        held = max(2, self.n_orders // 400)
        for n in range(held):
            victim = out[r.randrange(len(out))]
            while victim.role != "plain" or victim.shop.platform == "weigong":
                victim = out[r.randrange(len(out))]
            victim.role = "held"
            if n % 2 == 0 and "tea" in victim.shop.products:
                victim.lines = [Line(f"{victim.order_id}-1", "tea", 0, r.randint(8, 12),
                                     price_on(victim.shop.platform, PRODUCTS["tea"].skus[0][1]))]
                victim.remark = "公司中秋福利采购，需分开包装"
            else:
                victim.remark = HOLD_REMARKS[n % len(HOLD_REMARKS)]
        for o in out:  # nothing else trips a hold rule by accident
            if o.role != "held":
                while o.amount > HOLD_OVER:
                    o.lines.pop()
        # a few pre-link orders for the product linked late, whatever the size
        douyin = [o for o in out if o.shop.platform == "douyin" and o.role == "plain"]
        for o in r.sample(douyin, k=min(len(douyin), max(3, self.n_orders // 300))):
            if not any(ln.product == "powerbank" for ln in o.lines):
                o.lines[0] = Line(o.lines[0].line_id, "powerbank", r.randrange(2), 1, Decimal("99.00"))
        return out

    def _second_of_day(self) -> int:
        hour = self.rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        return hour * 3600 + self.rng.randrange(3600)

    def _assign_roles(self) -> None:
        """Pick, once and for all, which orders get which trouble."""
        r, n = self.rng, self.n_orders
        plain = [o for o in self.orders if o.role == "plain" and o.placed_at.hour < 22]
        r.shuffle(plain)
        wanted = [("cancel", max(3, n * 3 // 100)), ("address", max(3, n * 25 // 1000)),
                  ("refund_all", max(3, n * 15 // 1000)), ("review", max(2, n // 200))]
        for role, count in wanted:
            for _ in range(count):
                plain.pop().role = role
        multi = [o for o in plain if len(o.lines) > 1]
        for o in multi[: max(2, n // 100)]:
            o.role = "refund_line"

    def _stock(self) -> dict[tuple[str, str], int]:
        """Each supplier SKU's stock: what the day could ask of it and some more; SCARCE runs out."""
        demand: Counter = Counter()
        for o in self.orders:
            for ln in o.lines:
                for alternative in PRODUCTS[ln.product].skus[ln.k][2]:
                    for supplier_id, _, sku, qty in alternative:
                        demand[(supplier_id, sku)] += qty * ln.qty
        stock = {}
        for offer in OFFERS:
            for sku, _, _ in offer.skus:
                need = demand[(offer.supplier_id, sku)]
                stock[(offer.supplier_id, sku)] = 10 * math.ceil((need * 1.6 + 40) / 10)
        stock[SCARCE] = max(1, int(demand[SCARCE] * 0.6))
        return stock

    # the timeline ---------------------------------------------------------------------------

    async def play(self, stage: Stage) -> SupplierWork:
        """The day's four stages, in order. A stage is made only from the plan and what the
        stages before it caused, once they are applied, never from anything that happens while
        messages are in flight; so the whole message sequence is the same on every run of a seed
        and day, and so are serve's decisions (the engine decides by message order, not by how
        the messages were batched). The restock is dated at the broker's time of the suppliers'
        last answer, the latest time serve has seen, and so after the offer's publication."""
        work = SupplierWork()
        await stage("opening: shops, suppliers, offers, links", self.opening())
        day = await stage(f"the day {self.day}: {self.n_orders:,} orders", self.the_day())
        answers = await stage("suppliers: tracking, intercept answers", self.suppliers_answer(day.out, work))
        await stage("this morning: restock, pull, releases", self.morning(answers.out, work, answers.last_at))
        return work

    # stage 1: the opening ------------------------------------------------------------------

    def opening(self) -> list[Message]:
        m, out = self.msg, []
        for shop in SHOPS:
            out.append(m("shop.registered", {"platform": shop.platform, "shop_id": shop.shop_id,
                                              "merchant_id": MERCHANT}))
        out.append(m("merchant.settings", {
            "merchant_id": MERCHANT, "source_pool": False, "split_tolerance": "0.05",
            "hold_amount_over": str(HOLD_OVER), "hold_remark_words": list(HOLD_WORDS), "hold_out_of_stock": False}))
        for s in SUPPLIERS:
            out.append(m("supplier.upserted", {
                "supplier_id": s.supplier_id, "name": s.name, "active": True,
                "ship_within_hours": s.ship_within_hours, "fulfilment_score": s.score}))
        for o in OFFERS:
            out.append(m("supplier.offer", {
                "supplier_id": o.supplier_id, "offer_id": o.offer_id, "title": o.title, "on_shelf": True,
                "private_to": [MERCHANT] if o.private else None,
                "skus": [{"supplier_sku_id": sku, "spec": spec, "stock": self.stock[(o.supplier_id, sku)]}
                         for sku, spec, _ in o.skus]}))
        since = self.start - timedelta(days=60)
        for o in OFFERS:
            for sku, _, price in o.skus:
                out.append(m("supplier.price", {"supplier_id": o.supplier_id, "supplier_sku_id": sku,
                                                 "price": price, "effective_from": iso(since)}))
        supplier_id, sku, price = PRICE_RISE
        out.append(m("supplier.price", {"supplier_id": supplier_id, "supplier_sku_id": sku, "price": price,
                                         "effective_from": iso(self.start + timedelta(hours=12))}))
        for code, comp in CODES.values():
            out.append(m("code.registered", {"merchant_id": MERCHANT, "code": code, "kind": "item",
                                              "components": [_component(comp)]}))
        for shop in SHOPS:
            for key in shop.products:
                if (shop.platform, shop.shop_id, key) not in (LATE_LINK, CODE_ONLY):
                    out.append(m("link.set", link_body(shop, key)))
        douyin, pdd = SHOPS[0], SHOPS[4]
        out.append(m("stock.rule", {"platform": douyin.platform, "shop_id": douyin.shop_id,
                                     "product_id": product_id(douyin.platform, "case15"),
                                     "sku_id": sku_id(douyin.platform, "case15", 0), "ratio": "0.8", "min_stock": 10}))
        out.append(m("stock.rule", {"platform": pdd.platform, "shop_id": pdd.shop_id,
                                     "product_id": product_id(pdd.platform, "blanket"),
                                     "sku_id": sku_id(pdd.platform, "blanket", 1), "ratio": "0.5", "min_stock": 20}))
        return out

    # stage 2: the day ----------------------------------------------------------------------

    def the_day(self) -> list[Message]:
        """Orders and what the shops report about them, in time order; one producer bug."""
        r = self.rng
        timed: list[tuple[datetime, int, str, dict[str, Any]]] = []

        def at(when: datetime, subject: str, body: dict[str, Any]) -> None:
            timed.append((when, len(timed), subject, body))

        for o in self.orders:
            at(o.placed_at, "order.placed", self.placed_body(o))
            ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
            t = o.placed_at
            if o.role == "cancel":
                when = t + timedelta(minutes=r.randint(5, 180))
                at(when, "order.cancelled", {**ref, "cancelled_at": iso(when)})
            elif o.role == "address":
                when = t + timedelta(minutes=r.randint(10, 120))
                buyer = dict(o.buyer, address=self._street())
                at(when, "order.address_changed", {**ref, "buyer": buyer, "changed_at": iso(when)})
            elif o.role == "review":
                at(t + timedelta(minutes=r.randint(2, 20)), "order.review",
                   {**ref, "under_review": True, "reason": "平台风控：收货信息异常"})
            elif o.role in ("refund_all", "refund_line"):
                opened = t + timedelta(minutes=r.randint(30, 300))
                aftersale_id = f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}"
                body = {**ref, "aftersale_id": aftersale_id, "kind": "refund", "opened_at": iso(opened)}
                if o.role == "refund_line":
                    body["line_id"] = o.lines[-1].line_id
                at(opened, "aftersale.opened", body)
                outcome = r.choices(("refunded", "withdrawn", None), weights=(4, 3, 3))[0]
                if outcome:
                    closed = opened + timedelta(minutes=r.randint(40, 360))
                    at(closed, "aftersale.closed", {**ref, "aftersale_id": aftersale_id, "outcome": outcome,
                                                    "closed_at": iso(closed)})
                    if outcome == "refunded" and o.role == "refund_all":  # the platform closes the order
                        at(closed + timedelta(minutes=1), "order.cancelled",
                           {**ref, "cancelled_at": iso(closed + timedelta(minutes=1))})
        # a producer bug: a supplier's price feed sends a price as a JSON number (the same price it
        # sent as a string at the opening). It goes to the dead letters; nothing else happens.
        offer = OFFERS[-1]
        sku, _, price = offer.skus[0]
        at(self.start + timedelta(hours=9), "supplier.price", {
            "supplier_id": offer.supplier_id, "supplier_sku_id": sku, "price": float(price),
            "effective_from": iso(self.start - timedelta(days=60))})
        timed.sort(key=lambda x: (x[0], x[1]))
        return [self.msg(subject, body) for _, _, subject, body in timed]

    def placed_body(self, o: PlannedOrder) -> dict[str, Any]:
        lines = []
        for ln in o.lines:
            spec = PRODUCTS[ln.product]
            sku_spec = spec.skus[ln.k][0]
            line: dict[str, Any] = {"line_id": ln.line_id, "product_id": product_id(o.shop.platform, ln.product),
                                    "title": spec.title, "qty": ln.qty, "unit_price": f"{ln.price:.2f}"}
            if spec.sku_level:
                line["sku_id"] = sku_id(o.shop.platform, ln.product, ln.k)
                line["spec"] = sku_spec
            if (o.shop.platform, o.shop.shop_id, ln.product) == CODE_ONLY:
                line["merchant_code"] = CODES[sku_spec][0]
            lines.append(line)
        body: dict[str, Any] = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id,
                                "placed_at": iso(o.placed_at), "buyer": o.buyer, "lines": lines}
        if o.channel:
            body["channel"] = o.channel
        if o.remark:
            body["remark"] = o.remark
        return body

    # stage 3: the suppliers ----------------------------------------------------------------

    def suppliers_answer(self, out: Iterable[tuple[str, dict[str, Any]]], work: SupplierWork) -> list[Message]:
        """Each supplier's answers to what REFLOW_OUT told it, in the order they happen."""
        allocations: dict[str, dict[str, Any]] = {}
        intercepts: dict[str, str] = {}
        for subject, body in out:
            if subject.endswith(".allocation"):
                allocations[body["allocation_id"]] = body
            elif subject.endswith(".intercept"):
                intercepts.setdefault(body["allocation_id"], body["reason"])
        allocations = dict(sorted(allocations.items()))
        timed: list[tuple[datetime, str, str, dict[str, Any]]] = []
        for aid, a in allocations.items():
            s = SUPPLIER[a["supplier_id"]]
            r = random.Random(f"reflow-demo/{self.seed}/{aid}")
            allocated_at, ship_by = parse_time(a["allocated_at"]), parse_time(a["ship_by"])
            ref = {"supplier_id": s.supplier_id, "allocation_id": aid}
            units = [(s.supplier_id, x["supplier_sku_id"], x["qty"]) for x in a["lines"]]
            if aid in intercepts:
                x = r.random()
                if x < s.ignores:  # shipped anyway: the upload is refused and recorded (I7)
                    when = allocated_at + timedelta(minutes=r.randint(60, 600))
                    timed.append((when, aid, "tracking.uploaded", {**ref, **self._tracking(s, r), "uploaded_at": iso(when)}))
                elif x < s.ignores + s.too_late and not intercepts[aid].startswith("review"):
                    when = allocated_at + timedelta(minutes=r.randint(120, 480))
                    tracking = self._tracking(s, r)
                    work.tracked_at[tracking["tracking_no"]] = when
                    work.shipped_units.update({(sup, sku): q for sup, sku, q in units})
                    timed.append((when, aid, "intercept.answered",
                                   {**ref, "outcome": "too_late", **tracking, "answered_at": iso(when)}))
                else:
                    when = allocated_at + timedelta(minutes=r.randint(20, 180))
                    timed.append((when, aid, "intercept.answered", {**ref, "outcome": "stopped", "answered_at": iso(when)}))
                continue
            x = r.random()
            if x < s.slow:
                work.untracked.append(aid)
                continue
            if x < s.slow + s.late:
                when = ship_by + timedelta(minutes=r.randint(45, 600))
            else:
                room = (ship_by - allocated_at).total_seconds() / 60 - 10
                when = allocated_at + timedelta(minutes=r.randint(30, max(31, int(min(room, 20 * 60)))))
            tracking = self._tracking(s, r)
            work.tracked_at[tracking["tracking_no"]] = when
            work.shipped_units.update({(sup, sku): q for sup, sku, q in units})
            timed.append((when, aid, "tracking.uploaded", {**ref, **tracking, "uploaded_at": iso(when)}))
        timed.sort(key=lambda x: (x[0], x[1]))
        return [self.msg(subject, body) for _, _, subject, body in timed]

    @staticmethod
    def _tracking(s: SupplierSpec, r: random.Random) -> dict[str, str]:
        carrier = r.choice(s.carriers)
        digits = "".join(r.choice("0123456789") for _ in range(12))
        number = {"ZTO": "7" + digits + "1", "YTO": "YT" + digits + "0", "STO": "77" + digits,
                  "YUNDA": "43" + digits[:11], "SF": "SF" + digits + "3", "JD": "JDVA" + digits[:11]}[carrier]
        return {"carrier": carrier, "tracking_no": number}

    # stage 4: this morning -----------------------------------------------------------------

    def morning(self, out: Iterable[tuple[str, dict[str, Any]]], work: SupplierWork, at: datetime) -> list[Message]:
        """Restock, the late link and its pull, releases, returns after delivery, a manual cancel.

        ``at`` dates the restock: the broker's time of the last message before the morning. The
        engine ignores a stock report older than what it knows, and the offer's stock counts from
        the broker's time of its publication; the demo's own clock (and to the second) could fall
        before that on a fast run, and the restock would be dropped (issue 19)."""
        r = random.Random(f"reflow-demo/{self.seed}/morning")
        m, msgs = self.msg, []
        supplier_id, sku = SCARCE
        initial = self.stock[SCARCE]
        arrived = max(2, initial // 2)
        msgs.append(m("supplier.stock", {
            "supplier_id": supplier_id, "offer_id": OFFER_OF_SKU[SCARCE], "supplier_sku_id": sku,
            "stock": max(0, initial - work.shipped_units[SCARCE]) + arrived, "at": iso_exact(at)}))
        shop = next(s for s in SHOPS if (s.platform, s.shop_id) == LATE_LINK[:2])
        msgs.append(m("link.set", link_body(shop, LATE_LINK[2])))
        msgs.append(m("prelink.pull", {"platform": shop.platform, "shop_id": shop.shop_id,
                                        "product_id": product_id(shop.platform, LATE_LINK[2]), "window_days": 30}))
        for role in ("review", "held"):
            waiting = [o for o in self.orders if o.role == role]
            for o in waiting[:-1]:  # the last one stays for the merchant to look at
                ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
                if role == "review":
                    msgs.append(m("order.review", {**ref, "under_review": False, "reason": "审核通过"}))
                else:
                    msgs.append(m("order.released", ref))
        # returns after delivery (I2): the shops saw the shipments and the consumers' requests
        orders = {(o.shop.platform, o.shop.shop_id, o.order_id): o for o in self.orders}
        shipped = []
        for subject, body in out:
            if subject.endswith(".shipment"):
                _, _, _, platform, shop_id, _ = subject.split(".")
                o = orders.get((platform, shop_id, body["order_id"]))
                times = [work.tracked_at.get(p["tracking_no"]) for p in body["packages"]]
                if o is not None and o.role == "plain" and all(times):
                    shipped.append((o, max(times)))
        last_moment = self.start + timedelta(days=DAYS_AGO - 1, hours=23)
        shipped.sort(key=lambda x: x[0].key)  # REFLOW_OUT's order within a batch is serve's business
        for o, tracked in r.sample(shipped, k=min(len(shipped), max(3, len(shipped) * 4 // 100))):
            opened = min(tracked + timedelta(minutes=r.randint(240, 1800)), last_moment)
            kind = r.choices(("return", "refund", "exchange"), weights=(5, 3, 2))[0]
            body = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id,
                    "aftersale_id": f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}", "kind": kind,
                    "opened_at": iso(opened)}
            if len(o.lines) > 1:
                body["line_id"] = o.lines[0].line_id
            msgs.append(m("aftersale.opened", body))
        # the merchant cancels one allocation by hand: the buyer asked to wait (I5)
        for aid in sorted(work.untracked)[:1]:
            msgs.append(m("allocation.cancel", {"allocation_id": aid, "reason": "商家手动取消：买家要求暂缓发货"}))
        return msgs


def _component(c: tuple[str, str, str, int]) -> dict[str, Any]:
    return {"supplier_id": c[0], "offer_id": c[1], "supplier_sku_id": c[2], "qty": c[3]}


def link_body(shop: ShopSpec, key: str) -> dict[str, Any]:
    spec = PRODUCTS[key]
    skus = []
    for k, (_, _, alternatives) in enumerate(spec.skus):
        alts = []
        for i, alternative in enumerate(alternatives):
            alt: dict[str, Any] = {"components": [_component(c) for c in alternative]}
            if spec.south_first and i == 0:
                alt["provinces"] = list(SOUTH)
            alts.append(alt)
        entry: dict[str, Any] = {"alternatives": alts}
        if spec.sku_level:
            entry["sku_id"] = sku_id(shop.platform, key, k)
        skus.append(entry)
    offers = {c[1] for _, _, alternatives in spec.skus for alt in alternatives for c in alt}
    return {"platform": shop.platform, "shop_id": shop.shop_id, "product_id": product_id(shop.platform, key),
            "mode": "single" if len(offers) == 1 else "multi", "skus": skus}


# -- running it ---------------------------------------------------------------------------------


class DemoError(ValueError):
    """The demo cannot run as asked (one line)."""


@dataclass
class Report:
    """What the demo printed, as data (the test compares it with the DuckDB views)."""

    day: date
    data_dir: Path
    duckdb_path: Path
    published: int = 0
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    stages: list[tuple[str, int, float]] = field(default_factory=list)
    orders_by_status: list[tuple[str, int, Decimal]] = field(default_factory=list)
    allocations_by_supplier: list[tuple] = field(default_factory=list)
    performance: list[tuple] = field(default_factory=list)
    statement: Any = None
    elapsed: float = 0.0


STATUSES = ("unrouted", "held", "partially_allocated", "allocated", "shipped", "cancelled")
ALLOCATION_HEADERS = ("alloc.", "active", "tracked", "shipped", "interc.", "cancel.", "units")
PERFORMANCE_HEADERS = ("alloc.", "tracked", "on time", "late", "interc.", "loss risks", "median h")
PERFORMANCE_COLUMNS = ("allocations", "tracked", "on_time", "late", "intercepted", "loss_risks",
                       "median_hours_to_tracking")
EXAMPLE_QUERIES = (
    ("Orders and sales per platform and status",
     "SELECT platform, status, count(*) AS orders, sum(amount) AS amount\n"
     "FROM orders GROUP BY ALL ORDER BY platform, orders DESC;"),
    ("Margin per product and supplier (sale vs settlement cost)",
     "SELECT platform, product_id, supplier_id, units, sale_amount, settlement_cost, margin\n"
     "FROM margins ORDER BY margin DESC LIMIT 10;"),
    ("Late parcels, the latest first (China time)",
     "SELECT supplier_id, allocation_id, order_id,\n"
     "       ship_by + INTERVAL 8 HOUR AS ship_by_cst, tracked_at + INTERVAL 8 HOUR AS tracked_cst\n"
     "FROM allocations WHERE late ORDER BY tracked_at - ship_by DESC LIMIT 10;"),
)


def run_demo(*, seed: int = DEFAULT_SEED, orders: int = DEFAULT_ORDERS, data_dir: Path | None = None,
             store: str | None = None, duckdb_path: Path | None = None, day: date | None = None,
             console: Any = None, batch: int = 256) -> Report:
    """Run the whole demo and print its report; returns the report as data."""
    from rich.console import Console

    from adapters.bootstrap import Settings, open_app
    from adapters.natsserver import NatsServer

    console = console or Console()
    started = time.monotonic()
    plan = DemoDay(seed, orders, day)
    if plan.start + timedelta(days=DAYS_AGO) > datetime.now(UTC):
        # The plan's times (orders, trackings, returns) end before that; the morning and the
        # messages without a time of their own take the broker's time, now. A later day would
        # mix the two, and the decisions would depend on the hour the demo runs.
        raise DemoError(f"day: at least {DAYS_AGO} days back in China time (its trackings and returns "
                        f"must lie in the past), got {plan.day}")
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="reflow-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(store=store, duckdb=duckdb_path, data_dir=data_dir)
    app = open_app(settings)
    try:
        held = app.recorder.max_notification_id() or 0
        if held:
            where = "given with --store" if store else f"in {data_dir}"
            raise DemoError(f"the event store {where} already holds {held} events; the demo needs an empty "
                            "one (give --data-dir a new directory, or --store an empty schema)")
        if settings.duckdb_path.exists():
            raise DemoError(f"{settings.duckdb_path} exists already; give --data-dir a new directory")
        console.print(f"[bold]reflow demo[/]: {orders:,} orders on {plan.day} (seed {seed}) of {MERCHANT_NAME}\n"
                      f"({MERCHANT}): {len(SHOPS)} shops, {len(SUPPLIERS)} suppliers", highlight=False)
        console.print(f"data: {data_dir}", highlight=False, soft_wrap=True)
        report = Report(day=plan.day, data_dir=data_dir, duckdb_path=settings.duckdb_path)
        nats_dir = data_dir / "nats"
        with NatsServer(store_dir=nats_dir, log_file=data_dir / "nats-server.log") as server:
            settings = Settings(store=store, duckdb=duckdb_path, nats_url=server.url, data_dir=data_dir)
            asyncio.run(_run_stages(plan, settings, app, report, console, batch))
        shutil.rmtree(nats_dir, ignore_errors=True)
        _finish(plan, app, settings, report, console)
    finally:
        app.close()
    report.elapsed = time.monotonic() - started
    render(report, console)
    return report


async def _run_stages(plan: DemoDay, settings: Any, app: Any, report: Report, console: Any, batch: int) -> None:
    from adapters.serve import serve

    stop = asyncio.Event()
    ready: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, batch=batch, stop=stop, handle_signals=False,
                                     on_ready=lambda s: ready.done() or ready.set_result(s)))
    done, _ = await asyncio.wait({task, ready}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        raise DemoError("reflow serve stopped before it was ready")
    if ready not in done:
        task.cancel()
        raise DemoError("reflow serve did not start within 60 s")
    try:
        async with _Producer(settings.nats_url, app, task) as producer, _Steps(console) as steps:

            async def stage(title: str, messages: list[Message]) -> Applied:
                return await producer.stage(steps, title, messages, report)

            await plan.play(stage)
            report.dead_letters = await producer.dead_letters()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=120)


class _Producer:
    """Publishes like a producer (JSON, Nats-Msg-Id) and watches serve's progress through NATS."""

    def __init__(self, url: str, app: Any, serving: asyncio.Task) -> None:
        self.url, self.app, self.serving = url, app, serving
        self.out_seq = 0  # last REFLOW_OUT message read
        self.scanned = 0  # event-store position scanned for outbound events

    async def __aenter__(self) -> _Producer:
        import nats

        from adapters.outbound import Publisher

        self.nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        self.js = self.nc.jetstream()
        self.publisher = Publisher(self.app, self.js)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()

    async def stage(self, steps: _Steps, title: str, messages: list[Message], report: Report) -> Applied:
        """Publish a stage in order; return once serve applied it and published what it caused."""
        from adapters.serve import CONSUMER, IN_STREAM

        started = time.monotonic()
        base = (await self.js.stream_info(IN_STREAM)).state.last_seq
        step = steps.start(title, len(messages))
        for chunk in range(0, len(messages), 1000):
            futures = [await self.js.publish_async(f"reflow.in.{x.subject}", encode(x.body),
                                                   headers={"Nats-Msg-Id": x.msg_id})
                       for x in messages[chunk:chunk + 1000]]
            await asyncio.gather(*futures)
        report.published += len(messages)
        target = base + len(messages)
        deadline = time.monotonic() + 120 + len(messages) / 50
        while True:
            self._check_serving()
            info = await self.js.consumer_info(IN_STREAM, CONSUMER)
            steps.update(step, max(0, info.ack_floor.stream_seq - base))
            if info.ack_floor.stream_seq >= target and not info.num_ack_pending:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"reflow serve did not apply the stage '{title}' in time")
            await asyncio.sleep(0.1)
        applied = Applied(out=await self.outbound(), last_at=await self.last_stored_at())
        elapsed = time.monotonic() - started
        steps.finish(step, f"{title}: {len(messages):,} messages, {elapsed:.1f} s")
        report.stages.append((title, len(messages), elapsed))
        return applied

    def _check_serving(self) -> None:
        if self.serving.done():
            self.serving.result()
            raise DemoError("reflow serve stopped unexpectedly")

    async def outbound(self) -> list[tuple[str, dict[str, Any]]]:
        """Wait until serve published everything the store holds so far; the new REFLOW_OUT messages."""
        target = await asyncio.to_thread(self._last_outbound_event)
        deadline = time.monotonic() + 120
        while await self.publisher.resume_position() < target:
            self._check_serving()
            if time.monotonic() > deadline:
                raise DemoError("reflow serve did not publish its outbound messages in time")
            await asyncio.sleep(0.1)
        msgs = await _read(self.js, "REFLOW_OUT", self.out_seq + 1)
        if msgs:
            self.out_seq = msgs[-1].metadata.sequence.stream
        return [(m.subject, json.loads(m.data)) for m in msgs]

    async def last_stored_at(self) -> datetime:
        """The time the broker stored the last message of REFLOW_IN, read as serve reads it (the
        time of the messages that carry none of their own)."""
        from adapters.serve import IN_STREAM, received_at

        last = (await self.js.stream_info(IN_STREAM)).state.last_seq
        return received_at((await _read(self.js, IN_STREAM, last))[-1])

    def _last_outbound_event(self) -> int:
        from adapters.outbound import TOPICS

        last = self.scanned
        while True:
            notes = self.app.recorder.select_notifications(last, 5000, topics=TOPICS, inclusive_of_start=False)
            if not notes:
                break
            last = notes[-1].id
        self.scanned = last
        return last

    async def dead_letters(self) -> list[tuple[str, str]]:
        return [((m.headers or {}).get("Reflow-Subject", m.subject), (m.headers or {}).get("Reflow-Error", ""))
                for m in await _read(self.js, "REFLOW_DLQ", 1)]


async def _read(js: Any, stream: str, start_seq: int) -> list[Any]:
    """Every message of a stream from ``start_seq`` to its end, in order."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    last = (await js.stream_info(stream)).state.last_seq
    if last < start_seq:
        return []
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                            opt_start_seq=start_seq, inactive_threshold=10.0)
    subject = {"REFLOW_IN": "reflow.in.>", "REFLOW_OUT": "reflow.out.>", "REFLOW_DLQ": "reflow.dlq.>"}[stream]
    sub = await js.pull_subscribe(subject, durable=None, stream=stream, config=config)
    out: list[Any] = []
    try:
        while not out or out[-1].metadata.sequence.stream < last:
            try:
                out.extend(await sub.fetch(1000, timeout=5))
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                raise DemoError(f"could not read {stream} to its end") from None
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


class _Steps:
    """Progress of the stages: rich bars on a terminal, one line per stage otherwise."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True, disable=not self.live)

    async def __aenter__(self) -> _Steps:
        self.progress.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.progress.stop()

    def start(self, title: str, total: int) -> Any:
        return self.progress.add_task(title, total=total)

    def update(self, task: Any, done: int) -> None:
        self.progress.update(task, completed=done)

    def finish(self, task: Any, summary: str) -> None:
        self.progress.remove_task(task)
        self.console.print(f"[green]✓[/] {summary}", highlight=False)


def _finish(plan: DemoDay, app: Any, settings: Any, report: Report, console: Any) -> None:
    """Projections up to date, one statement issued, the tables read from the views."""
    import duckdb

    from projections.runner import ProjectionRunner
    from projections.statements import issue_statement

    started = time.monotonic()
    with ProjectionRunner(app, settings.duckdb_path) as runner:
        runner.catch_up()
        runner.publish()  # the report reads the analysts' copy: make sure it holds everything
        events = runner.connection.execute("SELECT events FROM facts.position").fetchone()[0]
    console.print(f"[green]✓[/] projections: {events:,} events in {settings.duckdb_path.name}, "
                  f"{time.monotonic() - started:.1f} s")
    last_day = plan.day + timedelta(days=DAYS_AGO - 1)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        supplier = con.execute(
            "SELECT supplier_id FROM allocations WHERE tracked_at IS NOT NULL "
            "GROUP BY supplier_id ORDER BY count(*) DESC, supplier_id LIMIT 1").fetchone()[0]
    report.statement = issue_statement(app, settings.duckdb_path, supplier, plan.day, last_day)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        tables = report_tables(con)
    report.orders_by_status = tables["orders_by_status"]
    report.allocations_by_supplier = tables["allocations_by_supplier"]
    report.performance = tables["performance"]


def report_tables(con: Any) -> dict[str, list[tuple]]:
    """The report's numbers, straight from the contract views."""
    by_status = dict((s, (n, a)) for s, n, a in con.execute(
        "SELECT status, count(*), sum(amount) FROM orders GROUP BY status").fetchall())
    orders_by_status = [(s, *by_status.get(s, (0, Decimal(0)))) for s in STATUSES]
    allocations = con.execute("""
        SELECT supplier_id, count(*),
          count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'tracked'),
          count(*) FILTER (WHERE status = 'shipped'), count(*) FILTER (WHERE status = 'intercepted'),
          count(*) FILTER (WHERE status = 'cancelled'), sum(qty)
        FROM allocations GROUP BY supplier_id ORDER BY count(*) DESC, supplier_id""").fetchall()
    performance = con.execute(f"""
        SELECT supplier_id, {', '.join(PERFORMANCE_COLUMNS)} FROM supplier_performance
        ORDER BY late DESC, supplier_id""").fetchall()
    return {"orders_by_status": orders_by_status, "allocations_by_supplier": allocations,
            "performance": performance}


# -- the report ---------------------------------------------------------------------------------


def _table(title: str, first: str, numbers: Iterable[str]) -> Any:
    """A table that fits 80 columns: a rule under the header, no vertical lines."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    t.add_column(first, no_wrap=True)
    for name in numbers:
        t.add_column(name, justify="right")
    return t


def render(report: Report, console: Any) -> None:
    for _, error in report.dead_letters:
        console.print(f"[yellow]dead letter[/] (REFLOW_DLQ): {error}", highlight=False, soft_wrap=True)
    console.print()

    t = _table("Orders by status", "status", ("orders", "amount (CNY)"))
    for status, n, amount in report.orders_by_status:
        t.add_row(status, str(n), f"{amount:.2f}")
    t.add_row("total", str(sum(x[1] for x in report.orders_by_status)),
              f"{sum(x[2] for x in report.orders_by_status):.2f}", style="bold")
    console.print(t, "")

    t = _table("Allocations per supplier, by status", "supplier", ALLOCATION_HEADERS)
    for row in report.allocations_by_supplier:
        t.add_row(row[0], *(str(x) for x in row[1:]))
    console.print(t, "")

    t = _table("Supplier performance (T3: late; I7: loss risks)", "supplier", PERFORMANCE_HEADERS)
    for row in report.performance:
        t.add_row(row[0], *(str(x) if x is not None else "-" for x in row[1:]))
    console.print(t, "")

    st = report.statement
    first = st.period_from.astimezone(LOCAL).date()
    last = (st.period_to.astimezone(LOCAL) - timedelta(seconds=1)).date()
    t = _table(f"Statement {st.statement_id}", "supplier", ("period (China time)", "lines", "qty", "total (CNY)",
                                                             "apart"))
    t.add_row(st.supplier_id, f"{first} .. {last}", str(len(st.lines)), str(st.qty), f"{st.total:.2f}",
              str(len(st.apart)))
    console.print(t, "")
    console.print(f"content hash {st.content_hash}\n", highlight=False)
    lines = _table(f"its first {min(5, len(st.lines))} of {len(st.lines)} lines", "allocation",
                   ("order", "sku", "qty", "unit price", "amount"))
    for ln in st.lines[:5]:
        lines.add_row(ln.allocation_id, ln.order_id, ln.supplier_sku_id, str(ln.qty), f"{ln.unit_price}",
                      f"{ln.amount}")
    console.print(lines, "")

    console.print(f"[bold]Analysts' database[/]: {report.duckdb_path}", highlight=False, soft_wrap=True)
    console.print(f"open it read-only:  duckdb -readonly {report.duckdb_path}", highlight=False, soft_wrap=True)
    for title, sql in EXAMPLE_QUERIES:
        console.print(f"\n-- {title}", highlight=False, markup=False, soft_wrap=True)
        console.print(sql, highlight=False, markup=False, soft_wrap=True)
    console.print(f"\n{report.published:,} messages published, {len(report.dead_letters)} dead-lettered, "
                  f"done in {report.elapsed:.1f} s", highlight=False)
