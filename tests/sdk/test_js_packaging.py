"""`npm pack` (which builds the package) installs into a project made by `npm init -y`, loads
with both `require` and `import`, type-checks the examples (core and React) under strict
settings, and the compiled Node example runs against the real local gateway. The README's Node
snippet, its run line for the shipped example and its browser snippets work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from support import GatewayServer, encode, scene

SDK_JS = Path(__file__).parents[2] / "sdk-js"
README = (SDK_JS / "README.md").read_text()
VERSIONS = json.loads((SDK_JS / "package.json").read_text())["devDependencies"]
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


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`npm pack` builds the package itself (prepack): ESM and CommonJS, with their types."""
    where = tmp_path_factory.mktemp("pack")
    name = _run(["npm", "pack", "--silent", "--pack-destination", str(where)], SDK_JS)
    return where / name.strip().splitlines()[-1]


def _project(where: Path, tarball: Path, *extra: str) -> Path:
    """A project as `npm init -y` makes it (CommonJS by default), with the package installed."""
    where.mkdir()
    _run(["npm", "init", "-y"], where)
    quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
    _run(["npm", "install", *quiet, str(tarball), *extra], where)
    return where


def test_packed_sdk_installs_type_checks_and_runs(
    gateway_server: GatewayServer, tmp_path: Path, tarball: Path
) -> None:
    listed = _run(["tar", "-tzf", str(tarball)], tmp_path)
    for shipped in (
        "dist/index.js",
        "dist/cjs/index.js",
        "dist/cjs/package.json",
        "dist/react/index.d.ts",
        "dist/cjs/react/index.d.ts",
        "CHANGELOG.md",
        "examples/client_example.ts",
        "examples/react-example.tsx",
    ):
        assert f"package/{shipped}" in listed, shipped
    project = _project(
        tmp_path / "app",
        tarball,
        f"typescript@{VERSIONS['typescript']}",
        f"react@{VERSIONS['react']}",
        f"@types/react@{VERSIONS['@types/react']}",
        "@types/node@20",
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


def _block(fence: str, containing: str) -> str:
    [block] = [b for b in re.findall(rf"```{fence}\n(.*?)```", README, re.S) if containing in b]
    return str(block)


@pytest.mark.parametrize("size", [(300, 451), (400, 600)], ids=["451x300", "600x400"])
def test_the_readme_node_snippet_runs_as_written(
    gateway_server: GatewayServer, tmp_path: Path, tarball: Path, size: tuple[int, int]
) -> None:
    project = _project(tmp_path / "app", tarball)
    (project / "segment.mjs").write_text(_block("js", "node:fs/promises"))
    (project / "photo.jpg").write_bytes(encode(scene(*size, seed=6), "JPEG"))
    env = os.environ | {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    output = _run(["node", "segment.mjs", "photo.jpg"], project, env=env)
    assert f"on {size[1]}x{size[0]}" in output
    assert "refined, embedding reused: true" in output
    assert "2 objects" in output
    assert f"{size[0] * size[1]} RGBA pixels" in output


def test_the_readme_run_line_and_browser_snippets_work_as_written(
    gateway_server: GatewayServer, tmp_path: Path, tarball: Path
) -> None:
    project = _project(tmp_path / "app", tarball)
    (project / "photo.jpg").write_bytes(encode(scene(300, 451, seed=6), "JPEG"))
    env = os.environ | {"SAM2_API_KEY": gateway_server.key, "SAM2_BASE_URL": gateway_server.url}
    run_line = _block("bash", "examples/client_example.ts")
    output = _run(["bash", "-euo", "pipefail", "-c", run_line], project, env=env)
    assert "refining click reused the embedding: true" in output
    # The server and page snippets type-check strictly, as ES modules, with the DOM's types.
    (project / "server.mts").write_text(_block("ts", "On your server"))
    (project / "page.mts").write_text(_block("ts", "In the page"))
    strict = ["--strict", "--noUncheckedIndexedAccess", "--exactOptionalPropertyTypes"]
    flags = ["--module", "nodenext", "--target", "es2022", "--lib", "es2022,dom", *strict]
    _run(["npx", "tsc", "--noEmit", *flags, "server.mts", "page.mts"], project)
