"""`python -m convmixer_lit.fit --model convmixer|vit|resnet18|resnet9|<your class>`: train one architecture."""

from __future__ import annotations

import sys

import torch

from convmixer_lit.cli import KitCLI, load_plugins, resolve_model_names
from convmixer_lit.configs import with_base_configs
from convmixer_lit.errors import UserError, exit_with
from convmixer_lit.kernels.allocator import keep_freed_memory


def main(args: list[str] | None = None) -> dict:
    """Parse flags/configs, train, print the result line; returns the run's summary (also in result.json)."""
    keep_freed_memory()  # before the first large tensor: no page-fault storm every step (kernels/allocator.py)
    try:
        load_plugins()
        cli = KitCLI(args=resolve_model_names(with_base_configs(sys.argv[1:] if args is None else args)))
        summary = cli.fit()
    except UserError as e:
        exit_with(e)
    except KeyboardInterrupt:
        print("\ninterrupted: resume with the same command plus --ckpt_path last", file=sys.stderr)
        raise SystemExit(130) from None
    log_dir = cli.trainer.log_dir  # a collective under DDP: every rank asks, only rank 0 prints
    if summary.get("best_val_acc") is not None and cli.trainer.is_global_zero:
        print(f"{summary['model']}: best val top-1 {100 * summary['best_val_acc']:.2f}% (epoch "
              f"{summary['best_epoch']}), final {100 * summary['final_val_acc']:.2f}%, "
              f"{summary['wall_time_s']:.0f} s, {summary['train_images_per_s']} train img/s\n"
              f"run folder: {log_dir}  (curves: tensorboard --logdir {log_dir})")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # else gloo's threads can abort the process at interpreter exit
    return summary


if __name__ == "__main__":
    main()
