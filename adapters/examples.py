"""One realistic valid body per inbound subject (README, demo and tests reuse them).

The buyer is invented. Ids hang together: shop ``dy-880123`` of platform ``douyin`` sells
product ``3581204467`` (a phone case), linked to supplier ``yiwu-case-01``'s offer ``6541236987``.
"""

from __future__ import annotations

from typing import Any

BUYER: dict[str, Any] = {
    "name": "张伟",
    "phone": "13812345678",
    "province": "浙江省",
    "city": "杭州市",
    "district": "西湖区",
    "address": "文三路 100 号 2 幢 301 室",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "reflow.in.order.placed": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "placed_at": "2024-05-01T10:15:00+08:00",
        "buyer": BUYER,
        "lines": [
            {
                "line_id": "6921345678901234567-1",
                "product_id": "3581204467",
                "sku_id": "1780001",
                "merchant_code": "CASE-IP15-BLK",
                "title": "磨砂防摔手机壳 iPhone 15",
                "spec": "黑色",
                "qty": 2,
                "unit_price": "19.90",
            },
            {
                "line_id": "6921345678901234567-2",
                "product_id": "3581209911",
                "title": "钢化膜两片装",
                "qty": 1,
                "unit_price": "9.90",
            },
        ],
        "channel": "live",
        "remark": "请尽快发货",
    },
    "reflow.in.order.address_changed": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "buyer": {**BUYER, "district": "拱墅区", "address": "莫干山路 50 号"},
        "changed_at": "2024-05-01T10:40:00+08:00",
    },
    "reflow.in.order.review": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "under_review": True,
        "reason": "risk control",
    },
    "reflow.in.order.cancelled": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "cancelled_at": "2024-05-01T11:00:00+08:00",
    },
    "reflow.in.order.released": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
    },
    "reflow.in.order.shipped": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "shipped_at": "2024-05-01T16:00:00+08:00",
        "carrier": "SF",
        "tracking_no": "SF1234567890123",
    },
    "reflow.in.aftersale.opened": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "aftersale_id": "AS-20240501-0001",
        "kind": "refund",
        "line_id": "6921345678901234567-1",
        "opened_at": "2024-05-01T12:00:00+08:00",
    },
    "reflow.in.aftersale.closed": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "aftersale_id": "AS-20240501-0001",
        "outcome": "withdrawn",
        "closed_at": "2024-05-02T09:00:00+08:00",
    },
    "reflow.in.link.set": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "product_id": "3581204467",
        "mode": "multi",
        "skus": [
            {
                "sku_id": "1780001",
                "merchant_code": "CASE-IP15-BLK",
                "alternatives": [
                    {
                        "priority": 1,
                        "components": [
                            {
                                "supplier_id": "yiwu-case-01",
                                "offer_id": "6541236987",
                                "supplier_sku_id": "4987001",
                                "qty": 1,
                            }
                        ],
                    },
                    {
                        "components": [
                            {
                                "supplier_id": "shenzhen-acc-07",
                                "offer_id": "7012345678",
                                "supplier_sku_id": "5550101",
                                "qty": 1,
                            },
                            {
                                "supplier_id": "shenzhen-acc-07",
                                "offer_id": "7012345679",
                                "supplier_sku_id": "5550202",
                                "qty": 2,
                            },
                        ],
                        "provinces": ["广东省", "广西壮族自治区"],
                    },
                ],
            }
        ],
    },
    "reflow.in.link.removed": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "product_id": "3581204467",
    },
    "reflow.in.code.registered": {
        "merchant_id": "m-hangzhou-01",
        "code": "CASE-IP15-BLK",
        "kind": "item",
        "components": [
            {
                "supplier_id": "yiwu-case-01",
                "offer_id": "6541236987",
                "supplier_sku_id": "4987001",
                "qty": 1,
            }
        ],
    },
    "reflow.in.supplier.upserted": {
        "supplier_id": "yiwu-case-01",
        "name": "义乌市美壳电子商务有限公司",
        "active": True,
        "ship_within_hours": 48,
        "fulfilment_score": 96.5,
        "level": 3,
        "service_stars": 4.5,
        "logistics_score": 4,
        "experience_score": 3.5,
    },
    "reflow.in.supplier.offer": {
        "supplier_id": "yiwu-case-01",
        "offer_id": "6541236987",
        "title": "iPhone15 磨砂手机壳 一件代发",
        "on_shelf": True,
        "private_to": None,
        "expires_at": "2024-05-31T00:00:00+08:00",
        "skus": [
            {"supplier_sku_id": "4987001", "spec": "黑色", "stock": 1200},
            {
                "supplier_sku_id": "4987002",
                "spec": "白色",
                "stock": 300,
                "pool_enrolled": True,
                "channel_price": "6.50",
                "lowest_price_30d": "6.80",
                "market_price": "8.00",
            },
        ],
        "dropship_free_shipping": True,
        "seven_day_returns": True,
        "growth_score": 72,
    },
    "reflow.in.offer.renewed": {
        "supplier_id": "yiwu-case-01",
        "offer_id": "6541236987",
        "renewed_at": "2024-05-30T09:00:00+08:00",
    },
    "reflow.in.supplier.stock": {
        "supplier_id": "yiwu-case-01",
        "offer_id": "6541236987",
        "supplier_sku_id": "4987001",
        "stock": 1180,
        "at": "2024-05-01T10:20:00+08:00",
    },
    "reflow.in.supplier.price": {
        "supplier_id": "yiwu-case-01",
        "supplier_sku_id": "4987001",
        "price": "6.80",
        "effective_from": "2024-05-01T00:00:00+08:00",
        "tier": "gold",
    },
    "reflow.in.tracking.uploaded": {
        "supplier_id": "yiwu-case-01",
        "allocation_id": "al-6921345678901234567-yiwu-case-01-1",
        "carrier": "ZTO",
        "tracking_no": "73512345678901",
        "uploaded_at": "2024-05-01T17:30:00+08:00",
    },
    "reflow.in.intercept.answered": {
        "supplier_id": "yiwu-case-01",
        "allocation_id": "al-6921345678901234567-yiwu-case-01-1",
        "outcome": "too_late",
        "carrier": "ZTO",
        "tracking_no": "73512345678901",
        "answered_at": "2024-05-01T18:05:00+08:00",
    },
    "reflow.in.allocation.rejected": {
        "supplier_id": "yiwu-case-01",
        "allocation_id": "al-6921345678901234567-yiwu-case-01-1",
        "reason": "out_of_stock",
        "note": "the red one sold out this morning",
        "rejected_at": "2024-05-01T10:20:00+08:00",
    },
    "reflow.in.clock.tick": {"at": "2024-05-02T00:00:05+08:00"},
    "reflow.in.return.requested": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "aftersale_id": "AS-20240503-0007",
        "requested_at": "2024-05-04T09:00:00+08:00",
    },
    "reflow.in.return.answered": {
        "supplier_id": "yiwu-case-01",
        "return_id": "R0B1C2D3E4F5A6B7C",
        "outcome": "accepted",
        "answered_at": "2024-05-06T15:00:00+08:00",
    },
    "reflow.in.allocation.cancel": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "order_id": "6921345678901234567",
        "reason": "merchant cancelled by hand",
    },
    "reflow.in.stock.rule": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "product_id": "3581204467",
        "sku_id": "1780001",
        "ratio": "0.8",
        "min_stock": 10,
    },
    "reflow.in.prelink.pull": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "product_id": "3581204467",
        "window_days": 30,
    },
    "reflow.in.shop.registered": {
        "platform": "douyin",
        "shop_id": "dy-880123",
        "merchant_id": "m-hangzhou-01",
    },
    "reflow.in.merchant.tier": {
        "supplier_id": "yiwu-case-01",
        "merchant_id": "m-hangzhou-01",
        "tier": "gold",
    },
    "reflow.in.merchant.settings": {
        "merchant_id": "m-hangzhou-01",
        "source_pool": False,
        "split_tolerance": "0.05",
        "hold_amount_over": "2000.00",
        "hold_remark_words": ["加急", "退款"],
        "hold_out_of_stock": True,
        "split_lines": False,
    },
}
