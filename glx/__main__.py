"""Command line: ``python -m glx train ...`` runs GLS or SGD and writes a JSON record.

    python -m glx train --method gls --dataset digits --model mlp --pop 4 --generations 40 \
        --seed 0 --out run.json
    python -m glx train --method sgd --dataset digits --model mlp --generations 10 --out sgd.json
    python -m glx train --dataset cifar10 --download ...   # torchvision fetches it (internet)
    python -m glx budget --epochs 200 --pop 4
    python -m glx evolve --method snes|sep_cma|openai_es|ga --dataset digits --model mlp \
        --seed 0 --out run.json
    python -m glx decode run.json --out weights.pt    # a GA run's network from its seeds alone

Every field of :class:`glx.gls.Config` is a flag (``--momentum-policy inherit``,
``--tie-rule as_released``, ``--selection-data holdout``, ``--checkpoint ck.pt --resume``...).

Under torchrun one population is spread over the ranks (``glx.distributed``), with the same
result as one process; rank 0 writes the record, the checkpoint and the model::

    torchrun --standalone --nproc-per-node 2 -m glx train --pop 4 --generations 40 --out run.json

A mistake in the command (a malformed or unknown value, a dataset that is not on disk, a
damaged tarball, an output path that cannot be written) ends with one line on stderr and exit
status 2, before any training starts; a run that fails (a download, a loss that diverged, a
file the system will not read or write) exits 1. Set ``GLX_TRACEBACK=1`` to see the Python
traceback behind such a line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import typing
import zipfile
from pathlib import Path

from glx import evolve as gevolve
from glx import gls


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # one line instead of argparse's usage block: the flag and the bad value, then where
        # to look
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """A mistake in the command: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _number(text: str) -> int | float:
    """An int where the text is a whole number (``2`` or ``2.0``), otherwise a float."""
    value = float(text)
    return int(value) if value.is_integer() else value


_number.__name__ = "number"  # argparse names the type in its message


def _optional(kind):  # "none" -> None, otherwise kind(text)
    def parse(text: str):
        return None if text.strip().lower() in ("none", "auto") else kind(text)
    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names it in its message
    return parse


def _add_config_flags(parser: argparse.ArgumentParser, config: type = gls.Config) -> None:
    """One flag per Config field, typed from its annotation, defaulting to the Config default."""
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint)
        if base is bool and type(None) not in args:
            parser.add_argument(flag, nargs="?", const=True, default=f.default, type=_parse_bool,
                                metavar="BOOL")
            continue
        kind = {bool: _parse_bool, int: int, float: float, str: str}.get(base, str)
        if int in args and float in args:  # e.g. generations: SGD takes fractional epochs
            kind = _number
        parse = _optional(kind) if type(None) in args else kind
        parser.add_argument(flag, type=parse, default=f.default,
                            metavar=f.name.upper())


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m glx", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train GLS or SGD and write a JSON record")
    _add_config_flags(train)
    train.add_argument("--paper-epochs", type=int, default=None,
                       help="set the budget from epochs: gls -> epochs x (pop+1) generations "
                            "(the paper's), sgd -> epochs")
    train.add_argument("--download", action="store_true",
                       help="fetch a torchvision dataset (cifar10, cifar100, svhn) into "
                            "--data-root if it is not there (needs internet)")
    train.add_argument("--out", type=Path, default=None, help="write the run record here (JSON)")
    train.add_argument("--save-model", type=Path, default=None,
                       help="save the final parent's state_dict here")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                       help="under torchrun: how long a collective step waits for the other "
                            "ranks before the job ends with an error")
    train.add_argument("--dist-backend", default="auto", choices=("auto", "gloo", "nccl"),
                       help="under torchrun: gloo (CPU) or nccl (CUDA); auto follows the device")
    train.set_defaults(command_fn=_train)

    budget = sub.add_parser("budget", help="print the steps and epochs of the paper's GLS "
                                           "budget and of each matched SGD arm")
    budget.add_argument("--epochs", type=int, required=True, help="E: GLS runs E x (pop+1) "
                        "generations")
    budget.add_argument("--pop", type=int, default=4)
    budget.add_argument("--n-train", type=int, default=50_000,
                        help="training images dealt per generation (default: CIFAR-10's)")
    budget.add_argument("--batch-size", type=int, default=64, help="GLS's per-child batch")
    budget.add_argument("--sgd-batch", type=int, default=None,
                        help="the SGD arms' batch (default: --batch-size; 128 is the paper's)")
    budget.add_argument("--last-round", default="drop", choices=gls.LAST_ROUNDS)
    budget.set_defaults(command_fn=_budget)

    evolve = sub.add_parser("evolve", help="train with an ES or the Deep GA; write a JSON record")
    _add_config_flags(evolve, gevolve.Config)
    evolve.add_argument("--out", type=Path, default=None, help="write the run record here (JSON)")
    evolve.set_defaults(command_fn=_evolve)
    decode = sub.add_parser("decode", help="rebuild a GA run's network from its genome alone, "
                                           "print its test accuracy, save its state_dict")
    decode.add_argument("record", type=Path, help="the record written by `evolve --method ga`")
    decode.add_argument("--out", type=Path, default=None, help="save the state_dict here")
    decode.set_defaults(command_fn=_decode)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    try:
        return args.command_fn(args)
    except (UsageError, ValueError, OSError) as err:
        if os.environ.get("GLX_TRACEBACK"):
            raise
        _error(err)
        if isinstance(err, UsageError):
            return err.code
        return 1 if isinstance(err, OSError) else 2  # the system said no, or a bad value
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _error(message: object) -> None:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)  # always one line


