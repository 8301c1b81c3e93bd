"""Order management systems SFCC merchants refund in (issue #25): one module per system."""

from platforms.oms.base import OmsAdapter
from platforms.oms.salesforce import SalesforceOmAdapter

OMS_ADAPTERS: dict[str, OmsAdapter] = {adapter.system: adapter for adapter in (SalesforceOmAdapter(),)}


def get_oms_adapter(system: str) -> OmsAdapter | None:
    return OMS_ADAPTERS.get(system)
