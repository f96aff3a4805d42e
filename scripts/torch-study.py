#!/usr/bin/env python3
"""The `sge study` recipe trained by PyTorch, for the SGE-against-none comparison at full length.

Trains sge's small SGE-ResNet (scripts/sge_resnet.py: stem 3x3 16, stages 16/32/64 of one basic block,
SGE with --groups G (default 8) in every stage after each block's last BatchNorm, as `sge study --groups G`) on Fashion-MNIST exactly as `sge train` /
`sge study --augment` do: batch 128 (last partial batch dropped), SGD lr 0.1 momentum 0.9 weight decay
5e-4 on every parameter, per-step cosine schedule after 0.2 epochs of linear warm-up
(lr * (t+1)/warmup, then lr/2 * (1 + cos(pi * progress))), normalisation (p/255 - 0.2860)/0.3530,
augmentation = random crop with 2 pixels of black padding + horizontal flip; conv weights
kaiming_normal_(fan_out, relu). Evaluates on the 10,000 test images after the last epoch.

  torch-study.py --data /usr/share/datasets/fashion-mnist --epochs 15 --seeds 1,2,3 --variants sge,none
      [--augment] [--groups 8] [--device cuda|cpu] [--train-subset N] [--json FILE]

Prints one line per run and mean ± std (sample std) per variant; --json writes the runs.
"""
import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sge_resnet import SGEResNet  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            with (gzip.open(p) if p.endswith(".gz") else open(p, "rb")) as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
            return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)
    raise SystemExit(f"torch-study: {path}[.gz] not found")


def load(data_dir, prefix):
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte")).float().div(255).sub(MEAN).div(STD).unsqueeze(1)
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte")).long()
    return x, y


def augment(x, gen):
    """Random crop with 2 pixels of black (raw 0) padding and a horizontal flip with probability 1/2,
    as one gather on x's device."""
    n, c, h, w = x.shape
    padded = F.pad(x, (2, 2, 2, 2), value=(0 - MEAN) / STD)
    dy = torch.randint(0, 5, (n, 1), generator=gen).to(x.device)
    dx = torch.randint(0, 5, (n, 1), generator=gen).to(x.device)
    flip = (torch.rand(n, 1, generator=gen) < 0.5).to(x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip, w - 1 - cols, cols) + dx
    rows = torch.arange(h, device=x.device).expand(n, h) + dy
    i = torch.arange(n, device=x.device)[:, None, None]
    return padded[:, 0][i, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def run(args, variant, seed, train, test, device):
    torch.manual_seed(seed)
    model = SGEResNet([16, 32, 64], [1, 1, 1], [args.groups] * 3, block="basic", stem="small", stem_width=16, classes=10,
                      in_channels=1, use_sge=variant != "none")
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    x, y = train
    steps_per_epoch = len(y) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = int(0.2 * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            if args.augment:
                xb = augment(xb, gen)
            if step < warmup:
                lr = args.lr * (step + 1) / warmup
            else:
                lr = args.lr * 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1)))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    seconds = time.time() - start
    model.eval()
    correct = 0
    tx, ty = test
    with torch.no_grad():
        for i in range(0, len(ty), 256):
            correct += (model(tx[i:i + 256].to(device)).argmax(1).cpu() == ty[i:i + 256]).sum().item()
    return dict(variant=variant, seed=seed, epochs=args.epochs, augment=args.augment, train_images=len(y),
                test_accuracy=correct / len(ty), seconds=seconds, images_per_s=total * args.batch_size / seconds,
                device=str(device), torch=torch.__version__)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--variants", default="sge,none")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--groups", type=int, default=8, help="SGE groups in every stage (as `sge study --groups G`)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", dest="json_path")
    args = p.parse_args()
    device = torch.device(args.device)
    train = load(args.data, "train")
    if args.train_subset:
        train = (train[0][:args.train_subset], train[1][:args.train_subset])
    test = load(args.data, "t10k")
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            r = run(args, variant, seed, train, test, device)
            runs.append(r)
            print(f"{variant:5s} seed {seed}: test accuracy {100 * r['test_accuracy']:.2f}% "
                  f"({r['seconds']:.0f} s, {r['images_per_s']:.0f} images/s)", flush=True)
    for variant in args.variants.split(","):
        accs = [100 * r["test_accuracy"] for r in runs if r["variant"] == variant]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{variant}: {statistics.mean(accs):.2f} ± {sd:.2f} % over {len(accs)} seeds")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