# ----------------------------------------------------------------------------- budget


def _budget(args: argparse.Namespace) -> int:
    try:
        generations = gls.paper_generations(args.epochs, args.pop)
        arms = gls.budget(generations, args.pop, args.n_train, args.batch_size,
                          sgd_batch=args.sgd_batch, last_round=args.last_round)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({
        "gls_generations": generations,
        "sgd_epochs": {m: gls.sgd_epochs(generations, args.pop, m) for m in gls.MATCHES},
        "arms": arms,
    }, indent=1))
    return 0


# ----------------------------------------------------------------------------- evolve, decode


def _evolve(args: argparse.Namespace) -> int:
    from glx.fileio import atomic_write_text

    fields = {f.name for f in dataclasses.fields(gevolve.Config)}
    cfg = gevolve.Config(**{k: v for k, v in vars(args).items() if k in fields})
    cfg.validate()
    if args.out is not None:
        _check_writable("--out", args.out)
    record = gevolve.run(cfg)
    if args.out:
        atomic_write_text(args.out, json.dumps(record, indent=1))
    summary = {"test_accuracy": record["test_accuracy"],
               "wall_seconds": round(record["wall_seconds"], 2),
               "generations": len(record["history"])}
    if "genome" in record:
        summary.update(genome_length=len(record["genome"]),
                       compression=round(record["compression"], 1))
    print(json.dumps(summary))
    return 0


def _decode(args: argparse.Namespace) -> int:
    import torch

    from glx.fileio import atomic_write

    if args.out is not None:
        _check_writable("--out", args.out)
    try:
        record = json.loads(args.record.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"record={str(args.record)!r}: cannot read a JSON record "
                         f"({err})") from None
    theta, acc, fm = gevolve.decode_record(record)
    if args.out:
        state = fm.module(theta).state_dict()
        atomic_write(args.out, lambda f: torch.save(state, f))
    print(acc)
    return 0


# ----------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    cfg = _config(args)
    _check_outputs(args, cfg)
    data = _load_data(cfg, args)
    if "WORLD_SIZE" in os.environ:  # started by torchrun: one population over its ranks
        return _train_distributed(cfg, data, args)
    try:
        trainer = gls.Trainer(cfg, data=data)
        run = trainer.run(progress=not args.quiet)
    except gls.NonFiniteLoss as err:
        _nonfinite(err, cfg, args)
        return 1
    _write(run, args)
    return 0


def _nonfinite(err: gls.NonFiniteLoss, cfg: gls.Config, args: argparse.Namespace) -> None:
    _error(err)
    if args.out:
        from glx.fileio import atomic_write_text

        record = {"config": cfg.to_dict(), "history": err.history, "test_accuracy": None,
                  "wall_seconds": None, "error": str(err)}
        atomic_write_text(args.out, json.dumps(record, indent=1))


def _train_distributed(cfg: gls.Config, data, args: argparse.Namespace) -> int:
    """One population over torchrun's ranks (glx.distributed); rank 0 writes and prints."""
    from glx import distributed as gdist

    rank = os.environ.get("RANK", "?")
    try:
        launch = gdist.detect()
        group = gdist.init(launch, cfg.device, backend=args.dist_backend, pop=cfg.pop,
                           timeout_s=args.dist_timeout)
        trainer = gdist.DistributedTrainer(cfg, group, data=data)
        run = trainer.run(progress=not args.quiet and group.rank == 0)
    except ValueError as err:
        raise ValueError(f"rank {rank}: {err}") from None
    except gdist.RankFailure as err:
        _error(err)
        return 3
    except gls.NonFiniteLoss as err:
        if rank == "0":
            _nonfinite(err, cfg, args)
        return 1
    if group.rank == 0:
        _write(run, args)
    gdist.finish()
    return 0


