"""``costeff export SOURCE --out model.onnx``: a PyTorch policy to a checked ONNX file.

SOURCE is ``module:factory`` (a callable returning an ``nn.Module``) or a TorchScript
file; ``--preset NAME`` writes the embedded default policy instead, and
``--preset NAME --observations N --out obs.npy`` N seeded synthetic observations for it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable

from costeff.cli._common import add_common, emit, home, parse_int_list
from costeff.errors import InputError

OBSERVATION_SUFFIXES = (".npy", ".npz")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a PyTorch policy (module:factory or TorchScript) to checked ONNX")
    parser.add_argument("source", nargs="?", metavar="SOURCE",
                        help="module:factory returning an nn.Module, or a TorchScript .pt file")
    parser.add_argument("--preset", metavar="NAME",
                        help="write the embedded default policy of this preset (tiny, default, large) instead")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="the ONNX file to write (with --observations: the .npy or .npz)")
    parser.add_argument("--observations", type=_rows, metavar="N",
                        help="with --preset: write N seeded synthetic market observations shaped for that "
                             "policy (float32 [N, window, features]) instead of the policy, the input "
                             "`costeff quantize/profile MODEL --observations FILE` needs")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="seed of --observations (default: the one `costeff quantize` generates with, "
                             "which the embedded policy was not trained on)")
    parser.add_argument("--observation-shape", metavar="DIMS",
                        help="observation shape without the batch axis, e.g. 32,16 "
                             "(default: the model's observation_shape attribute)")
    parser.add_argument("--input-name", default="obs", help="name of the ONNX input (default: obs)")
    add_common(parser, out=False)
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    # The shared CLI logging setup leaves the root logger at WARNING; training progress
    # of a first-use build is INFO and should show.
    logging.getLogger("costeff.policy").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if bool(args.source) == bool(args.preset):
        raise InputError("export: give exactly one of SOURCE (module:factory or a .pt file) or --preset NAME")
    if args.observations is not None or args.seed is not None:
        return _observations(args)
    if args.out.suffix.lower() != ".onnx":
        raise InputError(f"--out: {args.out} must name an .onnx file")
    shape = tuple(parse_int_list(args.observation_shape, "--observation-shape")) \
        if args.observation_shape is not None else None
    record = _from_preset(args) if args.preset else _from_source(args, shape)
    emit(args, record, lambda: _print(record))
    return 0


def _rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--observations must be a whole number of rows, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--observations must be > 0 rows, got {value}")
    return value


def _observations(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from costeff.artifacts import atomic_write_bytes
    from costeff.cli.quantize import GENERATED_SEED
    from costeff.policy import generate_observations
    from costeff.policy.nets import preset_spec

    if not args.preset or args.observations is None:
        raise InputError("export: --observations N (and --seed) need --preset NAME: observations are generated "
                         "for an embedded policy's shape")
    if args.out.suffix.lower() not in OBSERVATION_SUFFIXES:
        raise InputError(f"--out: {args.out} must name a .npy or .npz file for --observations")
    preset_spec(args.preset)
    seed = GENERATED_SEED if args.seed is None else args.seed
    obs = generate_observations(args.observations, seed=seed, preset=args.preset)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, obs=obs) if args.out.suffix.lower() == ".npz" else np.save(buffer, obs)
    atomic_write_bytes(args.out, buffer.getvalue())
    record = {"observations_path": args.out, "rows": int(obs.shape[0]), "shape": list(obs.shape),
              "dtype": str(obs.dtype), "preset": args.preset, "seed": seed}
    emit(args, record, lambda: print(f"wrote {args.out}: {obs.shape[0]:,} synthetic market observations "
                                     f"float32 {list(obs.shape)} for preset {args.preset} (seed {seed})"))
    return 0


def _from_source(args: argparse.Namespace, shape: tuple[int, ...] | None) -> object:
    from costeff.policy.export import export_policy

    return export_policy(args.source, args.out, observation_shape=shape, input_name=args.input_name)


def _from_preset(args: argparse.Namespace) -> object:
    import shutil

    from costeff.artifacts import atomic_write_bytes
    from costeff.policy import default_policy
    from costeff.policy.nets import preset_spec

    preset_spec(args.preset)  # validate before any training starts
    artifact = default_policy(args.preset, cache=home(args).cache)
    atomic_write_bytes(args.out, artifact.onnx_path.read_bytes())
    shutil.copystat(artifact.onnx_path, args.out)
    return {"source": f"preset:{args.preset}", "onnx_path": args.out, "sha256": artifact.sha256,
            "n_params": artifact.n_params, "input_name": artifact.input_name,
            "observation_shape": artifact.observation_shape, "output_names": artifact.output_names,
            "max_abs_err": artifact.onnx_vs_torch_max_abs_err, "policy": artifact}


def _print(record: object) -> None:
    get: Callable[[str], Any] = record.get if isinstance(record, dict) else lambda k: getattr(record, k)
    print(f"wrote {get('onnx_path')} ({get('n_params'):,} parameters) from {get('source')}")
    print(f"  input  {get('input_name')} [batch, {', '.join(str(d) for d in get('observation_shape'))}]")
    print(f"  outputs {', '.join(get('output_names'))}; onnxruntime vs torch max abs err {get('max_abs_err'):.2g}")
    print(f"  sha256 {get('sha256')}")
