"""`npm pack` (which builds the package) installs into a project made by `npm init -y`, loads
with both `require` and `import`, type-checks the examples (core and React) under strict
settings, and the compiled Node example runs against the real local gateway."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from support import GatewayServer, encode, scene

SDK_JS = Path(__file__).parents[2] / "sdk-js"
TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "NodeNext",
        "moduleResolution": "NodeNext",
        "lib": ["ES2022", "DOM"],
        "jsx": "react-jsx",
        "strict": True,
        "noUncheckedIndexedAccess": True,
        "exactOptionalPropertyTypes": True,
        "outDir": "out",
        "skipLibCheck": False,
    },
    "include": ["*.ts", "*.tsx"],
}


def _run(args: list[str], cwd: Path, **kwargs: object) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return str(done.stdout)


def test_packed_sdk_installs_type_checks_and_runs(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    # `npm pack` builds the package itself (prepack): ESM and CommonJS, with their types.
    tarball = (
        _run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path)], SDK_JS)
        .strip()
        .splitlines()[-1]
    )
    listed = _run(["tar", "-tzf", str(tmp_path / tarball)], tmp_path)
    for shipped in (
        "dist/index.js",
        "dist/cjs/index.js",
        "dist/cjs/package.json",
        "dist/react/index.d.ts",
        "dist/cjs/react/index.d.ts",
        "CHANGELOG.md",
    ):
        assert f"package/{shipped}" in listed, shipped
    # A project as `npm init -y` makes it: CommonJS by default.
    project = tmp_path / "app"
    project.mkdir()
    _run(["npm", "init", "-y"], project)
    versions = json.loads((SDK_JS / "package.json").read_text())["devDependencies"]
    _run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            str(tmp_path / tarball),
            f"typescript@{versions['typescript']}",
            f"react@{versions['react']}",
            f"@types/react@{versions['@types/react']}",
            "@types/node@20",
        ],
        project,
    )
    # Both module systems load both entry points.
    probe = "typeof sdk.Sam2Client, typeof sdk.segmentImage, typeof react.useSegmenter"
    (project / "probe.cjs").write_text(
        'const sdk = require("@sam2/sdk"); const react = require("@sam2/sdk/react");\n'
        f"console.log({probe});\n"
    )
    (project / "probe.mjs").write_text(
        'import * as sdk from "@sam2/sdk"; import * as react from "@sam2/sdk/react";\n'
        f"console.log({probe});\n"
    )
    for probe_file in ("probe.cjs", "probe.mjs"):
        assert _run(["node", probe_file], project).split() == ["function"] * 3, probe_file
    # The examples type-check under strict settings, compile to CommonJS here, and run.
    (project / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    for example in ("client_example.ts", "react-example.tsx"):
        (project / example).write_text((SDK_JS / "examples" / example).read_text())
    _run(["npx", "tsc", "-p", "tsconfig.json"], project)
    assert "require(" in (project / "out" / "client_example.js").read_text()  # CommonJS
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(240, 320, seed=4)))
    env = os.environ | {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    output = _run(["node", "out/client_example.js", str(photo)], project, env=env)
    assert "refining click reused the embedding: true" in output
    assert "segmentImage (original helper): mask 240 rows" in output
