"""Command line: ``python -m glx train ...`` runs GLS or SGD and writes a JSON record.

    python -m glx train --method gls --dataset digits --model mlp --pop 4 --generations 40 \
        --seed 0 --out run.json
    python -m glx train --method sgd --dataset digits --model mlp --generations 10 --out sgd.json
    python -m glx budget --epochs 200 --pop 4
    python -m glx evolve --method snes|sep_cma|openai_es|ga --dataset digits --model mlp \
        --seed 0 --out run.json
    python -m glx decode run.json --out weights.pt    # a GA run's network from its seeds alone

Every field of :class:`glx.gls.Config` is a flag (``--momentum-policy inherit``,
``--tie-rule as_released``, ``--selection-data holdout``, ``--checkpoint ck.pt --resume``...).

Under torchrun one population is spread over the ranks (``glx.distributed``), with the same
result as one process; rank 0 writes the record, the checkpoint and the model::

    torchrun --standalone --nproc-per-node 2 -m glx train --pop 4 --generations 40 --out run.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from glx import evolve as gevolve
from glx import gls


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(kind):  # "none" -> None, otherwise kind(text)
    def parse(text: str):
        return None if text.strip().lower() in ("none", "auto") else kind(text)
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
        parse = _optional(kind) if type(None) in args else kind
        parser.add_argument(flag, type=parse, default=f.default,
                            metavar=f.name.upper())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glx", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train GLS or SGD and write a JSON record")
    _add_config_flags(train)
    train.add_argument("--paper-epochs", type=int, default=None,
                       help="set the budget from epochs: gls -> epochs x (pop+1) generations "
                            "(the paper's), sgd -> epochs")
    train.add_argument("--out", type=Path, default=None, help="write the run record here (JSON)")
    train.add_argument("--save-model", type=Path, default=None,
                       help="save the final parent's state_dict here")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                       help="under torchrun: how long a collective step waits for the other "
                            "ranks before the job ends with an error")
    train.add_argument("--dist-backend", default="auto", choices=("auto", "gloo", "nccl"),
                       help="under torchrun: gloo (CPU) or nccl (CUDA); auto follows the device")

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

    evolve = sub.add_parser("evolve", help="train with an ES or the Deep GA; write a JSON record")
    _add_config_flags(evolve, gevolve.Config)
    evolve.add_argument("--out", type=Path, default=None, help="write the run record here (JSON)")
    decode = sub.add_parser("decode", help="rebuild a GA run's network from its genome alone, "
                                           "print its test accuracy, save its state_dict")
    decode.add_argument("record", type=Path, help="the record written by `evolve --method ga`")
    decode.add_argument("--out", type=Path, default=None, help="save the state_dict here")

    args = parser.parse_args(argv)
    if args.command in ("evolve", "decode"):
        return _evolve_commands(args)
    if args.command == "budget":
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

    fields = {f.name for f in dataclasses.fields(gls.Config)}
    cfg = gls.Config(**{k: v for k, v in vars(args).items() if k in fields})
    if args.paper_epochs is not None:
        cfg.generations = (gls.paper_generations(args.paper_epochs, cfg.pop)
                           if cfg.method == "gls" else args.paper_epochs)
    if "WORLD_SIZE" in os.environ:  # started by torchrun: one population over its ranks
        return _train_distributed(cfg, args)
    try:
        trainer = gls.Trainer(cfg)
        run = trainer.run(progress=not args.quiet)
    except gls.NonFiniteLoss as err:
        print(f"error: {err}", file=sys.stderr)
        if args.out:
            record = {"config": cfg.to_dict(), "history": err.history, "test_accuracy": None,
                      "wall_seconds": None, "error": str(err)}
            args.out.write_text(json.dumps(record, indent=1))
        return 1
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _write(run, args)
    return 0


def _write(run: gls.Run, args: argparse.Namespace) -> None:
    if args.out:
        run.save(args.out)
    if args.save_model:
        import torch

        args.save_model.parent.mkdir(parents=True, exist_ok=True)
        torch.save(run.model.state_dict(), args.save_model)
    print(json.dumps({"test_accuracy": run.test_accuracy, "wall_seconds": round(run.wall_seconds, 2),
                      "generations": len(run.history), "path": run.path,
                      "path_reason": run.path_reason, "device": run.device,
                      "world_size": run.world_size}))


def _train_distributed(cfg: gls.Config, args: argparse.Namespace) -> int:
    """One population over torchrun's ranks (glx.distributed); rank 0 writes and prints."""
    from glx import distributed as gdist

    prefix = f"rank {os.environ.get('RANK', '?')}"
    try:
        launch = gdist.detect()
        group = gdist.init(launch, cfg.device, backend=args.dist_backend, pop=cfg.pop,
                           timeout_s=args.dist_timeout)
        trainer = gdist.DistributedTrainer(cfg, group)
        run = trainer.run(progress=not args.quiet and group.rank == 0)
    except gls.NonFiniteLoss as err:
        print(f"error: {prefix}: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {prefix}: {err}", file=sys.stderr)
        return 2
    except gdist.RankFailure as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if group.rank == 0:
        _write(run, args)
    gdist.finish()
    return 0


def _evolve_commands(args: argparse.Namespace) -> int:
    import torch

    from glx.fileio import atomic_write, atomic_write_text

    try:
        if args.command == "evolve":
            fields = {f.name for f in dataclasses.fields(gevolve.Config)}
            cfg = gevolve.Config(**{k: v for k, v in vars(args).items() if k in fields})
            record = gevolve.run(cfg.validate())
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
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
