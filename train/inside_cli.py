"""``superpose export-trained CHECKPOINT -o FILE.safetensors [--force]``: a trained model for TransformerLens."""

from __future__ import annotations

import os

from superpose.files import OutputFileError

from .trainer import CHECKPOINT_FILES, load_checkpoint


class LensExtraError(OutputFileError):
    """The ``lens`` extra (safetensors, torch, transformer-lens) is not installed."""


def _cmd_export_trained(args) -> int:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        raise LensExtraError("export-trained needs the lens extra: pip install -e '.[lens]'") from None
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
    e.add_argument("--force", action="store_true", help="overwrite an existing output file")
    e.set_defaults(func=_cmd_export_trained)
