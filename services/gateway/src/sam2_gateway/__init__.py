"""The SAM2 service's public gateway."""

from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.main import create_app
from sam2_gateway.store import KeyRecord, KeyStore

__all__ = ["GatewaySettings", "KeyRecord", "KeyStore", "create_app"]
