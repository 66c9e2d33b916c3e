"""PyTorch eager CPU training throughput of CNN9-max "block 4 + head" on a cached trunk input.

The baseline the tch (Rust) benchmark is compared against on the same machine. Model:
x [B, 256, 12, 12] -> Conv(256->512, 3x3, pad 1, no bias) -> BN -> ReLU
-> Conv(512->512, 3x3, pad 1, no bias) -> BN -> ReLU -> mean over freq (dim 3), max over time (dim 2)
-> Linear(512, 256) -> ReLU -> Linear(256, 128) -> ReLU -> Linear(128, C); cross-entropy, Adam lr 1e-4,
train mode. One step = forward, backward, optimizer step, loss.item(); only the --steps measured steps
(after --warmup steps) are timed.

Run (torch 2.11.0 from .libtorch/venv, the same libtorch tch links):
    $(scripts/setup-torch-eager) train/bench/block4_eager.py --json
"""
import argparse
import json
import os
import time
import warnings

# The venv deliberately has no NumPy; torch warns about it on import.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import nn  # noqa: E402


class Block4Head(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.block4 = nn.Sequential(
            nn.Conv2d(256, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(),
            nn.Conv2d(512, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block4(x).mean(dim=3).amax(dim=2)  # [B, 512]
        return self.head(h)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--classes", type=int, default=38)
    p.add_argument("--steps", type=int, default=20, help="measured steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads (default: all CPUs)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 256, 12, 12)
    y = torch.randint(0, a.classes, (a.batch,))
    model = Block4Head(a.classes).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = time.perf_counter() - t0

    ms = dt * 1000 / a.steps
    sps = a.batch * a.steps / dt
    if a.json:
        print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "batch": a.batch, "steps": a.steps, "ms_per_step": round(ms, 3),
                          "samples_per_s": round(sps, 2)}))
    else:
        print(f"pytorch-eager torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}: "
              f"{ms:.1f} ms/step, {sps:.1f} samples/s (last loss {loss:.4f})")


if __name__ == "__main__":
    main()
