"""Make docs/report.png, the README's picture of `hpo report`, from a fresh `hpo demo`.

    .venv/bin/python docs/report_screenshot.py

Runs the demo in a temporary folder (SQLite, CPU, digits: about a minute on 2 cores), writes its
report, and has headless Chromium (Debian's `chromium`) draw the page's title, the optimization
history and the best trial's curves: the report itself, its other sections hidden.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).with_name("report.png")
SHOWN = "#optimization-history, section[id^='best-trial']"
WIDTH, HEIGHT, SCALE = 1100, 1330, 0.75


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("error: needs Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        hpo = [sys.executable, "-m", "hpo"]
        subprocess.run([*hpo, "demo", "--study", "demo"], cwd=work, check=True)
        subprocess.run(
            [*hpo, "report", "--study", "demo", "-o", "report.html"], cwd=work, check=True
        )
        page = (work / "report.html").read_text()
        style = f"<style>section{{display:none}} {SHOWN}{{display:block}}</style></head>"
        (work / "shown.html").write_text(page.replace("</head>", style, 1))
        subprocess.run(
            [
                browser,
                *("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
                *("--no-first-run", "--disable-background-networking", "--disable-sync"),
                f"--window-size={WIDTH},{HEIGHT}",
                f"--force-device-scale-factor={SCALE}",
                "--virtual-time-budget=10000",
                f"--user-data-dir={work / 'profile'}",
                f"--screenshot={OUT.resolve()}",
                (work / "shown.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
