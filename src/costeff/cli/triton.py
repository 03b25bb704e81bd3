"""``costeff triton build`` and ``costeff triton validate``: the Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costeff.cli._common import add_common, emit, positive_float, positive_int, workspace
from costeff.cli.triton_serve import register_serving
from costeff.cli.triton_server import register_server


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("triton", help="write, check and serve the Triton model repository")
    verbs = parser.add_subparsers(dest="triton_command", metavar="VERB", required=True)
    b = verbs.add_parser("build", help="add version N+1 of <repository>/<name> (config.pbtxt pins it) from "
                          "measurements")
    b.add_argument("model", type=Path, metavar="MODEL", help="the ONNX model to serve")
    b.add_argument("--profile", type=Path, required=True, help="gpu_profile.json measured on MODEL")
    b.add_argument("--batching", type=Path, help="batching_report.json whose 'chosen' settings to use")
    b.add_argument("--repository", type=Path, help="model repository folder (default: $COSTEFF_MODEL_REPOSITORY "
                   "or docker/triton/model_repository)")
    b.add_argument("--name", help="model name in the repository (default: MODEL's file stem)")
    b.add_argument("--instance-kind", choices=("gpu", "cpu"), help="default: gpu when the profile saw a GPU")
    b.add_argument("--quantization-report", type=Path, help="quantization_report.json: allows TensorRT FP16 "
                   "on an fp32 model when its fp16 variant passed")
    b.add_argument("--serving-cpus", type=positive_float("--serving-cpus"), metavar="N",
                   help="CPU limit of the Triton container (e.g. 1.5); thread parameters are sized to it "
                   "(default: this host's usable CPUs, from affinity and the cgroup quota)")
    b.add_argument("--instances", type=positive_int("--instances"), default=1, metavar="K",
                   help="model instances in one Triton server (instance_group count; default: 1)")
    b.add_argument("--keep-versions", type=int, default=5, metavar="K",
                   help="versions left on disk after the build, the new one included (default: 5)")
    add_common(b, out=False)
    b.set_defaults(func=_build)
    v = verbs.add_parser("validate", help="check a config.pbtxt against Triton's schema and the ONNX model")
    v.add_argument("config", type=Path, metavar="CONFIG", help="config.pbtxt")
    v.add_argument("--model", type=Path, help="the ONNX model (default: the served version's model.onnx)")
    v.add_argument("--serving-cpus", type=positive_float("--serving-cpus"), metavar="N",
                   help="CPU limit of the Triton container that thread pools must fit in (default: the one "
                   "costeff_build.json records; without either, only the values are checked)")
    add_common(v, out=False)
    v.set_defaults(func=_validate)
    register_serving(verbs)
    register_server(verbs)


def _build(args: argparse.Namespace) -> int:
    from costeff.serving import BuildConfig, build_repository
    from costeff.serving.threads import describe

    here = workspace(args)
    config = BuildConfig(args.model, args.profile, here.repository, args.name,
                         args.batching, args.instance_kind, args.quantization_report,
                         keep_versions=args.keep_versions, serving_cpus=args.serving_cpus,
                         instances=args.instances)
    result = build_repository(config, workspace=here)

    def human() -> None:
        b = result.batching
        print(f"wrote {result.config_path} and {result.model_path} (version {result.version} serves; "
              f"on disk: {', '.join(map(str, result.versions_kept))})")
        print(f"  max_batch_size {b.max_batch_size}, preferred {list(b.preferred_batch_size)}, "
              f"queue delay {b.max_queue_delay_us} us, {b.instances} x KIND_{result.instance_kind.upper()}, "
              f"TensorRT {result.tensorrt_precision_mode or 'off'} ({result.accelerator_reason})")
        print(f"  threads: {describe(result.threads) if result.threads else 'not planned'}")
        for note in result.notes:
            print(f"  note: {note}", file=sys.stderr)

    emit(args, result, human)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from costeff.serving import validate_config

    report = validate_config(args.config, args.model, serving_cpus=args.serving_cpus)
    record = {"config_path": report.config_path, "model_path": report.model_path, "valid": report.valid,
              "model_precision": report.model_precision, "serving_cpus": report.serving_cpus,
              "problems": report.problems, "warnings": report.warnings}

    def human() -> None:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.valid:
            print(f"{report.config_path}: valid")
            return
        print(f"{report.config_path}: {len(report.problems)} problem(s)")
        for problem in report.problems:
            print(f"error: {report.config_path}: {problem}", file=sys.stderr)

    emit(args, record, human)
    return 0 if report.valid else 2
