"""Where a job's peak memory happens: its RSS sampled every 0.1 s beside the stage it reports.

    python benchmarks/rss_trace.py INPUT [urst stylize options...]

Runs ``urst stylize INPUT ... --json`` and prints a line whenever the RSS reaches a new peak, or moves by
25 MiB or to another stage, with the stage and fraction of the latest progress event; then the job's own
``file_done`` figures. Run it under the shared CPU lock (flock /tmp/urst-cpu.lock ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time


def main() -> None:
    child = subprocess.Popen([sys.executable, "-m", "urst_cli", "stylize", *sys.argv[1:], "--json"],
                             stdout=subprocess.PIPE, text=True)
    latest = {"stage": "start", "fraction": 0.0, "done": {}}

    def follow_events() -> None:
        for line in child.stdout:
            event = json.loads(line)
            if event["event"] == "progress":
                latest["stage"], latest["fraction"] = event["stage"], event["fraction"]
            elif event["event"] == "file_done":
                latest["done"] = event

    reader = threading.Thread(target=follow_events, daemon=True)
    reader.start()
    peak, shown, started = 0, None, time.perf_counter()
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024
        except (OSError, StopIteration):
            break
        if rss > peak or (latest["stage"], rss // 25) != shown:
            print(f"{time.perf_counter() - started:6.1f} s {rss:5d} MiB  {latest['stage']} {latest['fraction']:.3f}"
                  f"{'  peak' if rss > peak else ''}", flush=True)
            peak, shown = max(peak, rss), (latest["stage"], rss // 25)
        time.sleep(0.1)
    reader.join()
    done = latest["done"]
    print("file_done:", {key: done.get(key) for key in ("peak_rss_mib", "seconds", "stats_mode")})
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
