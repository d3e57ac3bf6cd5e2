"""The merchant's world as data: its suppliers and their offers, its shops and products, the
links between them (reflow quantities, bundles, a warehouse serving only the south, a
micro-supply offer), merchant codes, the listing ids each platform shows, and the few products
and facts the day's issue-15 stories need (a factory with a daily capacity, a bulk order no single
source covers, a supplier that rejects, an offer that drops a SKU).

Nothing here is random: the seed only chooses among these (``generator``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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
    slow: float = 0.02  # share tracked very late: hours after the reminder (T4), before any re-route


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
    SupplierSpec("chenghai-toy-13", "汕头市澄海区趣捏玩具厂", 48, 90, ("ZTO",), 0.03, 0.0, 0.0),
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
    OfferSpec("ningbo-kitchen-08", "6611229001", "定制LOGO保温杯 500ml 企业礼品", (("9902001", "白色", "16.50"),)),
    OfferSpec("yiwu-daily-11", "6509909001", "企业定制保温杯 500ml 可印字", (("1209001", "白色", "17.80"),)),
    OfferSpec("quanzhou-bag-09", "6712345098", "通勤双肩包 防泼水 15.6寸",
              (("4401001", "黑色", "45.00"), ("4401002", "灰色", "45.00"))),
    OfferSpec("putian-sport-10", "6813579246", "纯棉中筒运动袜 5双装",
              (("5501001", "白色", "9.90"), ("5501002", "黑色", "9.90"))),
    OfferSpec("chenghai-toy-13", "6930112233", "网红解压捏捏乐 三只装 工厂直发",
              (("3301001", "粉色", "6.50"), ("3301002", "蓝色", "6.50"), ("3301003", "黄色", "6.50"))),
    OfferSpec("shantou-snack-12", "6924681357", "网红辣条零食大礼包 1.2kg", (("6601001", "大礼包", "15.80"),)),
)
OFFER_OF_SKU = {(o.supplier_id, sku): o.offer_id for o in OFFERS for sku, _, _ in o.skus}
PRICE_RISE = ("guangzhou-beauty-03", "7700101", "23.50")  # effective at noon of the day (RC1)
SCARCE = ("ningbo-kitchen-08", "9901001")  # sells out in the afternoon; restocked in part this morning
SOUTH = ("广东省", "广西壮族自治区", "海南省", "福建省")  # foshan-home-06's warehouse serves these (RT9)

# -- issue 15: the day's stories ----------------------------------------------------------------
FACTORY = "chenghai-toy-13"  # declares a daily capacity its evening live-stream sale reaches (RT13)
FLASH = ("douyin", "dy-880123", "squishy")  # sold only in that sale: the day's last douyin orders
FLASH_ORDERS = 6
BULK = ("taobao", "tb-36871245", "mug")  # a company's bulk order: no single source has the stock (RT12)
BULK_QTY = 36
BULK_STOCK = (("ningbo-kitchen-08", "9902001", 20), ("yiwu-daily-11", "1209001", 20))
REJECTER = "foshan-home-06"  # rejects its first allocation of the day: out of stock (RT11)
# yiwu-case-01 republishes its Pro case offer this morning: 远峰蓝 4988102 replaced by a new batch
# 4988103; the douyin link breaks, and the merchant points it at the new SKU (L11)
DROP = ("yiwu-case-01", "6541239912", "4988102", ("4988103", "远峰蓝 新批次", "8.50"))
DROP_LINK = ("douyin", "dy-880123", "case15pro")

# -- issue 16: after the parcel -----------------------------------------------------------------
REROUTE_OVERDUE_HOURS = 12  # the merchant's setting: still untracked 12 h after ship-by, re-routed (T4)
FORGETFUL = "yiwu-case-01"  # never ships one parcel: reminded at its ship-by, re-routed 12 h later (T4)
OVERDUE = ("douyin", "dy-880123", "case15")  # that parcel's order: one black case, which shenzhen-acc-07 also has
RETURNED = ("tmall", "tm-61002233", "serum")  # an order whose parcel goes back to its supplier, credited (RC6)
LATE_MINUTES = (45, 600)  # a late tracking comes this long after ship-by (T3); a slow one, longer, but
SLOW_MINUTES = (600, REROUTE_OVERDUE_HOURS * 60 - 30)  # before the merchant's re-route


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
    # issue 15: in no shop's list, so no random order asks for them; linked for their stories only
    "squishy": ProductSpec("网红解压捏捏乐 三只装 直播专享", tuple(
        (color, "19.90", ((_c(FACTORY, sku),),)) for sku, color in (("3301001", "粉色"), ("3301002", "蓝色"),
                                                                  ("3301003", "黄色"))), 0),
    "mug": ProductSpec("定制LOGO保温杯 500ml", (
        ("白色", "39.90", ((_c("ningbo-kitchen-08", "9902001"),), (_c(YD, "1209001"),))),), 0),
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


# -- listings and links, as the shops publish them ----------------------------------------------


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


def component(c: tuple[str, str, str, int]) -> dict[str, Any]:
    return {"supplier_id": c[0], "offer_id": c[1], "supplier_sku_id": c[2], "qty": c[3]}


def link_body(shop: ShopSpec, key: str, swap: dict[str, str] | None = None) -> dict[str, Any]:
    """The shop's link of a product; ``swap`` points supplier SKUs at others (a mended link, L11)."""
    spec = PRODUCTS[key]
    skus = []
    for k, (_, _, alternatives) in enumerate(spec.skus):
        alts = []
        for i, alternative in enumerate(alternatives):
            comps = [c[:2] + ((swap or {}).get(c[2], c[2]), c[3]) for c in alternative]
            alt: dict[str, Any] = {"components": [component(c) for c in comps]}
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
