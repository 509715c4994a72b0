"""Vendor the API contract (`sam2_contract`, this repository's shared/ package) into the SDK's
wheel and sdist, so that `pip install sam2-sdk` needs nothing that is not on PyPI.

From a checkout the contract comes from ../shared/src/sam2_contract; an sdist carries its copy
in src/sam2_contract, which is where a wheel built from the sdist finds it. An editable install
(the development .venv) vendors nothing: there the contract is installed from shared/ itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class VendorContract(BuildHookInterface):
    PLUGIN_NAME = "vendor-contract"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        source = next(
            (
                candidate
                for candidate in (
                    root.parent / "shared" / "src" / "sam2_contract",
                    root / "src" / "sam2_contract",
                )
                if (candidate / "__init__.py").exists()
            ),
            None,
        )
        if source is None:
            raise RuntimeError("sam2_contract not found: build from a checkout or an sdist")
        target = "sam2_contract" if self.target_name == "wheel" else "src/sam2_contract"
        build_data["force_include"][str(source)] = target
