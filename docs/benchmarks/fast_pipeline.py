# Where the fast pipeline's time goes on one CPU core: per batch of 64 training images, reading canvases from the
# cache, drawing the crops, cutting + resizing + flipping them, and normalising to float, against the standard
# pipeline's decode + RandomResizedCrop + flip + normalise (median of 10 batches each).
# Run: python docs/benchmarks/fast_pipeline.py DATA_ROOT   (raw output: docs/benchmarks.md; the cache is built
# first, untimed, in the default cache folder)
import sys
import time

import torch

from convmixer_lit.data import ImagenetteDataModule, normalize
from convmixer_lit.fastdata import apply_crops


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


root = sys.argv[1] if len(sys.argv) > 1 else "data"
torch.manual_seed(0)
for size in (160, 64):
    dms = {p: ImagenetteDataModule(root=root, image_size=size, batch_size=64, num_workers=0, download=False,
                                   pipeline=p) for p in ("fast", "standard")}
    dms["fast"].prepare_data()  # builds the cache if needed (untimed, with the default workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for dm in dms.values():
        dm.setup("fit")
    fast, standard = (iter(dms[p].train_dataloader()) for p in ("fast", "standard"))
    stages = {"fast: read 64 canvases": [], "fast: draw crops": [], "fast: crop+resize+flip": [],
              "fast: normalise": [], "fast: all of the above": [], "standard: decode+crop+flip+normalise": []}
    for i in range(11):
        canvas, t_read = timed(next, fast)
        crops, t_plan = timed(dms["fast"].on_before_batch_transfer, canvas, 0)
        (images, _), t_crop = timed(apply_crops, crops, size)
        _, t_norm = timed(normalize, images)
        (batch, _), t_std = timed(next, standard)
        _, t_std_norm = timed(normalize, batch)
        if i:  # the first batch starts the loaders
            for name, t in zip(stages, (t_read, t_plan, t_crop, t_norm, t_read + t_plan + t_crop + t_norm,
                                        t_std + t_std_norm)):
                stages[name].append(t)
    for name, times in stages.items():
        ms = 1000 * sorted(times)[len(times) // 2]
        print(f"{size:3d}px {name:38s} {ms:7.2f} ms/batch  {64e3 / ms:8.0f} img/s", flush=True)
    torch.set_num_threads(threads)
