"""The ``painface`` command: one sub-command per stage of the data's path.

Errors that users can cause (bad files, bad configs) end as one line on stderr that
names the file or key, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys


def _synth(args):
    from painface.synthetic.study import generate_study

    overrides = {k: getattr(args, k) for k in ("pre_min", "post_min", "fps", "width", "height", "cameras", "signal", "seed")}
    manifest = generate_study(args.study, args.out, workers=args.workers, mice_per_group=args.mice_per_group, **overrides)
    print(f"manifest: {manifest}")


def _contact_sheet(args):
    from painface.synthetic.sheet import contact_sheet

    print(contact_sheet(args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="painface", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="render a synthetic study (videos, DLC keypoints, ground truth, manifest)")
    s.add_argument("study", help="study YAML, e.g. experiments/ac_dose_response.yaml")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--mice-per-group", type=int, default=None, help="cap the number of mice per group (demo/tests)")
    s.add_argument("--pre-min", type=float, default=None)
    s.add_argument("--post-min", type=float, default=None)
    s.add_argument("--fps", type=float, default=None)
    s.add_argument("--width", type=int, default=None)
    s.add_argument("--height", type=int, default=None)
    s.add_argument("--cameras", type=int, default=None)
    s.add_argument("--signal", type=float, default=None, help="scale of the planted expression")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=_synth)

    s = sub.add_parser("contact-sheet", help="render pain / no-pain faces of both coats across poses")
    s.add_argument("--out", default="docs/contact_sheet.png")
    s.set_defaults(func=_contact_sheet)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError, KeyError) as exc:
        print(f"painface {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run_hydra_task(task, cfg):
    """Run a Hydra task; a user error becomes one line on stderr and exit status 1."""
    from painface.errors import USER_ERRORS

    try:
        return task(cfg)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
