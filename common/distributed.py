"""torchrun: one process per GPU (or several on a CPU). Each joins the group and trains on its own
rows of every batch; rank 0 alone prints, measures and writes. A plain run is a group of one."""
import contextlib
import inspect
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common import InputError


def join_process_group(device):
    """Under torchrun, which gives each process WORLD_SIZE, RANK and LOCAL_RANK, join the others:
    NCCL between GPUs, each process on its LOCAL_RANK-th GPU; Gloo between CPU processes. Returns
    (device, rank, world_size); a plain run is (device, 0, 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return device, 0, 1
    if device.type == "mps":
        raise InputError("torchrun needs CUDA GPUs or the CPU: torch.distributed lacks MPS")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), world_size


def leave_process_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process():
    """Rank 0, the one process that prints, draws and writes (also before joining the group)."""
    return (dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))) == 0


@contextlib.contextmanager
def main_process_first(world_size):
    """Rank 0 runs the body first (a download, a decoded-image cache); the others find it done."""
    if world_size > 1 and not is_main_process():
        dist.barrier()
    yield
    if world_size > 1 and is_main_process():
        dist.barrier()


class LossAsForward(nn.Module):
    """DistributedDataParallel averages the gradients of the work done inside its module's forward;
    this module's forward is one of the model's loss methods, and its parameters are `network`'s."""

    def __init__(self, network, loss):
        super().__init__()
        self.network, self.loss = network, loss

    def forward(self, *args, **kwargs):
        return self.loss(*args, **kwargs)


def data_parallel(network, loss, world_size):
    """What the training loop calls for a loss: the method `loss` itself in a single process;
    under torchrun, `loss` run inside a DistributedDataParallel over `network`, the module whose
    parameters it trains, so that its backward averages their gradients over the processes.

    BatchNorm keeps per-process statistics (batch_size / world_size images each, as on one GPU with
    that batch): SyncBatchNorm has no CPU kernel and would wait on every process at every layer.
    Rank 0's running statistics are the ones checkpointed, so buffers are not broadcast each step
    (which would also overwrite G's in place after its forward); torch 2.14 renamed that option."""
    if world_size == 1:
        return loss
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    option = "forward_sync_buffers" if renamed else "broadcast_buffers"
    return DistributedDataParallel(LossAsForward(network, loss), **{option: False})


def mean_over_processes(sums, world_size):
    """{name: tensor or float} of per-process sums -> their mean over the processes: each process
    sums means over its own part of the batch."""
    if world_size == 1:
        return sums
    device = next((v.device for v in sums.values() if isinstance(v, torch.Tensor)), "cpu")
    values = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in sums.values()])
    values = values.to(device)
    dist.all_reduce(values)
    return dict(zip(sums, (values / world_size).cpu()))


def share_random_state(world_size, device):
    """Every process continues from rank 0's random state. All draw the whole batch's noise from one
    stream and keep their own part; rank 0 alone drew more for its pictures and FID, so the others
    take its state. Also a barrier: no process runs ahead of rank 0's writes."""
    if world_size > 1:
        states = [rng_states(device)]
        dist.broadcast_object_list(states, src=0)
        set_rng_states(states[0], device)


def rng_states(device):
    """The global random states a training step draws from (noise, dropout, binarization): the CPU's
    and the training GPU's (each process has its own GPU, and continues rank 0's stream on it)."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, device):
    torch.set_rng_state(states["torch"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def describe_batch(batch_size, world_size):
    if world_size == 1:
        return f"batch {batch_size}"
    return f"batch {batch_size} = {world_size} processes x {batch_size // world_size}"
