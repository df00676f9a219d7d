#!/usr/bin/env python3
"""PyTorch's side of `wgpu-softmax bench --report`: times PyTorch (and Liger, QuACK and
Cut Cross-Entropy where they import) on the report's shapes with CUDA events and writes
JSON: {"versions": {...}, "results": [...]}.

    python3 compare.py --shapes torch_shapes.json --out torch_times.json [--runs 20]

The shapes file is what the report writes: {"rows": [{"op", "options", "dtype", "rows",
"cols"}], "linear": [{"rows", "hidden", "cols"}]}. Exits with status 2 and one line on
stderr when torch is missing or CUDA is unavailable. With PYTHONPATH=fake (a stand-in
torch whose ops do nothing and whose events tick 1 ms), it runs without CUDA: the CLI's
tests check the report's reading of it that way. It has not yet run on real CUDA.
"""

import argparse
import json
import sys


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", required=True, help="the report's shapes (JSON)")
    parser.add_argument("--out", required=True, help="where to write the times (JSON)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per shape (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    return args


def load_shapes(path):
    with open(path, encoding="utf-8") as f:
        shapes = json.load(f)
    if not isinstance(shapes, dict) or not isinstance(shapes.get("rows", []), list):
        raise ValueError(f"{path}: expected an object with a 'rows' list")
    return shapes.get("rows", []), shapes.get("linear", [])


def parse_options(options):
    """'mean grad ls=0.1' -> ('mean', True, 0.1); empty for the softmax ops."""
    reduction, grad, smoothing = "mean", True, 0.0
    for token in options.split():
        if token in ("mean", "sum", "none", "batchmean"):
            reduction = token
        elif token in ("grad", "loss"):
            grad = token == "grad"
        elif token.startswith("ls="):
            smoothing = float(token[3:])
    return reduction, grad, smoothing


def main(argv):
    args = parse_args(argv)
    rows, linear = load_shapes(args.shapes)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        print(f"compare.py: torch is not installed ({e})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("compare.py: torch has no CUDA device", file=sys.stderr)
        return 2

    def optional(importer):
        try:
            return importer()
        except Exception:  # any failure to import means: not on this machine
            return None

    liger = optional(lambda: __import__("liger_kernel.transformers", fromlist=["x"]))
    quack = optional(lambda: __import__("quack", fromlist=["x"]))
    cce = optional(lambda: __import__("cut_cross_entropy", fromlist=["x"]))
    device = torch.device("cuda")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "liger": liger is not None,
        "quack": quack is not None,
        "cut_cross_entropy": cce is not None,
    }

    def time(fn):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        times.sort()
        return times[len(times) // 2], times[min(len(times) - 1, -(-9 * len(times) // 10) - 1)]

    results = []

    def add(library, spec, fn, hidden=0):
        """Times fn(), or fn()() where fn is a factory (a library's loss module built first)."""
        result = dict(library=library, op=spec["op"], options=spec.get("options", ""), dtype=spec.get("dtype", "float32"),
                      rows=spec["rows"], cols=spec["cols"], hidden=hidden, median_ms=None, p90_ms=None, error=None)
        try:
            if getattr(fn, "factory", False):
                fn = fn()
            result["median_ms"], result["p90_ms"] = time(fn)
        except Exception as e:  # a library that refuses a shape or type: reported, not fatal
            result["error"] = f"{type(e).__name__}: {e}"[:200]
        results.append(result)

    generator = torch.Generator(device=device).manual_seed(0x5EED)
    for spec in rows:
        op, r, c, dt = spec["op"], spec["rows"], spec["cols"], dtypes[spec["dtype"]]
        reduction, grad, smoothing = parse_options(spec.get("options", ""))
        x = (torch.rand(r, c, device=device, generator=generator) * 16 - 8).to(dt)
        other = (torch.rand(r, c, device=device, generator=generator) * 16 - 8).to(dt)
        targets = torch.randint(0, c, (r,), device=device, generator=generator)
        if op == "softmax":
            add("torch", spec, lambda: torch.softmax(x, -1))
            if quack is not None:
                add("quack", spec, lambda: quack.softmax(x))
        elif op == "log_softmax":
            add("torch", spec, lambda: torch.log_softmax(x, -1))
        elif op == "softmax_backward":
            y = torch.softmax(x, -1)
            add("torch", spec, lambda: torch._softmax_backward_data(other, y, -1, dt))
        elif op == "cross_entropy":
            def torch_ce():
                logits = x.detach().requires_grad_(grad)
                loss = F.cross_entropy(logits, targets, reduction=reduction, label_smoothing=smoothing)
                if grad:
                    loss.sum().backward()
            add("torch", spec, torch_ce)
            if liger is not None:
                def liger_ce():
                    liger_loss = liger.LigerCrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)

                    def run():
                        logits = x.detach().requires_grad_(grad)
                        loss = liger_loss(logits, targets)
                        if grad:
                            loss.sum().backward()
                    return run
                liger_ce.factory = True
                add("liger", spec, liger_ce)
            if quack is not None and reduction == "mean" and smoothing == 0.0:
                def quack_ce():
                    logits = x.detach().requires_grad_(grad)
                    loss = quack.cross_entropy(logits, targets).mean()
                    if grad:
                        loss.backward()
                add("quack", spec, quack_ce)
        elif op == "distill":
            torch_reduction = reduction if reduction != "mean" else "batchmean"
            def torch_kl():
                student = x.detach().requires_grad_(grad)
                loss = F.kl_div(torch.log_softmax(student, -1), torch.log_softmax(other, -1),
                                reduction=torch_reduction, log_target=True)
                if grad:
                    loss.sum().backward()
            add("torch", spec, torch_kl)
        del x, other, targets
    for spec in linear:
        n, d, v = spec["rows"], spec["hidden"], spec["cols"]
        h = torch.randn(n, d, device=device, generator=generator) * 0.1
        w = torch.randn(v, d, device=device, generator=generator) * 0.1
        targets = torch.randint(0, v, (n,), device=device, generator=generator)
        case = dict(op="linear_cross_entropy", options="mean grad", dtype="float32", rows=n, cols=v)

        def torch_linear():
            hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
            F.cross_entropy(hh @ ww.T, targets).backward()
        add("torch", case, torch_linear, hidden=d)
        if liger is not None:
            def liger_fused_linear():
                liger_linear = liger.LigerFusedLinearCrossEntropyLoss()

                def run():
                    hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
                    liger_linear(ww, hh, targets).backward()
                return run
            liger_fused_linear.factory = True
            add("liger", case, liger_fused_linear, hidden=d)
        if cce is not None:
            def cce_linear():
                hh, ww = h.detach().requires_grad_(), w.detach().requires_grad_()
                cce.linear_cross_entropy(hh, ww, targets).backward()
            add("cut_cross_entropy", case, cce_linear, hidden=d)
        del h, w, targets
        torch.cuda.empty_cache()
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"versions": versions, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
