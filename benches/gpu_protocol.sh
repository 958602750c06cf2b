#!/usr/bin/env bash
# The GPU protocol: what to run on a machine with a real GPU, from the repository
# root, after ./setup.sh (or with the vendor's Vulkan driver installed):
#
#   benches/gpu_protocol.sh [OUT.json]      (default gpu-protocol.json)
#
# It runs, on the default adapter (VDVAE_ADAPTER picks another):
#   1. vdvae info and vdvae check (every kernel variant against the CPU reference);
#   2. vdvae tune for cifar10 at batch 16, rgb-medium and ladder-mnist;
#   3. the training-step bench for the same three, with the tuned kernels;
#   4. the conv shape sweep (`cargo bench --bench kernels -- sweep --json`);
#   5. the official VDVAE step in PyTorch on CUDA for rgb-medium at batch 16
#      (benches/torch_cuda_step.py), when torch sees a GPU and OFFICIAL_VDVAE names
#      a checkout of openai/vdvae (never commit it).
# and writes one JSON file with the adapter, the driver and every figure; each
# step's full output is kept beside it in OUT.d/. A step that fails is recorded
# with its exit code and the protocol goes on.
set -uo pipefail
cd "$(dirname "$0")/.."

out="${1:-gpu-protocol.json}"
logs="${out%.json}.d"
mkdir -p "$logs"
cargo build --release --benches --bins >"$logs/build.log" 2>&1 || { echo "build failed: see $logs/build.log" >&2; exit 1; }
vdvae=target/release/vdvae

# step NAME CMD...: runs CMD, output to $logs/NAME.log, exit code to $logs/NAME.rc.
step() {
    local name=$1; shift
    echo "== $name: $*" >&2
    "$@" >"$logs/$name.log" 2>&1
    echo $? >"$logs/$name.rc"
}

step info "$vdvae" info
step check "$vdvae" check
step tune-cifar10 "$vdvae" tune --preset cifar10 --batch 16
step tune-rgb-medium "$vdvae" tune --config docs/configs/rgb-medium.json --batch 16
step tune-ladder-mnist "$vdvae" tune --preset ladder-mnist --batch 256
step step-cifar10 cargo bench --bench train_step -- cifar10 16
step step-rgb-medium cargo bench --bench train_step -- --config docs/configs/rgb-medium.json 16
step step-ladder-mnist cargo bench --bench train_step -- ladder-mnist 256
step sweep cargo bench --bench kernels -- sweep --json

if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    if [ -n "${OFFICIAL_VDVAE:-}" ]; then
        step torch-rgb-medium python3 benches/torch_cuda_step.py official "$OFFICIAL_VDVAE" docs/configs/rgb-medium.json 16
    else
        echo "OFFICIAL_VDVAE is not set: the official PyTorch steps are skipped" >&2
    fi
else
    echo "torch sees no CUDA GPU: the PyTorch steps are skipped" >&2
fi

python3 - "$out" "$logs" <<'EOF'
import json, os, sys
out, logs = sys.argv[1], sys.argv[2]
def read(name):
    try:
        text = open(os.path.join(logs, name + ".log")).read()
        rc = int(open(os.path.join(logs, name + ".rc")).read())
    except OSError:
        return None
    return text, rc
def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None
result = {"steps": {}}
info = read("info")
if info:
    result["info"] = info[0]  # the adapter, its driver, features, limits and FMA ceiling
for name in sorted(f[:-3] for f in os.listdir(logs) if f.endswith(".rc")):
    text, rc = read(name)
    entry = {"exit_code": rc}
    parsed = last_json(text)
    if parsed is not None:
        entry["figures"] = parsed
    elif name.startswith(("check", "tune")):
        entry["tail"] = text.splitlines()[-40:]
    result["steps"][name] = entry
json.dump(result, open(out, "w"), indent=1)
print(f"wrote {out} ({len(result['steps'])} steps; logs in {logs}/)")
EOF
