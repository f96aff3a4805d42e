#!/usr/bin/env python3
"""PyTorch timing of sge's training step (and, with --conv, of sge's conv cases) for side-by-side numbers.

Models: sge's SGE-ResNet presets written out in PyTorch layer for layer (Sources/SGENet/ResNet.swift,
Layers.swift), with sge's state_dict names:
  small     input 1x28x28; stem conv3x3 1->16 stride 1 pad 1 (no bias) + BN + ReLU; stages of widths
            16/32/64 with 1 basic block each (the first block of stages 2 and 3 has stride 2 in its
            first 3x3 conv); SGE with 4/8/8 groups after each block's last BN, before the residual
            add; downsample = conv1x1 stride s (no bias) + BN where the shape changes; global average
            pool; fc 64->10 (with bias). 77,794 parameters.
  resnet20  the same with input 3x32x32 and 3 basic blocks per stage. 272,594 parameters.
  resnet18, resnet34, resnet50, resnet101
            the ImageNet presets (scripts/sge_resnet.py, torchvision v1.5 layout with SGE G = 64 in every
            block), input 3x224x224 (--image-size), 1000 classes, as `sge bench step --model M --classes 1000`.
            SGE-ResNet-50: 25,559,080 parameters.
The SGE module is PytorchInsight's SpatialGroupEnhance (the paper's reference code, as in
torch-sge-bench.py). Conv weights: kaiming_normal_(fan_out, relu) as sge; BN 1/0; SGE weight 0, bias 1
(sge's defaults); fc PyTorch's default.

One training step, as `sge bench step`: forward in train mode, cross-entropy, backward,
torch.optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4).step(), zero_grad(), loss.item() (sge reads
the loss back every step). The data is one fixed synthetic batch made once on the device (uniform
-1..1, label i % classes); sge uploads its batch every step (included in its wall time). Each step is
timed with the wall clock from its start to loss.item() returning (which waits for the GPU); the
median is sge's (the upper middle value for an even count). On CUDA, cudnn.benchmark=True.
Known differences, all small: sge's backward also computes the gradient of the input images (the
stem conv's grad input; --input-grad does that here too) and counts correct predictions; zero_grad()
here sets gradients to None (PyTorch's default) where sge fills them with zeros; ReLUs are in place.

Modes: eager, compile (torch.compile(model): forward and backward compiled, the optimizer eager;
compilation happens in the warm-up and is not timed; a failure is reported in its row).
Precision (CUDA): fp32 = strict fp32 (torch.backends.cuda.matmul.allow_tf32 = False,
torch.backends.cudnn.allow_tf32 = False); default = the installed PyTorch's defaults (the flags in
effect are printed and stored; PyTorch's defaults let cuDNN convolutions use TF32). On CPU only fp32.

--conv also times sge's `sge bench conv` cases: conv 3x3 64->64 pad 1 and 1x1 256->64 (with bias), on
N x Cin x 56 x 56 (N = --conv-batch, 8), forward; backward = grad input + grad weight + grad bias
(torch.autograd.grad); backward gw only; and a plain matmul of the conv's GEMM size (M = Cout,
N = OH*OW*batch, K = Cin*KH*KW). FLOPs per direction 2*N*Cout*Cin*KH*KW*OH*OW (backward: 2x forward).
Medians of --conv-repeats after --conv-warmup, interleaved round-robin as sge does.

Usage: torch-train-bench.py [--device cpu|cuda] [--models small,resnet20] [--batch-size 128]
         [--steps 20] [--warmup 5] [--modes eager,compile] [--precision fp32,default] [--threads N]
         [--conv] [--json FILE]
Exits 3 (with a message) when torch is not importable or --device cuda has no CUDA device.
"""
import argparse
import json
import math
import platform
import sys
import time

