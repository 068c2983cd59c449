"""torch_cpu_bench.py: PyTorch fp32 images/s of the reference CLIP vision model
(tests/reference/clip_ref.py) on a given safetensors weights file, for comparison with
bench/clip_bench on the same weights, batch and thread count."""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import clip_ref  # noqa: E402

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", required=True, help="directory with model.safetensors")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, tensors = clip_ref.read_model(args.weights)
    model = clip_ref.VisionRef(cfg)
    model.load(tensors)
    model.eval()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(args.batch, 3, cfg.image_size, cfg.image_size, generator=g) * 4 - 2
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            if i >= args.warmup:
                times.append(t1 - t0)
    med = statistics.median(times)
    res = {"backend": f"pytorch {torch.__version__} cpu {args.threads} threads fp32",
           "batch": args.batch, "iters": args.iters, "median_s": med,
           "images_per_s": args.batch / med}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"pytorch  {res['backend']}\nmedian   {med:.4f} s/batch  ->  {res['images_per_s']:.2f} images/s")


if __name__ == "__main__":
    main()
