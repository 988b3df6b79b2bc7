"""``segcore eval``: masks (and label maps) scored against the truth, a table on the
terminal, ``--json`` and a worst-frames sheet (the command line's part; the scoring is
:mod:`segcore.evaluate`)."""

from __future__ import annotations

import json
import sys

from .errors import OutputError


def _check_file_target(path: str, option: str) -> None:
    """:class:`OutputError` unless ``path`` can be a new or replaced file (its folder exists
    and it is not a folder itself)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; {option} needs a file name, e.g. {p / 'scores.json'}")
    if not p.parent.is_dir():
        raise OutputError(
            f"{p.parent}: no such folder for {option} {p}; create it or choose another path"
        )


def cmd_eval(args) -> int:
    from .evaluate import (
        evaluate_folders,
        evaluate_label_folders,
        format_class_table,
        format_table,
        has_labels,
    )

    if args.json:
        _check_file_target(args.json, "--json")  # before the scoring, not after
    sheet = args.sheet
    if sheet is None and args.json:  # beside the JSON: scores.json -> scores_worst.png
        from pathlib import Path

        sheet = str(Path(args.json).with_name(Path(args.json).stem + "_worst.png"))
    if sheet:
        _check_file_target(sheet, "--sheet")
    notes: list[str] = []
    rows, pooled, missing = evaluate_folders(args.pred, args.gt, notes)
    labels = args.labels
    if labels is None and has_labels(args.pred) and has_labels(args.gt):
        labels = (args.pred, args.gt)
    classes = evaluate_label_folders(*labels) if labels else None
    if args.quiet and args.markdown:  # the pooled row alone, as a markdown table
        print(format_table([], pooled, markdown=True))
        if classes:
            print()
            print(format_class_table(classes[1], markdown=True))
    elif args.quiet:
        print(" ".join(f"{k}={v:.4f}" for k, v in pooled.items()))
        for name, s in (classes[1] if classes else {}).items():
            print(f"{name}: iou={s['iou']:.4f} bf2={s['bf2']:.4f}")
    else:
        print(format_table(rows, pooled, markdown=args.markdown))
        if classes:
            print(f"\nper class (label maps, pooled over {len(classes[0])} frames):")
            print(format_class_table(classes[1], markdown=args.markdown))
    for note in notes:  # masks read in an odd way (values 0 and 1, nothing above half)
        print(f"warning: {note}", file=sys.stderr)
    for what, gone in (("masks", missing), ("label maps", classes[2] if classes else [])):
        if gone:
            print(
                f"warning: {len(gone)} ground-truth {what} have no prediction (first: {gone[0]})",
                file=sys.stderr,
            )
    if args.json:
        from .io import atomic_write_bytes

        data = {"frames": rows, "pooled": pooled, "missing": missing, "warnings": notes}
        if classes:
            data["classes"] = dict(zip(("frames", "pooled", "missing"), classes))
        try:
            atomic_write_bytes(args.json, json.dumps(data, indent=2).encode())
        except OSError as exc:
            raise OutputError(f"{args.json}: cannot write --json ({exc.strerror or exc})") from None
    if sheet:
        from .evaluate import worst_sheet
        from .io import write_png

        try:
            write_png(sheet, worst_sheet(args.pred, args.gt, rows))
        except OSError as exc:
            raise OutputError(f"{sheet}: cannot write --sheet ({exc.strerror or exc})") from None
        if not args.quiet:
            print(f"worst frames: {sheet}", file=sys.stderr)
    return 1 if missing or (classes and classes[2]) else 0