CONFIGS = {
    # name: (input channels, image size, stem width, widths, blocks per stage, SGE groups, classes)
    "small": (1, 28, 16, [16, 32, 64], [1, 1, 1], [4, 8, 8], 10),
    "resnet20": (3, 32, 16, [16, 32, 64], [3, 3, 3], [4, 8, 8], 10),
}
# Parameter counts of sge's models (sge train prints them): a mismatch means the model differs.
EXPECTED_PARAMS = {"small": 77794, "resnet20": 272594, "resnet18": 11690536, "resnet34": 21799720, "resnet50": 25559080,
                   "resnet101": 44553384}
IMAGENET = ("resnet18", "resnet34", "resnet50", "resnet101")


def sge_median(values):
    s = sorted(values)
    return s[len(s) // 2] if s else math.nan


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    parser.add_argument("--models", default="small,resnet20", help="comma-separated: small, resnet20, resnet18, resnet34, resnet50, resnet101 (none: skip)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, help="default: 28 for small, 32 for resnet20")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile mode compiles here)")
    parser.add_argument("--modes", default="eager,compile", help="comma-separated: eager, compile")
    parser.add_argument("--precision", default="fp32,default", help="comma-separated: fp32, default (CUDA only)")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--input-grad", action="store_true", help="also compute the input images' gradient, as sge does")
    parser.add_argument("--conv", action="store_true", help="also time sge's `bench conv` cases")
    parser.add_argument("--conv-batch", type=int, default=8)
    parser.add_argument("--conv-size", type=int, default=56)
    parser.add_argument("--conv-repeats", type=int, default=5)
    parser.add_argument("--conv-warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", dest="json_path", help="write the rows as a JSON list")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m and m != "none"]
    args.modes = [m for m in args.modes.split(",") if m]
    args.precision = [p for p in args.precision.split(",") if p]
    for m in args.models:
        if m not in CONFIGS and m not in IMAGENET:
            parser.error(f"--models: unknown model {m!r} (small, resnet20)")
    for m in args.modes:
        if m not in ("eager", "compile"):
            parser.error(f"--modes: unknown mode {m!r} (eager, compile)")
    for p in args.precision:
        if p not in ("fp32", "default"):
            parser.error(f"--precision: unknown precision {p!r} (fp32, default)")
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch-size and --steps must be >= 1 and --warmup >= 0")
    return args


