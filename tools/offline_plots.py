"""Write .dvc/plots/offline.html: the page `dvc plots show` / `dvc plots diff` fill in, with Vega, Vega-Lite and
Vega-Embed inlined, so the plots render without internet (DVC's own page loads them from a CDN).

    python tools/offline_plots.py        # needs npm (the package registry) once; the page is committed

The versions are the ones DVC's renderer (dvc-render) names in its page; .dvc/config points DVC at the page
(`plots.html_template`). Each library keeps its BSD-3-Clause licence notice in the page.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".dvc" / "plots" / "offline.html"
LIBRARIES = ("vega", "vega-lite", "vega-embed")


def dvc_versions() -> dict[str, str]:
    """{library: version} from dvc-render's CDN script tags (`https://cdn.jsdelivr.net/npm/vega@5.20.2`)."""
    from dvc_render.vega import VegaRenderer

    return dict(re.findall(r"npm/([a-z-]+)@([0-9.]+)", VegaRenderer.SCRIPTS))


def fetch(library: str, version: str, into: Path) -> tuple[str, str]:
    """(minified build, licence text) of `library@version` from the npm registry."""
    subprocess.run(["npm", "pack", f"{library}@{version}", "--pack-destination", str(into)], check=True,
                   capture_output=True)  # fmt: skip
    with tarfile.open(into / f"{library}-{version}.tgz") as tar:
        build = tar.extractfile(f"package/build/{library}.min.js").read().decode()
        licence = tar.extractfile("package/LICENSE").read().decode()
    if "</script" in build.lower():
        raise SystemExit(f"{library}@{version} holds '</script': it cannot be inlined as it is")
    return build, licence


def page(scripts: list[str]) -> str:
    # DVC fills {plot_divs} (and {refresh_tag} for --refresh); there is no {scripts}: nothing is loaded from a CDN
    return f"""<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{chr(10).join(scripts)}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main() -> None:
    versions = dvc_versions()
    missing = [lib for lib in LIBRARIES if lib not in versions]
    if missing:
        raise SystemExit(f"dvc-render no longer names {missing} in its page: look at dvc_render/vega.py")
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for lib in LIBRARIES:
            build, licence = fetch(lib, versions[lib], Path(tmp))
            notice = "\n".join(f"   {line}" for line in licence.strip().splitlines())
            scripts.append(f"<!-- {lib}@{versions[lib]}, inlined from npm by tools/offline_plots.py\n{notice}\n-->\n"
                           f"<script>\n{build}\n</script>")  # fmt: skip
    OUT.write_text(page(scripts))
    print(f"{OUT.relative_to(ROOT)}: {', '.join(f'{k}@{v}' for k, v in versions.items())}, "
          f"{OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
