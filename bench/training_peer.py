"""The training benchmark's peer: scikit-learn on exactly the rows Capstan trains and tests on.

Usage: training_peer.py --data CSV --target COL --model logistic|hgb|linear --split split.json
Prints one JSON object: {"metric": accuracy or RMSE on the test rows, "fit_seconds": ...}."""
import argparse
import json
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--target", required=True)
p.add_argument("--model", required=True)
p.add_argument("--split", required=True)
p.add_argument("--drop", default="")
a = p.parse_args()

frame = pd.read_csv(a.data)
drop = [c for c in a.drop.split(",") if c]
features = frame.drop(columns=[a.target] + drop)
# The same encoding as Capstan: text columns one-hot, numeric gaps filled with the median.
text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
features = pd.get_dummies(features, columns=text, dtype=float)
X = features.fillna(features.median(numeric_only=True)).to_numpy(dtype=float)
y = frame[a.target].to_numpy()
split = json.load(open(a.split))
tr, te = np.array(split["train"]), np.array(split["test"])
model = {
    "logistic": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "hgb": lambda: HistGradientBoostingClassifier(random_state=0),
    "linear": lambda: LinearRegression(),
    "hgb_regressor": lambda: HistGradientBoostingRegressor(random_state=0),
}[a.model]()
t = time.perf_counter()
model.fit(X[tr], y[tr])
fit = time.perf_counter() - t
pred = model.predict(X[te])
if a.model in ("linear", "hgb_regressor"):
    metric = float(np.sqrt(np.mean((pred.astype(float) - y[te].astype(float)) ** 2)))
else:
    metric = float(np.mean(pred == y[te]))
print(json.dumps({"metric": metric, "fit_seconds": fit}))