def build_model(torch, nn, name, image_size):
    if name in IMAGENET:
        import os
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from sge_resnet import SGEResNet as ImageNetSGEResNet
        model = ImageNetSGEResNet.preset(name, classes=1000, width=64, groups=64)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        size = image_size or 224
        return model, (3, size, size), 1000
    channels, default_size, stem_width, widths, blocks, groups, classes = CONFIGS[name]
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sge_resnet import SGEResNet  # sge's layout, PytorchInsight's SGE module
    model = SGEResNet(widths, blocks, groups, block="basic", stem="small", stem_width=stem_width, classes=classes,
                      in_channels=channels)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    size = image_size or default_size
    return model, (channels, size, size), classes


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError as error:
        print(f"torch-train-bench: PyTorch is not importable ({error}); skipped", file=sys.stderr)
        return 3

    def fp32_precision():  # PyTorch >= 2.9's per-backend setting, where it exists (informational)
        out = {}
        for key, get in (("matmul_fp32_precision", lambda: torch.backends.cuda.matmul.fp32_precision),
                         ("cudnn_conv_fp32_precision", lambda: torch.backends.cudnn.conv.fp32_precision)):
            try:
                out[key] = str(get())
            except Exception:  # noqa: BLE001 - older PyTorch
                pass
        return out

    device_kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        print("torch-train-bench: --device cuda but torch.cuda.is_available() is False; skipped", file=sys.stderr)
        return 3
    device = torch.device(device_kind)
    cuda = device_kind == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        device_name = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
        default_flags = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
        precisions = args.precision
    else:
        device_name = cpu_name()
        default_flags = None
        precisions = ["fp32"]  # one precision on CPU (default = fp32 there)
        if args.precision != ["fp32"]:
            print("note: on CPU only fp32 applies (PyTorch's default there is fp32); precision 'default' skipped")
    cudnn_benchmark = bool(torch.backends.cudnn.benchmark) if cuda else None
    print(f"PyTorch {torch.__version__} on {device_name} ({device_kind}"
          + (f", cuDNN {torch.backends.cudnn.version()}, cudnn.benchmark=True" if cuda else f", {torch.get_num_threads()} threads") + ")")
    if cuda:
        print(f"PyTorch default TF32 flags here: cuda.matmul.allow_tf32={default_flags['matmul']}, "
              f"cudnn.allow_tf32={default_flags['cudnn']} (precision 'default' uses these; 'fp32' sets both False)"
              + "".join(f", {k}={v}" for k, v in fp32_precision().items()))

    def set_precision(p):
        if not cuda:
            return None
        if p == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        else:
            torch.backends.cuda.matmul.allow_tf32 = default_flags["matmul"]
            torch.backends.cudnn.allow_tf32 = default_flags["cudnn"]
        flags = {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "cudnn": bool(torch.backends.cudnn.allow_tf32)}
        flags.update(fp32_precision())
        return flags

    def sync():
        if cuda:
            torch.cuda.synchronize()

    rows = []
    common = {"device": device_kind, "device_name": device_name, "torch_version": torch.__version__,
              "cudnn_benchmark": cudnn_benchmark, "threads": None if cuda else torch.get_num_threads()}
    header = f"{'model':>9} {'batch':>5} {'input':>8} {'mode':>7} {'precision':>9} {'images/s':>10} {'ms median':>9} {'min':>8} {'max':>8} {'params':>8}"
    if args.models:
        print(f"training step: forward, cross-entropy, backward, SGD(lr 0.01, momentum 0.9, wd 5e-4), zero_grad, loss.item(); "
              f"median of {args.steps} after {args.warmup} warm-up")
        print(header)
    def train_row(name, precision, mode):
        """Times one configuration; its model, optimizer and data go when this returns."""
        flags = set_precision(precision)
        torch.manual_seed(args.seed)
        model, input_shape, classes = build_model(torch, nn, name, args.image_size)
        model = model.to(device).train()
        params = sum(p.numel() for p in model.parameters())
        row = dict(common, op="train_step", model=name, batch=args.batch_size, input_shape=list(input_shape), mode=mode,
                   precision=precision, allow_tf32=flags, params=params, steps=args.steps, warmup=args.warmup,
                   input_grad=args.input_grad,
                   images_per_s=None, ms_median=None, ms_min=None, ms_max=None, error=None)
        if params != EXPECTED_PARAMS[name]:
            print(f"warning: {name} has {params} parameters here, sge's has {EXPECTED_PARAMS[name]}", file=sys.stderr)
        x = torch.rand((args.batch_size, *input_shape), device=device) * 2 - 1
        if args.input_grad:
            x.requires_grad_(True)
        y = torch.arange(args.batch_size, device=device) % classes
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        net = model
        try:
            if mode == "compile":
                torch._dynamo.reset()
                net = torch.compile(model)

            def train_step():
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                x.grad = None
                return loss.item()

            for _ in range(args.warmup):
                train_step()
            sync()
            times, loss = [], math.nan
            for _ in range(args.steps):
                t0 = time.perf_counter()
                loss = train_step()
                times.append((time.perf_counter() - t0) * 1e3)
            if not math.isfinite(loss):
                raise RuntimeError(f"the loss is {loss}")
            med = sge_median(times)
            row.update(ms_median=med, ms_min=min(times), ms_max=max(times), images_per_s=args.batch_size / med * 1e3,
                       loss_last=loss)
        except Exception as error:  # noqa: BLE001 - report (compile) failures in the row and go on
            text = f"{type(error).__name__}: {error}".strip()
            row["error"] = text.splitlines()[0][:400] if text else type(error).__name__
        return row

    for name in args.models:
        for precision in precisions:
            for mode in args.modes:
                row = train_row(name, precision, mode)
                rows.append(row)
                lead = f"{name:>9} {args.batch_size:>5} {'x'.join(map(str, row['input_shape'])):>8} {mode:>7} {precision:>9}"
                if row["error"]:
                    print(f"{lead}  FAILED: {row['error']}")
                else:
                    print(f"{lead} {row['images_per_s']:10.1f} {row['ms_median']:9.2f} {row['ms_min']:8.2f} {row['ms_max']:8.2f} "
                          f"{row['params']:>8}")
                sys.stdout.flush()
                if cuda:
                    torch.cuda.empty_cache()
    if args.conv:
        for precision in precisions:
            flags = set_precision(precision)
            rows += conv_bench(torch, F, args, device, sync, dict(common, precision=precision, allow_tf32=flags))
    if cuda:
        set_precision("default")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(rows, f, indent=1)
    failed = [r for r in rows if r.get("error")]
    return 1 if rows and len(failed) == len(rows) else 0


