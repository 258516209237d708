"""Peer side of `capstan bench drift`: writes the benchmark tables and runs the real Evidently.

    python bench/drift_peer.py gen --rows 1000000 --out DIR   # DIR/reference.parquet, DIR/current.parquet
    python bench/drift_peer.py run REF CUR                     # JSON: seconds + per-column verdicts

`run` times what an Evidently user runs: read both tables with pandas, then the DataDriftPreset
report. Verdicts use each test's own rule (KS p <= t, chi-square/z p < t, distances >= t).
"""
import argparse
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd


def gen(rows, out):
    rng = np.random.default_rng(2026)
    cities = np.array(["ams", "ber", "cdg", "dub", "edi", "fra", "gva", "hel"])

    def table(drift):
        d = {}
        for i in range(12):
            shift = 0.3 if (drift and i % 3 == 0) else 0.0
            d[f"num_{i:02d}"] = rng.normal(10.0 + i + shift * (1 + i), 1.0 + i / 10, rows).round(5)
        for i in range(3):
            p = [0.25, 0.25, 0.25, 0.25] if not (drift and i == 0) else [0.1, 0.2, 0.3, 0.4]
            d[f"level_{i}"] = rng.choice(4, rows, p=p)
        for i in range(5):
            if drift and i in (0, 3):
                p = np.linspace(1, 3, len(cities))
            else:
                p = np.ones(len(cities))
            d[f"cat_{i}"] = rng.choice(cities, rows, p=p / p.sum())
        return pd.DataFrame(d)

    table(False).to_parquet(f"{out}/reference.parquet", index=False)
    table(True).to_parquet(f"{out}/current.parquet", index=False)


RULES = {"K-S p_value": lambda v, t: v <= t, "chi-square p_value": lambda v, t: v < t,
         "Z-test p_value": lambda v, t: v < t}


def run(ref_path, cur_path):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    t1 = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
    t2 = time.perf_counter()
    cols = {}
    for m in snap["metrics"]:
        cfg = m["config"]
        if cfg["type"].endswith("ValueDrift"):
            rule = RULES.get(cfg["method"], lambda v, t: v >= t)
            cols[cfg["column"]] = {"method": cfg["method"], "score": m["value"],
                                   "drifted": bool(rule(m["value"], cfg["threshold"]))}
    json.dump({"load_seconds": t1 - t0, "report_seconds": t2 - t1, "columns": cols}, sys.stdout)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--rows", type=int, default=1_000_000)
    g.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("reference")
    r.add_argument("current")
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.rows, a.out)
    else:
        run(a.reference, a.current)
