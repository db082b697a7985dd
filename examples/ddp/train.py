"""A small DistributedDataParallel training on CPU (gloo), for a TrainingJob with framework pytorch.

torchrun starts it with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the rendezvous the operator wires
(examples/ddp/trainingjob.yaml). Each rank trains on its own seeded synthetic data, so its local gradients
differ from its peer's: only DDP's all-reduce keeps the ranks' parameters equal. At the end every rank gathers
every rank's parameter checksum and exits 1 unless all are equal, so a job that Succeeds proves the all-reduce
happened.

Environment: STEPS (default 30) training steps; STEP_SECONDS (default 0) pause after each step, to make a run
long enough to watch or to kill a rank mid-run; NO_SYNC=1 trains without the all-reduce (the check then fails).
"""

import os
import socket
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

STEPS = int(os.environ.get("STEPS", "30"))
STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "0"))
NO_SYNC = os.environ.get("NO_SYNC") == "1"


def log(text: str) -> None:
    print(f"[rank {dist.get_rank()}/{dist.get_world_size()}] {text}", flush=True)


def main() -> int:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    log(f"joined: world size {world}, host {socket.gethostname()}, master {os.environ.get('MASTER_ADDR')}, "
        f"attempt {os.environ.get('ATTEMPT', '?')}")

    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    trained = model if NO_SYNC else DistributedDataParallel(model)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.05)

    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard of the data
    true_w = torch.arange(8, dtype=torch.float32) / 8
    for step in range(STEPS):
        x = torch.randn(32, 8, generator=data)
        y = x @ true_w + 0.1 * torch.randn(32, generator=data)
        loss = torch.nn.functional.mse_loss(trained(x).squeeze(1), y)
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
        log(f"step {step + 1}/{STEPS} loss {loss.item():.4f}")
        if STEP_SECONDS:
            time.sleep(STEP_SECONDS)

    checksum = torch.cat([p.detach().flatten() for p in model.parameters()]).double().sum().reshape(1)
    gathered = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    dist.all_gather(gathered, checksum)
    sums = [t.item() for t in gathered]
    equal = all(s == sums[0] for s in sums)
    log(f"checksum {checksum.item():.17g}; all ranks {' '.join(f'{s:.17g}' for s in sums)}; "
        f"{'equal' if equal else 'DIFFERENT'}")
    dist.barrier()  # no rank tears its connections down while a peer still uses them
    dist.destroy_process_group()
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
