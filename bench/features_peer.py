"""Peer side of `capstan bench features`: writes the benchmark tables and runs the real Feast.

    python bench/features_peer.py gen-online DIR          # DIR/online_source.parquet (10k drivers x 10 features)
    python bench/features_peer.py serve-online DIR PORT   # apply, materialise, then `feast serve`

    python bench/features_peer.py gen --entities 1000000 --source 10000000 --out DIR
    python bench/features_peer.py historical DIR   # JSON: seconds; writes DIR/feast_out.parquet

The source is a driver-stats table (driver_id, event_timestamp, created, three rates) with
`--source` rows over `--source // 100` drivers; the entity frame has `--entities` (driver_id,
event_timestamp) rows. Feast runs from a repo made in DIR/feast_repo (file offline store,
SQLite online store), timed over `get_historical_features(...).to_df()` only.
"""
import argparse
import json
import sys
import time
import warnings
from datetime import timedelta

import numpy as np
import pandas as pd

FEATURES = ["conv_rate", "acc_rate", "avg_daily_trips"]


def gen(entities, source, out):
    rng = np.random.default_rng(7)
    drivers = max(source // 100, 1)
    start = pd.Timestamp("2025-01-01", tz="UTC").value // 1000  # microseconds
    year = 365 * 24 * 3600 * 1_000_000
    ts = start + rng.integers(0, year, source)
    src = pd.DataFrame({
        "driver_id": rng.integers(0, drivers, source),
        "event_timestamp": pd.to_datetime(ts, unit="us", utc=True),
        "created": pd.to_datetime(ts + rng.integers(0, 3600_000_000, source), unit="us", utc=True),
        "conv_rate": rng.random(source),
        "acc_rate": rng.random(source),
        "avg_daily_trips": rng.integers(0, 1000, source).astype("float64"),
    })
    src.to_parquet(f"{out}/source.parquet", index=False)
    ets = start + rng.integers(0, year, entities)
    ent = pd.DataFrame({
        "driver_id": rng.integers(0, drivers, entities),
        "event_timestamp": pd.to_datetime(ets, unit="us", utc=True),
    })
    ent.to_parquet(f"{out}/entities.parquet", index=False)


def historical(out):
    import os
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    warnings.filterwarnings("ignore")
    repo = f"{out}/feast_repo"
    os.makedirs(f"{repo}/data", exist_ok=True)
    with open(f"{repo}/feature_store.yaml", "w") as f:
        f.write(
            "project: bench\nregistry: data/registry.db\nprovider: local\n"
            "online_store:\n  type: sqlite\n  path: data/online_store.db\n"
            "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        )
    driver = Entity(name="driver", join_keys=["driver_id"])
    src = FileSource(path=f"{out}/source.parquet", timestamp_field="event_timestamp",
                     created_timestamp_column="created")
    fv = FeatureView(name="driver_stats", entities=[driver], ttl=timedelta(days=30),
                     schema=[Field(name=n, dtype=Float64) for n in FEATURES], source=src)
    store = FeatureStore(repo_path=repo)
    store.apply([driver, fv])
    entity_df = pd.read_parquet(f"{out}/entities.parquet")
    t0 = time.perf_counter()
    df = store.get_historical_features(
        entity_df=entity_df, features=[f"driver_stats:{n}" for n in FEATURES]).to_df()
    t1 = time.perf_counter()
    df.to_parquet(f"{out}/feast_out.parquet", index=False)
    json.dump({"seconds": t1 - t0, "rows": len(df)}, sys.stdout)


def gen_online(out, drivers=10_000, per_driver=10):
    """Ten features per driver for the online lookup benchmark."""
    rng = np.random.default_rng(11)
    n = drivers * per_driver
    start = pd.Timestamp("2025-01-01", tz="UTC").value // 1000
    ts = start + rng.integers(0, 30 * 24 * 3600 * 1_000_000, n)
    df = pd.DataFrame({"driver_id": np.repeat(np.arange(drivers), per_driver),
                       "event_timestamp": pd.to_datetime(ts, unit="us", utc=True)})
    for i in range(10):
        df[f"f{i}"] = rng.random(n)
    df.to_parquet(f"{out}/online_source.parquet", index=False)


def serve_online(out, port):
    """Applies a repo over online_source.parquet, materialises it, then runs `feast serve`."""
    import os
    import subprocess
    from datetime import datetime, timezone
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    warnings.filterwarnings("ignore")
    repo = f"{out}/feast_online"
    os.makedirs(f"{repo}/data", exist_ok=True)
    with open(f"{repo}/feature_store.yaml", "w") as f:
        f.write(
            "project: online\nregistry: data/registry.db\nprovider: local\n"
            "online_store:\n  type: sqlite\n  path: data/online_store.db\n"
            "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
        )
    store = FeatureStore(repo_path=repo)
    driver = Entity(name="driver", join_keys=["driver_id"])
    src = FileSource(path=f"{out}/online_source.parquet", timestamp_field="event_timestamp")
    fv = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=3650),
                     schema=[Field(name=f"f{i}", dtype=Float64) for i in range(10)], source=src)
    store.apply([driver, fv])
    store.materialize(start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                      end_date=datetime(2026, 1, 1, tzinfo=timezone.utc))
    feast_bin = os.path.join(os.path.dirname(sys.executable), "feast")
    os.execv(feast_bin, [feast_bin, "-c", repo, "serve", "--host", "127.0.0.1", "--port", str(port),
                         "--workers", "2",
                         "--no-access-log"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--entities", type=int, default=1_000_000)
    g.add_argument("--source", type=int, default=10_000_000)
    g.add_argument("--out", required=True)
    h = sub.add_parser("historical")
    h.add_argument("out")
    go = sub.add_parser("gen-online")
    go.add_argument("out")
    so = sub.add_parser("serve-online")
    so.add_argument("out")
    so.add_argument("port", type=int)
    a = ap.parse_args()
    if a.cmd == "gen":
        gen(a.entities, a.source, a.out)
    elif a.cmd == "gen-online":
        gen_online(a.out)
    elif a.cmd == "serve-online":
        serve_online(a.out, a.port)
    else:
        historical(a.out)
