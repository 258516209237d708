#!/usr/bin/env bash
# The end-to-end LLM evaluation of issue 10, reproducible: RAG over SQuAD v1.1 dev passages
# answering SQuAD questions through the gateway (SmolLM2 in-process), two versions of the
# answering prompt, scored with exact match, F1, context recall/precision and faithfulness,
# tracked as runs, compared case by case in an HTML report.
#
#   bash bench/squad_rag_eval.sh [CAPSTAN_BINARY] [QUESTIONS]
#
# Writes bench/results/squad_rag_eval.md and bench/results/squad_rag_eval.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/capstan}"
n="${2:-100}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
home="$work/home"
mkdir -p "$home" "$work/docs"
cache="${CAPSTAN_CACHE:-$HOME/.cache/capstan}"
[ -d "$cache/models" ] && ln -s "$cache/models" "$home/models"
python3 - "$work" "$n" <<'PY'
import csv, json, sys
work, n = sys.argv[1], int(sys.argv[2])
for p in csv.DictReader(open("data/squad_v1.1_dev_passages.csv", encoding="utf-8")):
    open(f"{work}/docs/{p['passage_id'].replace('#', '_')}.txt", "w", encoding="utf-8").write(p["text"])
qs = list(csv.DictReader(open("data/squad_v1.1_dev_questions.csv", encoding="utf-8")))
step = max(1, len(qs) // n)
with open(f"{work}/cases.jsonl", "w", encoding="utf-8") as f:
    for q in qs[::step][:n]:
        f.write(json.dumps({"id": q["question_id"], "inputs": {"question": q["question"]},
                            "expected": json.loads(q["answers_json"]),
                            "relevant_sources": [q["passage_id"].replace("#", "_") + ".txt"]}) + "\n")
prompts = {
    "v1": "Context:\n{{ context }}\n\nQuestion: {{ question }}",
    "v2": "Answer the question with a short phrase copied from the context.\n\nContext:\n{{ context }}\n\nQuestion: {{ question }}\nAnswer:",
}
for k, v in prompts.items():
    json.dump({"template": {"messages": [{"role": "user", "content": v}]}, "params": {"temperature": 0}},
              open(f"{work}/{k}.json", "w"))
PY
"$bin" --home "$home" rag ingest "$work/docs" -c squad >&2
"$bin" --home "$home" prompts create qa "$work/v1.json" -m "plain context + question" >/dev/null
"$bin" --home "$home" prompts create qa "$work/v2.json" -m "ask for a short phrase from the context" >/dev/null
evals=(-e exact_match -e token_f1 -e context_recall -e context_precision -e faithfulness -e rouge_l)
out_a=$("$bin" --home "$home" eval run "$work/cases.jsonl" --model smollm2 --prompt qa@1 --collection squad --max-tokens 24 "${evals[@]}")
out_b=$("$bin" --home "$home" eval run "$work/cases.jsonl" --model smollm2 --prompt qa@2 --collection squad --max-tokens 24 "${evals[@]}")
run_a=$(echo "$out_a" | awk '/^run /{print $2}')
run_b=$(echo "$out_b" | awk '/^run /{print $2}')
mkdir -p bench/results
cmp=$("$bin" --home "$home" eval compare "$run_a" "$run_b" --html bench/results/squad_rag_eval.html)
{
  echo "# SQuAD v1.1 RAG evaluation: $n questions, SmolLM2-135M-Instruct through the gateway"
  echo
  echo "Retrieval: hybrid (MiniLM + BM25) over all 2,067 dev passages, top 3. Prompt qa@1 = plain context + question; qa@2 = asks for a short phrase copied from the context. \`bash bench/squad_rag_eval.sh BIN $n\`."
  echo
  echo "## qa@1"; echo; echo '```'; echo "$out_a"; echo '```'
  echo; echo "## qa@2"; echo; echo '```'; echo "$out_b"; echo '```'
  echo; echo "## qa@1 (A) vs qa@2 (B), case by case"; echo; echo '```'; echo "$cmp"; echo '```'
} > bench/results/squad_rag_eval.md
cat bench/results/squad_rag_eval.md
