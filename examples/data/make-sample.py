#!/usr/bin/env python3
"""Cut the examples' sample from the shared corpus (eve-synth, Suricata 7.0.10 on a
simulated office network, made for this project): the dns, flow, tls, http and alert
events between 09:12 and 09:30 of traffic time, where most planted behaviours the
examples detect are under way, plus, from 09:30 to 09:45, the events of the DNS
tunnel host and the Nikto scanner (they start later). Usage:
    python3 examples/data/make-sample.py ../shared/data/eve-synth.json.gz
"""
import gzip
import json
import os
import sys

KEEP = {"dns", "flow", "tls", "http", "alert"}
START, END = "2025-03-10T09:12", "2025-03-10T09:30"
LATE_END = "2025-03-10T09:45"
LATE_HOSTS = {"10.1.2.99", "198.51.100.31"}

src = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/eve-synth.json.gz"
dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "eve-sample.json.gz")
n = 0
with gzip.open(src, "rt") as fin, gzip.GzipFile(dst, "wb", compresslevel=9, mtime=0) as fout:
    for line in fin:
        e = json.loads(line)
        ts = e.get("timestamp", "")
        late = END <= ts < LATE_END and (e.get("src_ip") in LATE_HOSTS or e.get("dest_ip") in LATE_HOSTS)
        if e.get("event_type") in KEEP and (START <= ts < END or late):
            fout.write(line.encode())
            n += 1
print(f"{n} events -> {dst}")
