"""Started by tests/test_distributed.py under torchrun (not collected by pytest): trains each run
given on the command line in this one process group, as `train.py` would, then saves this process's
parameters beside the run's folder (<out>.rank<R>.pt), so that the test can check every process
ended with the same.

    torchrun --standalone --nproc_per_node=2 tests/distributed_runs.py '[["VAE", ["--dataset",
    "fake", "--out", "x"]]]'
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.distributed as dist

from AE import train as ae_train
from GAN import train as gan_train
from VAE import train as vae_train

FAMILIES = {"AE": ae_train, "VAE": vae_train, "GAN": gan_train}


def main():
    for family, flags in json.loads(sys.argv[1]):
        script = FAMILIES[family]
        args = script.make_parser().parse_args(flags)
        model = script.train(args)
        parameters = {name: value.detach().cpu() for name, value in model.named_parameters()}
        out = args.out or Path(args.resume).parent  # a resumed run writes beside its checkpoint
        torch.save(parameters, f"{out}.rank{dist.get_rank()}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
