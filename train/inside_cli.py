"""``superpose export-trained CHECKPOINT -o FILE.safetensors [--force]``: a trained model for TransformerLens."""

from __future__ import annotations

import os

from superpose.commands import add_force_option, require_extra

from .trainer import CHECKPOINT_FILES, load_checkpoint


def _cmd_export_trained(args) -> int:
    for module in ("safetensors", "torch"):
        require_extra(module, "lens", "export-trained")
    from .hooked import save_trained_safetensors

    run = load_checkpoint(args.checkpoint)
    save_trained_safetensors(run, args.output, force=args.force,
                             inputs=[os.path.join(args.checkpoint, name) for name in CHECKPOINT_FILES])
    print(f"wrote {args.output}: step {run.step}, {run.config.n_layers} layers, d_model {run.config.d_model}; "
          "load it with superpose.train.hooked.load_trained_hooked_transformer")
    return 0


def register(subparsers) -> None:
    e = subparsers.add_parser("export-trained",
                              help="a trained checkpoint as safetensors in TransformerLens's names (HookedTransformer)")
    e.add_argument("checkpoint", help="checkpoint directory from `superpose train`")
    e.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    add_force_option(e)
    e.set_defaults(func=_cmd_export_trained)
