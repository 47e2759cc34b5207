#!/usr/bin/env python3
"""Cold start to ready: spawn `xaa-broker serve --dev` seven times and time
each from spawn to the first `GET /readyz` answered 200 (polled every 2 ms).
Usage: python3 bench/cold_start.py [path/to/xaa-broker]  (default: target/release/xaa-broker)"""
import subprocess, time, urllib.request, sys, statistics
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/xaa-broker"
res = []
for i in range(7):
    port = 18600 + i
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--dev", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.2).status == 200:
                break
        except Exception:
            time.sleep(0.002)
        if time.monotonic() - t0 > 10: break
    res.append((time.monotonic() - t0) * 1000)
    p.terminate(); p.wait()
print("cold start to /readyz 200 (ms):", " ".join(f"{r:.0f}" for r in res), "median", f"{statistics.median(res):.0f}")
