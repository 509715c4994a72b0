"""The SAM2 service's public gateway."""

from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.core.store import KeyRecord, KeyStore
from sam2_gateway.main import create_app

__all__ = ["GatewaySettings", "KeyRecord", "KeyStore", "create_app"]
