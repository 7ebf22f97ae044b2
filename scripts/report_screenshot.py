"""Screenshot an HTML report with headless Chromium at laptop width, for docs/report.png.

    kvreuse analyze example_traces/chat_sessions.mooncake.jsonl \\
        --gpu-kv-cache-size 345792 --html kvreuse-report.html
    python scripts/report_screenshot.py kvreuse-report.html --out docs/report.png

Needs a Chromium (Debian: ``apt-get install chromium``). The page is cropped to its content
and saved as a palette PNG, small enough to keep in the repository.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def screenshot(html: Path, out: Path, *, width: int, height: int, colors: int) -> int:
    from PIL import Image, ImageChops

    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        sys.exit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        profile = Path(tmp) / "profile"
        profile.mkdir()
        # Nothing but the page: no network, no first-run UI, no background services.
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={raw}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
        image = Image.open(raw).convert("RGB")
    white = Image.new("RGB", image.size, (255, 255, 255))
    bottom = ImageChops.difference(image, white).getbbox()[3]
    image = image.crop((0, 0, image.width, min(image.height, bottom + 24)))
    image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                           dither=Image.Dither.NONE)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--width", type=int, default=1366, help="laptop width (default 1366)")
    parser.add_argument("--height", type=int, default=2000, help="cropped to the content")
    parser.add_argument("--colors", type=int, default=128, help="palette size")
    args = parser.parse_args()
    size = screenshot(args.html, args.out, width=args.width, height=args.height,
                      colors=args.colors)
    print(f"{args.out}: {size:,} bytes")


if __name__ == "__main__":
    main()
