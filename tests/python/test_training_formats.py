"""`capstan train` reads Parquet written by pandas/pyarrow exactly as it reads the same CSV."""
import os
import re
import subprocess
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "data"


def train(home, data):
    out = subprocess.run(
        [os.environ["CAPSTAN_BIN"], "--home", str(home), "train", "--data", str(data), "--target", "progression", "--algorithm", "linear"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return float(re.search(r"test_rmse\s+([0-9.]+)", out.stdout).group(1))


def test_parquet_and_csv_train_the_same_model(tmp_path):
    frame = pd.read_csv(DATA / "diabetes.csv")
    parquet = tmp_path / "diabetes.parquet"
    frame.to_parquet(parquet)
    from_csv = train(tmp_path / "home", DATA / "diabetes.csv")
    from_parquet = train(tmp_path / "home", parquet)
    assert abs(from_csv - 57.105) < 1e-3
    assert abs(from_parquet - from_csv) < 1e-9
