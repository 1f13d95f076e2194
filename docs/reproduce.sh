#!/usr/bin/env bash
# Reruns every row of the README's results tables (and the runs behind its gallery), one after another,
# from a clean clone, with the README's exact commands; then prints each run's figures.
#
#   docs/reproduce.sh --data-root ../shared/data            # every row: many hours on a 2-core CPU
#   docs/reproduce.sh --quick --data-root ../shared/data    # the same commands for 1 epoch each: minutes
#   docs/reproduce.sh --dry-run                              # only print the commands
#
# Each run goes to <family>/results/reproduce/<row> (--quick: reproduce-quick/), its screen output to
# <row>.txt beside it. A folder left by an earlier call is refused, not overwritten: remove it first.
# --quick appends --epochs 1 (GAN: also --fid-every 1 --fid-samples 2000; VAE, AE: --embedding pca, no t-SNE)
# and shortens the NLL estimate, the sample FIDs and the benchmark: its figures show that every command
# runs, not the results.
set -uo pipefail
cd "$(dirname "$0")/.."

QUICK=0 DRY_RUN=0 DATA=data
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --data-root) DATA=${2:?--data-root needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | cut -c3-; exit 0 ;;
        *) echo "docs/reproduce.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
NAME=reproduce; [ $QUICK = 1 ] && NAME=reproduce-quick
if [ $DRY_RUN = 0 ]; then
    for family in VAE AE GAN; do
        if [ -e "$family/results/$NAME" ]; then
            echo "docs/reproduce.sh: $family/results/$NAME holds an earlier call's runs: remove it (or keep it and use the other mode)" >&2
            exit 1
        fi
    done
fi
FAILED=()

step() {  # step LOG COMMAND...: print COMMAND, run it with its output in LOG, and say how long it took
    local log=$1; shift
    echo "$*"
    [ $DRY_RUN = 1 ] && return
    mkdir -p "$(dirname "$log")"
    local started=$SECONDS
    if "$@" > "$log" 2>&1; then echo "    $((SECONDS - started)) s"; else echo "    FAILED: see $log"; FAILED+=("$log"); fi
}

train() {  # train FAMILY ROW FLAGS...: FAMILY/train.py with the README's flags, into FAMILY/results/NAME/ROW
    local family=$1 row=$2; shift 2
    local quick=()
    if [ $QUICK = 1 ]; then
        quick=(--epochs 1)
        if [ "$family" = GAN ]; then quick+=(--fid-every 1 --fid-samples 2000); else quick+=(--embedding pca); fi
    fi
    step "$family/results/$NAME/$row.txt" python "$family/train.py" --data-root "$DATA" "$@" --out "$family/results/$NAME/$row" "${quick[@]}"
}

quick_or() {  # quick_or QUICK FULL: the value for this mode
    if [ $QUICK = 1 ]; then echo "$1"; else echo "$2"; fi
}

# ---- VAE (README: VAE table; docs/results.md: the samples' FID, the 2-D ablations of the gallery) ----
for seed in 0 1 2; do
    train VAE mlp-z20-seed$seed --seed $seed
done
train VAE conv-z20 --arch conv
for seed in $(quick_or 0 "0 1 2"); do
    train VAE conv-z20-d3-cosine-seed$seed --arch conv --decoder-depth 3 --batch-size 64 --lr-schedule cosine --seed $seed
done
train VAE conv-z20-binarized --arch conv --binarize
step VAE/results/$NAME/conv-z20-binarized-nll.txt python VAE/evaluate.py VAE/results/$NAME/conv-z20-binarized/checkpoint.pt \
    --samples "$(quick_or 50 1000)" --images "$(quick_or 100 1000)"
for run in mlp-z20-seed0 conv-z20; do
    step VAE/results/$NAME/$run-sample.txt python VAE/sample.py VAE/results/$NAME/$run/checkpoint.pt --num "$(quick_or 2000 10000)" --out VAE/results/$NAME/$run-samples.pt
    step VAE/results/$NAME/$run-fid.txt python GAN/fid.py VAE/results/$NAME/$run-samples.pt --data-root "$DATA"
done
train VAE mlp-z2 --latent-dim 2
train VAE mlp-z2-no-kl --latent-dim 2 --beta 0
train VAE mlp-z2-kl-only --latent-dim 2 --recon-weight 0

