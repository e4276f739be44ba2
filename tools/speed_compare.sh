#!/usr/bin/env bash
# Batch-1 greedy decode speed of llama-cpu against PyTorch eager float32 (tools/torch_baseline.py),
# same prompt (the first dev case), same 128 tokens, interleaved runs on the same machine.
# Not run by CI (it needs torch). Usage: tools/speed_compare.sh [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
threads=${2:-2}
cargo build --release --example eval >/dev/null 2>&1
eval_bin=${CARGO_TARGET_DIR:-target}/release/examples/eval
out=$(mktemp)
for round in $(seq "$rounds"); do
  "$eval_bin" --limit 1 --threads "$threads" --out "$out" >/dev/null 2>&1
  python3 - "$out" "$round" "$threads" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))[0]
n = len(r["generated"])
print(json.dumps({"engine": "llama-cpu", "round": int(sys.argv[2]), "threads": int(sys.argv[3]),
                  "prefill_ms": round(r["prefill_ms"], 2),
                  "decode_ms_per_token": round((r["wall_ms"] - r["prefill_ms"]) / (n - 1), 3),
                  "decode_cpu_ms_per_token": round(r["cpu_decode_ms"] / (n - 1), 3)}))
EOF
  python3 tools/torch_baseline.py --repeat 1 --threads "$threads" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
print(json.dumps({'engine': r['engine'], 'round': $round, 'threads': r['threads'],
                  'prefill_ms': r['prefill_ms'], 'decode_ms_per_token': r['decode_ms_per_token'],
                  'decode_cpu_ms_per_token': r['decode_cpu_ms_per_token']}))"
done
rm -f "$out"