def conv_bench(torch, F, args, device, sync, common):
    """sge bench conv's cases (Sources/sge/BenchConvCommand.swift), median wall ms per call + sync."""
    n, size = args.conv_batch, args.conv_size
    rows = []
    print(f"conv ({common['precision']}): batch {n}, {size}x{size}, median of {args.conv_repeats} (after {args.conv_warmup} warm-up); "
          "FLOPs 2*N*Cout*Cin*KH*KW*OH*OW per direction")
    for name, cin, cout, k, pad in (("3x3 64->64 pad 1", 64, 64, 3, 1), ("1x1 256->64", 256, 64, 1, 0)):
        g = torch.Generator(device="cpu").manual_seed(42)
        x = (torch.rand(n, cin, size, size, generator=g) * 2 - 1).to(device).requires_grad_(True)
        w = (torch.randn(cout, cin, k, k, generator=g) * 0.05).to(device).requires_grad_(True)
        b = (torch.rand(cout, generator=g) * 2 - 1).to(device).requires_grad_(True)
        oh = ow = size + 2 * pad - k + 1
        go = (torch.rand(n, cout, oh, ow, generator=g) * 2 - 1).to(device)
        flops = 2.0 * n * cout * cin * k * k * oh * ow
        out = F.conv2d(x, w, b, padding=pad)
        m_, n_, k_ = cout, oh * ow * n, cin * k * k
        a_mat = torch.rand(m_, k_, device=device) * 2 - 1
        b_mat = torch.rand(k_, n_, device=device) * 2 - 1

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, b, padding=pad)

        measurements = [
            ("forward", flops, forward),
            ("backward (gx + gw + gb)", 2 * flops, lambda: torch.autograd.grad(out, [x, w, b], go, retain_graph=True)),
            ("backward gw only", flops, lambda: torch.autograd.grad(out, [w], go, retain_graph=True)),
            (f"matmul M={m_} N={n_} K={k_}", flops, lambda: torch.mm(a_mat, b_mat)),
        ]
        for _, _, fn in measurements:
            for _ in range(args.conv_warmup):
                fn()
                sync()
        samples = [[] for _ in measurements]
        for _ in range(args.conv_repeats):
            for i, (_, _, fn) in enumerate(measurements):
                t0 = time.perf_counter()
                fn()
                sync()
                samples[i].append((time.perf_counter() - t0) * 1e3)
        peak = None
        for (what, fl, _), s in zip(measurements, samples):
            ms = sge_median(s)
            gflops = fl / (ms * 1e6)
            if what.startswith("matmul"):
                peak = gflops
            rows.append(dict(common, op="conv", model=name, what=what, batch=n, input_shape=[cin, size, size], mode="eager",
                             ms_median=ms, ms_min=min(s), ms_max=max(s), gflops=gflops, flops=fl, images_per_s=None, params=None))
        for r in rows[-len(measurements):]:
            r["of_matmul"] = r["gflops"] / peak if peak else None
            print(f"  {name:<18} {r['what']:<36} {r['ms_median']:9.3f} ms {r['gflops']:9.1f} GFLOP/s {r['of_matmul']:6.0%} of matmul")
    return rows


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


if __name__ == "__main__":
    sys.exit(main())
