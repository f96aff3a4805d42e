#!/usr/bin/env python3
"""PyTorch CUDA timing of the SGE module at the shapes `sge bench sge` uses, for side-by-side numbers.

The module is PytorchInsight's SpatialGroupEnhance (the paper's reference code, written out below
so the kit needs nothing but torch). Timing follows `sge bench sge`: warm-up runs, then the median of
repeated runs timed with CUDA events (outputs come from PyTorch's caching allocator, so no run
pays for fresh device memory); bytes counted the
same way (forward: read x, write out, 2 x 4 bytes per element; backward: read x and grad_out, write
grad_x, 3 x 4 bytes per element). Backward is torch.autograd.grad of a retained forward graph, so it
times the backward kernels alone. The copy reference is a device-to-device copy of two float32
buffers of at least 1 GiB (bytes read + written), like sge's copy_float4 reference.

With --compile it also times torch.compile(module) (Inductor fuses the module's element-wise work;
compilation happens in the warm-up and is not timed).

Usage: torch-sge-bench.py [--shapes "8,256,56,56;..."] [--groups 64] [--repeats 50] [--compile] [--json FILE]
Prints a table; exits 3 (with a message) when torch or a CUDA device is missing.
"""
import argparse
import json
import os
import statistics
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="8,256,56,56;8,512,28,28;8,1024,14,14;8,2048,7,7")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(module) (Inductor)")
    args = parser.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError as error:
        print(f"torch-sge-bench: PyTorch is not importable ({error}); skipped", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("torch-sge-bench: torch.cuda.is_available() is False; skipped", file=sys.stderr)
        return 3

    # PytorchInsight's module, shared with the other PyTorch scripts (scripts/sge_resnet.py, copied
    # beside this file in the GPU kit).
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.join(here, "..")]
    from sge_resnet import SpatialGroupEnhance

    device = torch.device("cuda")

    def median_ms(fn):
        for _ in range(args.warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(args.repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    elements = 256 * 1024 * 1024  # 1 GiB per buffer
    src = torch.randn(elements, device=device)
    dst = torch.empty_like(src)
    copy_ms = median_ms(lambda: dst.copy_(src))
    copy_gbps = 2 * 4 * elements / copy_ms / 1e6
    del src, dst
    rows = [{"op": "copy", "direction": "limit", "shape": [elements], "ms": copy_ms, "gbps": copy_gbps}]
    name = torch.cuda.get_device_name(0)
    print(f"PyTorch {torch.__version__} on {name}: copy {copy_gbps:.1f} GB/s (2 x 1 GiB float32, median of {args.repeats})")
    print(f"{'shape':>18} {'G':>4} {'direction':>9} {'impl':>15} {'ms':>9} {'GB/s':>8} {'of copy':>8}")
    if args.compile:
        # Timing backward alone re-runs it on a retained graph, which compiled backward functions
        # refuse while they donate (reuse) their saved buffers.
        import torch._functorch.config
        torch._functorch.config.donated_buffer = False
    torch.manual_seed(0)
    for text in args.shapes.split(";"):
        n, c, h, w = (int(v) for v in text.split(","))
        module = SpatialGroupEnhance(args.groups).to(device)
        with torch.no_grad():  # a non-trivial gate, as after training; the work is the same
            module.weight.normal_()
            module.bias.normal_()
        x = torch.randn(n, c, h, w, device=device, requires_grad=True)
        grad = torch.randn(n, c, h, w, device=device)
        params = [x, module.weight, module.bias]
        variants = [("pytorch-eager", module)]
        if args.compile:
            # A fresh static-shape compilation per shape: dynamo otherwise turns the second shape's
            # recompilation into dynamic-shape kernels and, past its cache limit, falls back to eager.
            torch._dynamo.reset()
            variants.append(("pytorch-compile", torch.compile(module, dynamic=False)))
        for impl, fn in variants:
            with torch.no_grad():
                forward_ms = median_ms(lambda: fn(x))
            out = fn(x)
            backward_ms = median_ms(lambda: torch.autograd.grad(out, params, grad, retain_graph=True))
            size = n * c * h * w * 4
            for direction, ms, nbytes in (("forward", forward_ms, 2 * size), ("backward", backward_ms, 3 * size)):
                gbps = nbytes / ms / 1e6
                rows.append({"op": "sge", "impl": impl, "direction": direction, "shape": [n, c, h, w],
                             "groups": args.groups, "ms": ms, "gbps": gbps, "fraction_of_copy": gbps / copy_gbps})
                print(f"{text:>18} {args.groups:>4} {direction:>9} {impl:>15} {ms:9.4f} {gbps:8.1f} {gbps / copy_gbps:8.1%}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
