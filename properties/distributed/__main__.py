"""`torchrun ... -m properties.distributed`: the distributed properties on the world torchrun launched (see docs/distributed.md)."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading

from properties.distributed.catalogue import FAMILIES, properties
from properties.distributed.window import FAULTS, Fault


def rank_fault(text: str) -> Fault:
    """RANK:ACTION (ACTION one of window.FAULTS) as a Fault."""
    rank, _, action = text.partition(":")
    return Fault(int(rank), action)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    from properties.mutants.distributed import BY_NAME

    parser = argparse.ArgumentParser(prog="torchrun ... -m properties.distributed", description=__doc__)
    parser.add_argument("--examples", type=int, default=20, help="examples per property (default 20)")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)} (default all)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu: gloo; cuda: NCCL on LOCAL_RANK's GPU")
    parser.add_argument("--junitxml", metavar="PATH", help="rank 0 writes a JUnit XML report to PATH")
    parser.add_argument("--summary-json", metavar="PATH", help="rank 0 writes a JSON summary to PATH")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random, printed)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="process-group timeout and per-example deadline in s (default 60)"
    )
    parser.add_argument(
        "--fault", action="append", default=[], choices=sorted(BY_NAME), help="self-test: apply this mutant in every rank"
    )
    parser.add_argument(
        "--rank-fault",
        type=rank_fault,
        default=None,
        metavar="RANK:ACTION",
        help=f"self-test: RANK does ACTION ({', '.join(FAULTS)}) in DDP windows",
    )
    args = parser.parse_args(argv)
    args.families = [family.strip() for family in args.families.split(",") if family.strip()]
    args.seed = secrets.randbelow(2**32) if args.seed is None else args.seed
    return args


def run_record(args: argparse.Namespace, world_size: int, backend: str) -> dict:
    """The run as the reports state it."""
    import torch

    return {
        "torch": torch.__version__,
        "world_size": world_size,
        "nodes": int(os.environ.get("GROUP_WORLD_SIZE", "1")),
        "backend": backend,
        "device": args.device,
        "examples": args.examples,
        "seed": args.seed,
        "families": ",".join(args.families),
        "fault": ",".join([*args.fault, *([f"rank {args.rank_fault.rank} {args.rank_fault.action}"] if args.rank_fault else [])]),
    }


def report(args: argparse.Namespace, run: dict, results, code: int) -> None:
    """Rank 0: the header, the per-property summary, the reproduce line and the report files."""
    from properties.distributed import launch_reports

    print(launch_reports.header(run))
    print("\n".join(launch_reports.summary_lines(results)))
    if code:
        print(f"reproduce: the same command with --seed {args.seed}")
    if args.summary_json:
        launch_reports.write_json(args.summary_json, run, results, code)
    if args.junitxml:
        launch_reports.write_junit(args.junitxml, run, results)
    sys.stdout.flush()


def lead(args, groups, props) -> int:
    """Rank 0: draw, send and check every example, report, then publish the verdict."""
    from properties.distributed.channel import Channel, connect
    from properties.distributed.launched import GRACE_S, LaunchedWorld, Stop, WorldBroken, watch_own_progress
    from properties.distributed.runner import run_all, verdict

    channel = Channel(connect(args.timeout))
    world = LaunchedWorld(groups, channel, timeout=args.timeout, mutants=tuple(args.fault), fault=args.rank_fault)
    watchdog = threading.Thread(
        target=watch_own_progress, args=(world, Channel(connect(args.timeout)), args.timeout + 2 * GRACE_S)
    )
    watchdog.daemon = True
    watchdog.start()

    def stopped(signum, frame):
        doing = world.current[0] if world.current else "between examples"
        raise WorldBroken(
            f"rank 0 was stopped by the launcher (signal {signum}) while {doing}: another rank ended; torchrun names it"
        )

    signal.signal(signal.SIGTERM, stopped)
    results = run_all(world, props, examples=args.examples, seed=args.seed)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = verdict(results)
    # The reports first: once the others have Stop they exit, and a non-zero exit makes torchrun stop rank 0 (SIGTERM).
    report(args, run_record(args, world.world_size, groups_backend()), results, code)
    channel.post(world.sent + 1, Stop(code))
    channel.set_verdict(code)
    return code


def groups_backend() -> str:
    """The default group's backend, as torch names it."""
    import torch.distributed as dist

    return str(dist.get_backend())


def main(argv: list[str] | None = None) -> int:
    """Join torchrun's group and run the properties (rank 0) or serve rank 0's examples (every other rank); the exit code."""
    from properties.distributed.launched import device_unavailable, follow, join
    from properties.distributed.runner import Result

    args = parse(argv)
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        print(
            "properties.distributed runs under torchrun: torchrun --standalone --nproc-per-node=2 -m properties.distributed",
            file=sys.stderr,
        )
        return 2
    props = properties(args.families)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    reason = device_unavailable(args.device) or (
        None if world_size >= 2 else f"needs at least 2 ranks, torchrun started {world_size}"
    )
    if reason is not None:
        if rank == 0:
            results = [Result(p.family, p.name, "skipped", message=reason, headline=reason) for p in props]
            report(args, run_record(args, world_size, "none"), results, 0)
            print(f"skipped: {reason}")
        return 0
    import torch.distributed as dist

    groups = join(args.device, args.timeout)
    try:
        return lead(args, groups, props) if rank == 0 else follow(rank, groups, args.timeout)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the store clients' and watchdogs' threads must not run into interpreter shutdown
