"""The serving benchmark's peer: a FastAPI + scikit-learn server (uvicorn) with the same model
(standardised logistic regression on breast_cancer) and the same JSON as `capstan serve`'s
/invocations (`{"dataframe_records": [...]}` -> `{"predictions": [...]}`).

Run by `capstan bench serving --python VENV/bin/python`; needs fastapi, uvicorn, scikit-learn,
pandas (bench/requirements.txt)."""
import argparse

import pandas as pd
import uvicorn
from fastapi import FastAPI, Request
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()

frame = pd.read_csv(args.data)
features = [c for c in frame.columns if c != "diagnosis"]
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(frame[features], frame["diagnosis"])

app = FastAPI()


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/invocations")
async def invocations(request: Request):
    body = await request.json()
    rows = pd.DataFrame.from_records(body["dataframe_records"], columns=features)
    return {"predictions": model.predict(rows).tolist()}


uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="error")
