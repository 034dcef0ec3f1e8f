"""Look at the study's MLflow UI (or Optuna dashboard) in a real headless browser.

    python bench/ui_screenshot.py studies/quickstart.yaml [--storage DIR] [--optuna] [--out docs/img/x.png]

Starts `anpyc-sweep ui` on a free loopback port, waits for its URL, takes a screenshot with Debian's
Chromium (`apt-get install chromium`) after the page's scripts ran, then stops the UI with Ctrl-C
(SIGINT), as a user would. Not a benchmark and not part of the test run: a check to look at.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", type=Path)
    ap.add_argument("--storage")
    ap.add_argument("--optuna", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "mlflow_trials_view.png")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("needs Chromium: apt-get install -y chromium")
    cmd = [str(BIN / "anpyc-sweep"), "ui", str(args.study), "--port", str(free_port())]
    cmd += ["--storage", args.storage] if args.storage else []
    cmd += ["--optuna"] if args.optuna else []
    ui = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ui.stdout.readline().strip()
        if ui.poll() is not None or "http://" not in line:
            sys.exit(f"ui did not start: {line or ui.stderr.read().strip()}")
        url = line.split(": ", 1)[1].split("  (Ctrl-C", 1)[0]
        print(line)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shot = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1500,900"]
        shot += ["--virtual-time-budget=20000", f"--screenshot={args.out}", url]
        subprocess.run(shot, check=True, capture_output=True, timeout=180)
        print(f"wrote {args.out}")
    finally:
        ui.send_signal(signal.SIGINT)
        ui.wait(timeout=30)


if __name__ == "__main__":
    main()