def _write(run: gls.Run, args: argparse.Namespace) -> None:
    """The run's record (--out), its model (--save-model) and a one-line summary."""
    if args.out:
        run.save(args.out)
    if args.save_model:
        import torch

        from glx.fileio import atomic_write

        state = run.model.state_dict()
        atomic_write(args.save_model, lambda f: torch.save(state, f))
    print(json.dumps({"test_accuracy": run.test_accuracy, "wall_seconds": round(run.wall_seconds, 2),
                      "generations": len(run.history), "path": run.path,
                      "path_reason": run.path_reason, "device": run.device,
                      "world_size": run.world_size}))


def _config(args: argparse.Namespace) -> gls.Config:
    """The run's Config from the flags, checked before anything is loaded."""
    fields = {f.name for f in dataclasses.fields(gls.Config)}
    cfg = gls.Config(**{k: v for k, v in vars(args).items() if k in fields})
    if args.paper_epochs is not None:
        if args.paper_epochs < 1:
            raise UsageError(f"--paper-epochs={args.paper_epochs}: must be >= 1")
        cfg.generations = (gls.paper_generations(args.paper_epochs, cfg.pop)
                           if cfg.method == "gls" else args.paper_epochs)
    cfg.validate()
    from glx import models as gmodels

    if cfg.model not in gmodels.NAMES:
        raise UsageError(f"--model={cfg.model!r}: expected one of {', '.join(gmodels.NAMES)}")
    _check_device(cfg.device)
    return cfg


def _check_device(name: str) -> None:
    if name == "auto":
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device={name!r}: not a device; use auto, cpu, cuda, cuda:N "
                         f"or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device={name!r}: CUDA is not available on this machine; "
                             f"use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise UsageError(f"--device={name!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device={name!r}: MPS is not available on this machine")


def _check_writable(flag: str, path: str | os.PathLike) -> None:
    """Fail now, not after training, if ``path`` cannot be written (folders are created)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"{flag}={str(path)!r}: is a directory; give a file name")
    folder = target.parent
    try:
        while not folder.exists():  # the first folder that exists is where one gets created
            folder = folder.parent
    except OSError as err:
        raise UsageError(f"{flag}={str(path)!r}: cannot reach {str(folder)!r} ({err})") from None
    if not folder.is_dir():
        raise UsageError(f"{flag}={str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}={str(path)!r}: no permission to write in {str(folder)!r}")


def _check_outputs(args: argparse.Namespace, cfg: gls.Config) -> None:
    for flag, path in (("--out", args.out), ("--save-model", args.save_model),
                       ("--checkpoint", cfg.checkpoint)):
        if path is not None:
            _check_writable(flag, path)
    if cfg.resume and not cfg.checkpoint:
        raise UsageError("--resume: needs --checkpoint PATH (the file to resume from)")
    if cfg.resume and Path(cfg.checkpoint).is_file():
        if not os.access(cfg.checkpoint, os.R_OK):
            raise UsageError(f"--checkpoint={cfg.checkpoint!r}: no permission to read it")
        if not zipfile.is_zipfile(cfg.checkpoint):  # torch.save writes a zip archive
            raise UsageError(f"--checkpoint={cfg.checkpoint!r}: not a glx checkpoint (damaged, "
                             f"or some other file); move it away to start afresh")


_LAYOUT = ("an ImageFolder copy: a directory or .tar/.tar.gz holding train/<class>/<image> and "
           "test/<class>/<image>")


def _load_data(cfg: gls.Config, args: argparse.Namespace):
    """The dataset the run names, or one line that says how to get it."""
    from glx import data as gdata

    name, root = cfg.dataset, cfg.data_root
    torchvision_set = name.lower() in gdata.TORCHVISION_NAMES
    try:
        return gdata.load(name, root=root, download=args.download and torchvision_set)
    except FileNotFoundError as err:
        if torchvision_set:
            command = shlex.join(["python", "-m", "glx", *args.argv, "--download"])
            raise UsageError(
                f"--dataset={name!r} is not under --data-root={root!r}. Fetch it (internet "
                f"needed) with: {command} ; or pass --dataset PATH to {_LAYOUT}") from err
        raise UsageError(f"--dataset={name!r}: no such file or directory (a path here must "
                         f"lead to {_LAYOUT})") from err
    except RuntimeError as err:
        if not (torchvision_set and args.download):
            raise UsageError(f"--dataset={name!r}: {err}", code=1) from err
        cause = err.__cause__ or err
        raise UsageError(
            f"--download: fetching {name!r} into --data-root={root!r} failed "
            f"({type(cause).__name__}: {cause}); on a machine without internet, pass "
            f"--dataset PATH to {_LAYOUT}", code=1) from err


if __name__ == "__main__":
    sys.exit(main())
