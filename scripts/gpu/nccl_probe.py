"""Does NCCL work between the GPUs of this machine at all? A PyTorch broadcast + all-reduce
between two processes, one GPU each (the same NCCL that qarl's refit NCCL wire loads).

    NCCL_DEBUG=INFO python3 scripts/gpu/nccl_probe.py   # prints the transports NCCL chose

Used to tell a machine problem from a qarl problem when CudaRefitNccl.TwoRanks* fails.
"""
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank: int, world: int, port: int) -> None:
    os.environ["NCCL_NVLS_ENABLE"] = "0"  # the machine's rule: no NVLink multicast
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, device_id=torch.device("cuda", rank))
    x = torch.arange(64 << 20, dtype=torch.uint8, device="cuda") if rank == 0 else \
        torch.zeros(64 << 20, dtype=torch.uint8, device="cuda")
    t0 = time.time()
    dist.broadcast(x, 0)
    torch.cuda.synchronize()
    ok = bool((x == torch.arange(64 << 20, dtype=torch.uint8, device="cuda")).all())
    y = torch.ones(1, device="cuda") * (rank + 1)
    dist.all_reduce(y)
    print(f"rank {rank}: broadcast 64 MiB ok={ok} in {time.time() - t0:.3f} s; "
          f"all_reduce sum={y.item()} (want {world * (world + 1) / 2})", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    n = torch.cuda.device_count()
    if n < 2:
        print(f"needs 2 GPUs, found {n}")
        sys.exit(0)
    mp.spawn(worker, args=(2, 29517), nprocs=2, join=True)
