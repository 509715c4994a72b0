"""`npm pack` output installs into an empty project, type-checks the examples (core and React)
under strict settings, and the compiled Node example runs against the real local gateway."""

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
    assert (SDK_JS / "dist" / "index.js").exists(), (
        "build it first: (cd sdk-js && npm ci && npm run build)"
    )
    tarball = (
        _run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path)], SDK_JS)
        .strip()
        .splitlines()[-1]
    )
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps({"name": "app", "private": True, "type": "module"})
    )
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
    (project / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    for example in ("client_example.ts", "react-example.tsx"):
        (project / example).write_text((SDK_JS / "examples" / example).read_text())
    _run(["npx", "tsc", "-p", "tsconfig.json"], project)
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(scene(240, 320, seed=4)))
    env = os.environ | {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    output = _run(["node", "out/client_example.js", str(photo)], project, env=env)
    assert "second click reused the embedding: true" in output
    assert "segmentImage (original helper): mask 240 rows" in output
