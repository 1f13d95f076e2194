#!/usr/bin/env bash
# Reruns every row of the README's results table, seeds included, one run after another, with the README's
# exact commands; then prints each run's figures.
#
#   docs/reproduce.sh                        # every row, MNIST in data/: about 14 hours by the README's times
#   docs/reproduce.sh --data-root DIR        # MNIST in DIR
#   docs/reproduce.sh --quick                # the same commands for 1 epoch each: they run, the figures do not count
#   docs/reproduce.sh --dry-run              # only print the commands
#
# Each run goes to <family>/results/reproduce/<row> (--quick: reproduce-quick/), its screen output to
# <row>.txt beside it. A folder left by an earlier call is refused, not overwritten: remove it first.
# --quick appends --epochs 1 (GAN: also --fid-every 1 --fid-samples 2000; VAE, AE: --embedding pca).
# The recorded runs used one thread each: OMP_NUM_THREADS=1 docs/reproduce.sh keeps their thread count.
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
            echo "docs/reproduce.sh: $family/results/$NAME holds an earlier call's runs: remove it first" >&2
            exit 1
        fi
    done
fi
FAILED=()

# train ROW COMMAND...: the README's command, then --data-root and --out, into FAMILY/results/NAME/ROW
train() {
    local row=$1; shift
    local family; family=$(dirname "$2")
    local out="$family/results/$NAME/$row"
    local quick=()
    if [ $QUICK = 1 ]; then
        quick=(--epochs 1)
        if [ "$family" = GAN ]; then quick+=(--fid-every 1 --fid-samples 2000); else quick+=(--embedding pca); fi
    fi
    local command=("$@" --data-root "$DATA" --out "$out" "${quick[@]}")
    echo "${command[*]}"
    [ $DRY_RUN = 1 ] && return
    mkdir -p "$(dirname "$out")"
    local started=$SECONDS
    if "${command[@]}" > "$out.txt" 2>&1; then
        echo "    $((SECONDS - started)) s"
    else
        echo "    FAILED: see $out.txt"; FAILED+=("$out.txt")
    fi
}

seeds() {  # seeds N: 0 ... N-1 (--quick: 0 only)
    if [ $QUICK = 1 ]; then echo 0; else seq 0 $(($1 - 1)); fi
}

# ---- The README's results table, row by row ----
for seed in $(seeds 3); do
    train vae-mlp-seed$seed python VAE/train.py --seed $seed
done
for seed in $(seeds 3); do
    train vae-conv-d3-cosine-seed$seed python VAE/train.py --arch conv --decoder-depth 3 --batch-size 64 \
        --lr-schedule cosine --seed $seed
done
train ae-linear-n16 python AE/train.py
for seed in $(seeds 3); do
    train dcgan-seed$seed python GAN/train.py --epochs 20 --fid-every 1 --seed $seed
done
train wgan-gp python GAN/train.py --epochs 50 --loss wgan-gp
train wgan python GAN/train.py --epochs 50 --loss wgan
train cgan python GAN/train.py --model cgan --epochs 20
train acgan python GAN/train.py --model acgan --epochs 20
for seed in $(seeds 4); do
    train infogan-seed$seed python GAN/train.py --model infogan --epochs 30 --seed $seed
done

[ $DRY_RUN = 1 ] && exit 0

# ---- The figures of every run: the last log row's headline columns and fid.csv ----
python - "$NAME" <<'EOF'
import csv
import sys
from pathlib import Path

name = sys.argv[1]
headline = ["test_neg_elbo_28x28", "test_mse_per_pixel", "pca_mse_per_pixel"]
final = ["fid", "fid_over_floor", "accuracy", "cluster_accuracy"]
for log in sorted(Path(".").glob(f"*/results/{name}/*/log.csv")):
    rows = list(csv.DictReader(open(log)))
    figures = {key: rows[-1][key] for key in headline if rows[-1].get(key)}
    fid = log.with_name("fid.csv")
    if fid.exists():
        last = list(csv.DictReader(open(fid)))[-1]
        figures |= {key: last[key] for key in final if last.get(key)}
    seconds = sum(float(row["seconds"]) for row in rows)
    print(f"{log.parent}: epoch {rows[-1]['epoch']}, {seconds:,.0f} s of training | "
          + " ".join(f"{key} {value}" for key, value in figures.items()))
EOF
if [ ${#FAILED[@]} -gt 0 ]; then echo "failed: ${FAILED[*]}"; exit 1; fi
