#!/usr/bin/env python3
"""PyTorch weights in and out of sge (needs torch and safetensors: pip install torch safetensors).

  torch-weights.py to-safetensors MODEL.pth OUT.safetensors
      A PyTorch checkpoint (a state_dict, or a dict holding one under "state_dict"/"model"; a
      DataParallel "module." prefix is removed) as safetensors with the state_dict's own keys, which
      `sge import`, `sge infer --weights` and `sge train --weights` read.
  torch-weights.py load-sge CKPT.safetensors [--out MODEL.pth]
      Loads an sge checkpoint into the PyTorch SGE-ResNet of its stored configuration with
      load_state_dict(strict=True) (sge's optimizer momentum entries are left out), runs it once,
      and optionally saves the state_dict as .pth: sge's checkpoints load into PyTorch by name.
  torch-weights.py fixture --model resnet50 --width 4 --groups 4 --classes 10 --image-size 64 --out DIR
      An SGE-ResNet with random, non-trivial weights (BatchNorm running statistics, SGE gates) written
      as DIR/NAME.safetensors (PyTorch's state_dict: float32, int64 num_batches_tracked, SGE
      parameters (1, G, 1, 1)) and DIR/NAME.io.safetensors: `input` (float32), `logits_f64` (the
      same weights and input in float64) and `logits_f32` (float32, PyTorch's own rounding error).
      The test suite's fixtures under Tests/Fixtures/weights were made with this.
  torch-weights.py check --sge .build/release/sge [fixture options]
      Makes a fixture in a temporary folder, runs `sge infer` on it, and compares: sge's logits must
      be within 10x float32's own error (max |logits_f32 - logits_f64|) of the float64 logits. Then
      round-trips: `sge import` writes an sge checkpoint, which load-sge loads into PyTorch. Used for
      the full-size ResNet-50 (--width 64 --groups 64 --classes 1000 --image-size 224), outside the
      test suite.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sge_resnet import PRESETS, SGEResNet, randomize  # noqa: E402


def to_safetensors(args):
    obj = torch.load(args.pth, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    state = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        state[k[len("module."):] if k.startswith("module.") else k] = v.detach().contiguous()
    save_file(state, args.out)
    print(f"{args.out}: {len(state)} tensors")


def load_sge(args):
    with safe_open(args.checkpoint, framework="pt") as f:
        meta = f.metadata() or {}
        config = json.loads(meta["config"])
        state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("optimizer.")}
    model = SGEResNet.from_sge_config(config)
    expected = model.state_dict()
    for k, v in list(state.items()):
        if k in expected and v.shape != expected[k].shape and v.numel() == expected[k].numel():
            state[k] = v.reshape(expected[k].shape)
    for k in expected:  # sge does not count BatchNorm batches
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(state, strict=True)
    model.eval()
    size = 224 if config["stem"] == "imagenet" else 32
    with torch.no_grad():
        out = model(torch.randn(1, config["inputChannels"], size, size))
    print(f"{args.checkpoint}: {len(state)} tensors loaded into PyTorch with strict=True; logits {tuple(out.shape)}")
    if args.out:
        torch.save(model.state_dict(), args.out)
        print(f"wrote {args.out}")


def make_fixture(args, out_dir):
    torch.manual_seed(args.seed)
    model = randomize(SGEResNet.preset(args.model, classes=args.classes, width=args.width, groups=args.groups), args.seed).eval()
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g)
    with torch.no_grad():
        logits32 = model(x)
        logits64 = model.double()(x.double())
    model.float()
    name = args.name or f"sge_{args.model}_w{args.width}_g{args.groups}"
    weights = os.path.join(out_dir, name + ".safetensors")
    io = os.path.join(out_dir, name + ".io.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    save_file({"input": x.contiguous(), "logits_f64": logits64.contiguous(), "logits_f32": logits32.contiguous()}, io,
              metadata={"model": args.model, "width": str(args.width), "groups": str(args.groups), "classes": str(args.classes)})
    err32 = (logits32.double() - logits64).abs().max().item()
    print(f"{weights}: {sum(v.numel() for v in model.state_dict().values())} values; {io}: input {tuple(x.shape)}, "
          f"float32's own error {err32:.3g}")
    return weights, io


def check(args):
    with tempfile.TemporaryDirectory() as tmp:
        weights, io = make_fixture(args, tmp)
        out = os.path.join(tmp, "logits.safetensors")
        cmd = [args.sge, "infer", "--model", args.model, "--weights", weights, "--input", io, "--out", out]
        if args.device:
            cmd += ["--device", args.device]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        ref = load_file(io)
        got = load_file(out)["logits"].double()
        err32 = (ref["logits_f32"].double() - ref["logits_f64"]).abs().max().item()
        err = (got - ref["logits_f64"]).abs().max().item()
        ok = err <= 10 * err32
        print(f"sge vs float64: max |diff| {err:.3g}; float32's own error {err32:.3g}; bound 10x = {10 * err32:.3g}: "
              f"{'PASS' if ok else 'FAIL'}")
        ckpt = os.path.join(tmp, "imported.safetensors")
        subprocess.run([args.sge, "import", "--model", args.model, weights, "--out", ckpt], check=True)
        load_sge(argparse.Namespace(checkpoint=ckpt, out=None))
        if not ok:
            sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("to-safetensors")
    a.add_argument("pth")
    a.add_argument("out")
    b = sub.add_parser("load-sge")
    b.add_argument("checkpoint")
    b.add_argument("--out")
    for name in ("fixture", "check"):
        c = sub.add_parser(name)
        c.add_argument("--model", default="resnet50", choices=sorted(PRESETS))
        c.add_argument("--width", type=int, default=64)
        c.add_argument("--groups", type=int, default=64)
        c.add_argument("--classes", type=int, default=1000)
        c.add_argument("--image-size", type=int, default=224)
        c.add_argument("--batch", type=int, default=2)
        c.add_argument("--seed", type=int, default=1)
        c.add_argument("--name")
        if name == "fixture":
            c.add_argument("--out", required=True)
        else:
            c.add_argument("--sge", default=".build/release/sge")
            c.add_argument("--device")
    args = p.parse_args()
    if args.command == "to-safetensors":
        to_safetensors(args)
    elif args.command == "load-sge":
        load_sge(args)
    elif args.command == "fixture":
        os.makedirs(args.out, exist_ok=True)
        make_fixture(args, args.out)
    else:
        check(args)


if __name__ == "__main__":
    main()