# ---- AE (README: AE table) ----
train AE linear-n2 --latent-dim 2 --epochs 30
step AE/results/$NAME/linear-n2-resumed.txt python AE/train.py --resume AE/results/$NAME/linear-n2/checkpoint.pt --epochs "$(quick_or 2 50)"
train AE linear-n16
train AE linear-n32 --latent-dim 32 --epochs 30

# ---- GAN (README: GAN and conditional tables) ----
train GAN dcgan-10 --epochs 10
for seed in $(quick_or 0 "0 1 2"); do
    train GAN dcgan-20-seed$seed --epochs 20 --fid-every 1 --seed $seed
done
# The 2,000-sample FID's own noise (docs/results.md): one frozen G, ten fresh draws of 2,000 samples
for draw in $(quick_or 100 "$(seq 100 109)"); do
    step GAN/results/$NAME/dcgan-20-seed0-draw$draw-sample.txt python GAN/sample.py GAN/results/$NAME/dcgan-20-seed0/checkpoint.pt \
        --num 2000 --seed $draw --out GAN/results/$NAME/dcgan-20-seed0-draw.pt
    step GAN/results/$NAME/dcgan-20-seed0-draw$draw-fid.txt python GAN/fid.py GAN/results/$NAME/dcgan-20-seed0-draw.pt --data-root "$DATA"
done
train GAN wgan-gp-50 --epochs 50 --loss wgan-gp
train GAN wgan-50 --epochs 50 --loss wgan
train GAN cgan-10 --model cgan --epochs 10
train GAN acgan-8 --model acgan --epochs 8
train GAN cgan-20 --model cgan --epochs 20
train GAN acgan-20 --model acgan --epochs 20
for seed in $(quick_or 0 "0 1 2 3 4"); do
    train GAN infogan-30-seed$seed --model infogan --epochs 30 --seed $seed
    train GAN infogan-normal-z-30-seed$seed --model infogan --epochs 30 --noise normal --seed $seed
    train GAN infogan-no-q-body-30-seed$seed --model infogan --epochs 30 --noise normal --no-q-trains-body --seed $seed
    train GAN infogan-small-30-seed$seed --model infogan --epochs 30 --noise normal --g-hidden 0 --d-hidden 0 --category-scale 2 --no-q-trains-body --seed $seed
done

# ---- Speed (README: Speed): the benchmark, then one process against two under torchrun, on the CPU ----
step VAE/results/$NAME/benchmark.txt python tests/benchmark.py --data-root "$DATA" --models vae-mlp dcgan dcgan-w64 $(quick_or "--images 1280" "")
step VAE/results/$NAME/one-process.txt python VAE/train.py --data-root "$DATA" --epochs 1 --embedding pca --device cpu --out VAE/results/$NAME/one-process
step VAE/results/$NAME/two-processes.txt env OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 VAE/train.py \
    --data-root "$DATA" --epochs 1 --embedding pca --device cpu --out VAE/results/$NAME/two-processes

[ $DRY_RUN = 1 ] && exit 0

# ---- The figures of every run: the last log row's headline columns and fid.csv ----
python - "$NAME" <<'EOF'
import csv, sys
from pathlib import Path

name = sys.argv[1]
headline = ["test_neg_elbo_28x28", "test_neg_elbo", "test_mse_per_pixel", "pca_mse_per_pixel", "fid_2k", "cluster_accuracy_val"]
for log in sorted(Path(".").glob(f"*/results/{name}/*/log.csv")):
    rows = list(csv.DictReader(open(log)))
    figures = {key: rows[-1][key] for key in headline if rows[-1].get(key)}
    fid = log.with_name("fid.csv")
    if fid.exists():
        final = list(csv.DictReader(open(fid)))[-1]
        figures |= {key: final[key] for key in ("fid", "fid_over_floor", "fid_live", "accuracy", "cluster_accuracy") if final.get(key)}
    seconds = sum(float(row["seconds"]) for row in rows)
    print(f"{log.parent.relative_to('.')}: epoch {rows[-1]['epoch']}, {seconds:,.0f} s of training | "
          + " ".join(f"{key} {value}" for key, value in figures.items()))
EOF
for result in VAE/results/$NAME/*-fid.txt VAE/results/$NAME/conv-z20-binarized-nll.txt VAE/results/$NAME/benchmark.txt; do
    echo "== $result"; tail -n 3 "$result"
done
if [ ${#FAILED[@]} -gt 0 ]; then echo "failed: ${FAILED[*]}"; exit 1; fi
