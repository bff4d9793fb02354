"""`vla-ros sanity replay-actions|policy-actions`: OpenVLA's sanity checks on demonstrations (data set or bags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_ros.commands.argument_types import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    sanity = subparsers.add_parser(
        "sanity", help="OpenVLA's sanity checks: replay demonstration actions; compare policy actions",
        description="Two checks from OpenVLA's troubleshooting advice, on a data set (dataset.hdf5) or episode "
                    "bags (`vla-ros data generate --bags`). Each prints a table and writes OUT/<check>.json.")
    sub = sanity.add_subparsers(dest="sanity_command", metavar="CHECK")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, required=True,
                        help="data set directory or dataset.hdf5, a folder of episode bags, or one episode bag")
    common.add_argument("--episodes", type=positive_int, help="only the first N episodes")
    common.add_argument("--out", type=Path, help="folder for the results JSON")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    actions = sub.add_parser(
        "replay-actions", parents=[common], help="recorded actions through executor + simulated arm reproduce the "
                                                 "recorded outcome",
        description="Reset the workcell with each episode's seed and task, feed the recorded actions as 8-step "
                    "chunks through the executor core (sliding window, execute 3), the EE integrator and "
                    "Workcell.set_joint_targets/advance, and compare success with the recorded success. Reports "
                    "the agreement rate and the end-effector error at the last recorded observation.")
    actions.set_defaults(func=_sanity_replay_actions)
    policy = sub.add_parser(
        "policy-actions", parents=[common], help="recorded images through the policy give the demonstrated actions",
        description="For every recorded frame, infer a chunk greedily, decode it and compare with the "
                    "demonstration's next 8 actions: normalized RMSE per dimension (the tokenizer's q01/q99 "
                    "scaling) and gripper agreement, against the mean action and the tokenizer's own round trip.")
    policy.add_argument("--policy", type=Path, default=Path("models/policy/vla"),
                        help="policy directory (default models/policy/vla)")
    policy.set_defaults(func=_sanity_policy_actions)
    sanity.set_defaults(func=lambda args: (sanity.print_help(), 2)[1])


def _sanity_load(args: argparse.Namespace, with_images: bool):
    from vla_ros.bags.sanity import load_demonstrations

    return load_demonstrations(args.data, args.episodes, with_images=with_images)


def _sanity_replay_actions(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.sanity import check_replay_actions, replay_table, write_result

    try:
        demonstrations, split = _sanity_load(args, with_images=False)
        result = check_replay_actions(demonstrations, split, progress=not args.quiet)
    except (BagError, FileNotFoundError) as exc:
        print(f"vla-ros sanity replay-actions: {exc}", file=sys.stderr)
        return 2
    print(replay_table(result))
    written = write_result(args.out, "replay_actions", result)
    if written:
        print(f"results: {written}")
    return 0


def _sanity_policy_actions(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.sanity import check_policy_actions, policy_table, write_result
    from vla_ros.core.resources import resolve_resource
    from vla_ros.policy.modeling_vla import PolicyLoadError
    from vla_ros.policy.runners import PolicyRunner

    policy = resolve_resource(args.policy)
    try:
        if not policy.exists():
            raise BagError(f"policy {policy} does not exist; give a policy directory from `vla-ros train` with "
                           "--policy")
        runner = PolicyRunner(policy, "builtin-torch", threads=1)
        demonstrations, _ = _sanity_load(args, with_images=True)
        result = check_policy_actions(demonstrations, runner, progress=not args.quiet)
    except (BagError, PolicyLoadError, FileNotFoundError) as exc:
        print(f"vla-ros sanity policy-actions: {exc}", file=sys.stderr)
        return 2
    print(policy_table(result))
    written = write_result(args.out, "policy_actions", {**result, "policy_path": str(policy)})
    if written:
        print(f"results: {written}")
    return 0
