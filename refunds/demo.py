"""The demo world's fixed names and credentials (local demo only: printed by `make run`)."""

OPERATOR_USERNAME = "admin"
OPERATOR_PASSWORD = "violet-admin-demo"  # demo login, printed on purpose
MERCHANT_PASSWORD = "merchant-demo-pass"
API_PASSWORD = "api-demo-pass"

APPS = [
    {
        "name": "Aurora Shopping App",
        "secret": "aurora-demo-secret",
        "commission_rate": "10.00",
        "account": "acct_demo_aurora",
        "api_user": "aurora-api",
        "redirect_hosts": ["aurora.example.com"],
    },
    {
        "name": "Beacon Marketplace",
        "secret": "beacon-demo-secret",
        "commission_rate": "15.00",
        "account": "acct_demo_beacon",
        "api_user": "beacon-api",
        "redirect_hosts": ["beacon.example.com"],
    },
]

MERCHANTS = [
    {
        "key": "shopify",
        "name": "Northwind Outfitters",
        "platform": "SHOPIFY",
        "store_url": "https://northwind-outfitters.myshopify.com",
        "sfcc_refund_mode": "",
        "credentials": {"shop_domain": "northwind-outfitters.myshopify.com", "access_token": "shpat_demo"},
    },
    {
        "key": "ecwid",
        "name": "Lumen Ceramics",
        "platform": "ECWID",
        "store_url": "https://lumen-ceramics.company.site",
        "sfcc_refund_mode": "",
        "credentials": {"store_id": "1003", "access_token": "secret_demo"},
    },
    {
        "key": "wix",
        "name": "Willow Home",
        "platform": "WIX",
        "store_url": "https://willowhome.wixsite.com/shop",
        "sfcc_refund_mode": "",
        "credentials": {
            "api_key": "IST.demo",
            "account_id": "0b5e2f0e-5c47-4a8a-9d7c-1f4a2c3b4d5e",
            "site_id": "83799f16-12a9-4803-963e-ed6fed6c7e4d",
        },
    },
    {
        "key": "bigcommerce",
        "name": "Cobalt Cycles",
        "platform": "BIGCOMMERCE",
        "store_url": "https://cobalt-cycles.mybigcommerce.com",
        "sfcc_refund_mode": "",
        "credentials": {"store_hash": "x7kq2m9d4f", "access_token": "bc_demo_token"},
    },
    {
        "key": "woocommerce",
        "name": "Fern & Fig Botanicals",
        "platform": "WOOCOMMERCE",
        "store_url": "https://fernandfig.example.com",
        "sfcc_refund_mode": "",
        "credentials": {
            "store_url": "https://fernandfig.example.com",
            "consumer_key": "ck_demo",
            "consumer_secret": "cs_demo",
        },
    },
    {
        "key": "sfcc1",
        "name": "Summit Gear",
        "platform": "SFCC",
        "store_url": "https://summit-gear.example.com",
        "sfcc_refund_mode": "CANCEL_AS_REFUND",
        "credentials": {
            "short_code": "kv7kzm78",
            "organization_id": "f_ecom_zysr_001",
            "site_id": "SummitGear",
            "client_id": "demo-client",
            "client_secret": "demo-client-secret",
        },
    },
    {
        "key": "sfcc2",
        "name": "Harbor Apparel",
        "platform": "SFCC",
        "store_url": "https://harbor-apparel.example.com",
        "sfcc_refund_mode": "MANUAL_NOTICE",
        "credentials": {
            "short_code": "kv7kzm78",
            "organization_id": "f_ecom_zysr_002",
            "site_id": "HarborApparel",
            "client_id": "demo-client-2",
            "client_secret": "demo-client-secret-2",
        },
    },
    {
        # SFCC with Salesforce Order Management (issue #25): refunds are its credit memos, found by beat.
        # The demo org is never called at `make run` (no beat runs there); its sync state is seeded.
        "key": "sfcc_oms",
        "name": "Cedar Ridge Outdoor",
        "platform": "SFCC",
        "store_url": "https://cedar-ridge.example.com",
        "sfcc_refund_mode": "ORDER_MANAGEMENT",
        "credentials": {},
        "oms": {
            "system": "SALESFORCE_OM",
            "base_url": "https://cedar-ridge-demo.my.salesforce.com",
            "credentials": {"client_id": "3MVG9demo.consumer.key", "client_secret": "demo-consumer-secret"},
        },
    },
]


def merchant_username(key: str) -> str:
    return f"{key}-merchant"
