"""``python -m training``: prepare data, render synthetic captures, train, evaluate, export."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from segcore.card import MODELS_DIR, user_models_dir

EPILOG = """typical use (each step makes what the next one reads):
  python -m training synth --out data/synth --trainable --sequences 200 --frames 6 --seed 1
  python -m training synth --out data/heldout --family coat --sequences 2 --frames 6 --seed 2
  python -m training train --data data/synth --out runs/garment --steps 6000
  python -m training eval --model runs/garment/best.pt --data data/heldout
  python -m training export runs/garment/best.pt --name my-garment
  segcore segment FRAMES -o OUT --model my-garment
fine-tune the shipped model on your own labelled photos:
  python -m training finetune PHOTOS LABELS --name my-garments
every command: python -m training COMMAND --help
"""


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal, examples (epilogs) kept line by line."""

    def _fill_text(self, text, width, indent):
        if text.startswith(("example", "typical")):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _add_train_args(t: argparse.ArgumentParser) -> None:
    from .train import CONTACT_PX, TrainConfig

    d = TrainConfig()
    t.add_argument("--config", metavar="JSON", help="training config file (flags override it)")
    t.add_argument("--data", nargs="+", metavar="DIR", help="data set root(s)")
    t.add_argument("--out", metavar="DIR", help=f"run folder (default {d.out})")
    t.add_argument("--steps", type=int, help=f"optimisation steps (default {d.steps})")
    t.add_argument("--epoch-steps", type=int, help="steps between validations/checkpoints")
    t.add_argument("--batch", type=int, help=f"batch size (default {d.batch})")
    t.add_argument("--crop", type=int, help=f"training crop side (default {d.crop})")
    t.add_argument("--input-size", type=int, help=f"inference long side (default {d.input_size})")
    t.add_argument("--optimizer", choices=["adamw", "sgd"], help=f"default {d.optimizer}")
    t.add_argument("--lr", type=float, help=f"peak learning rate (default {d.lr})")
    t.add_argument("--widths", help="branch widths, e.g. 8,16,24")
    t.add_argument("--depths", help="branch depths, e.g. 1,3,3")
    t.add_argument(
        "--fuse-channels",
        type=int,
        help=f"channels of the branches' fused features (default {d.arch.fuse_channels})",
    )
    t.add_argument(
        "--max-width",
        type=int,
        help=f"cap on a branch's channels as they double (default {d.arch.max_width})",
    )
    t.add_argument("--no-multiscale", action="store_true", help="single-scale network")
    t.add_argument("--no-residual", action="store_true", help="no residual shortcuts")
    t.add_argument(
        "--baseline",
        action="store_true",
        help="the paper's FCN-style baseline (single scale, no residuals)",
    )
    t.add_argument("--val-sequences", nargs="+", metavar="NAME", help="explicit held-out set")
    t.add_argument(
        "--val-data",
        nargs="+",
        metavar="DIR",
        help="data set roots used only to pick the checkpoint (validation families)",
    )
    t.add_argument(
        "--classes",
        action="store_true",
        help="predict garment / figure / support (label maps in <sequence>/labels); the mask "
        "is garment + figure",
    )
    t.add_argument(
        "--class-weight",
        type=float,
        help=f"weight of the class cross-entropy in the loss (default {d.class_weight})",
    )
    t.add_argument(
        "--class-balance",
        type=float,
        help="weigh each class by (1 / its pixel share) to this power in the cross-entropy "
        f"(0: unweighted; default {d.class_balance})",
    )
    t.add_argument(
        "--class-split",
        choices=("joint", "within"),
        help="the class cross-entropy over all four classes (joint) or of each class given its "
        "side of the subject's outline (within: the classes never move the subject's outline; "
        f"default {d.class_split})",
    )
    t.add_argument(
        "--contact-weight",
        type=float,
        metavar="W",
        help="multi-class data: extra weight of the subject loss where the figure meets its "
        "support (feet on a base, legs on a stand), on both sides within "
        f"{CONTACT_PX} crop pixels (default {d.contact_weight})",
    )
    t.add_argument(
        "--retexture",
        type=float,
        metavar="P",
        help="multi-class data: the share of crops whose garment is redrawn in a new fabric "
        "(a colour, a print from a real photo, a noise texture, under the render's shading); "
        f"half as many get a new figure surface (default {d.retexture})",
    )
    t.add_argument(
        "--keep-checkpoints",
        action="store_true",
        default=None,
        help="also keep OUT/step_NNNNNN.pt at every validation (to choose one later with "
        "`training eval` on the validation families)",
    )
    t.add_argument(
        "--exclude-sequences",
        nargs="+",
        metavar="NAME",
        help="test sequences: never trained on, never used to pick the checkpoint",
    )
    t.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    t.add_argument("--threads", type=int, help=f"torch threads (default {d.threads})")
    t.add_argument(
        "--init",
        metavar="PT",
        help="start from these weights (fine-tuning) and their network; --widths, --depths, "
        "--fuse-channels or --max-width change it (a wider network embeds them)",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def init_arch(path: str, default):
    """The architecture of the checkpoint ``--init`` names (its ``config``), or ``default``
    when it has none (a bare state dict) or cannot be read (the training reports that)."""
    try:
        import torch

        from .train import TrainConfig

        ck = torch.load(path, map_location="cpu", weights_only=False)
        return TrainConfig.from_dict(ck["config"]).arch
    except Exception:  # noqa: BLE001 - a bare state dict, or a file train will refuse
        return default


def config_from_args(args):
    from dataclasses import replace

    from .train import TrainConfig

    cfg = TrainConfig()
    if args.config:
        cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    elif args.resume and args.out and (Path(args.out) / "config.json").exists():
        cfg = TrainConfig.from_dict(json.loads((Path(args.out) / "config.json").read_text()))
    flags = {
        "data": args.data,
        "out": args.out,
        "steps": args.steps,
        "epoch_steps": args.epoch_steps,
        "batch": args.batch,
        "crop": args.crop,
        "input_size": args.input_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "init": args.init,
        "val_sequences": args.val_sequences,
        "val_data": args.val_data,
        "exclude_sequences": args.exclude_sequences,
        "class_weight": args.class_weight,
        "class_balance": args.class_balance,
        "class_split": args.class_split,
        "retexture": args.retexture,
        "contact_weight": args.contact_weight,
        "keep_checkpoints": args.keep_checkpoints,
    }
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    arch = cfg.arch
    if args.init and not args.config and not args.resume:
        arch = init_arch(args.init, arch)  # the network it starts from, changed by the flags
    if args.widths:
        arch = replace(arch, widths=tuple(int(v) for v in args.widths.split(",")))
    if args.depths:
        arch = replace(arch, depths=tuple(int(v) for v in args.depths.split(",")))
    if args.fuse_channels:
        arch = replace(arch, fuse_channels=args.fuse_channels)
    if args.max_width:
        arch = replace(arch, max_width=args.max_width)
    if args.no_multiscale or args.baseline:
        arch = replace(arch, multiscale=False)
    if args.no_residual or args.baseline:
        arch = replace(arch, residual=False)
    if args.classes:
        from segcore.config import CLASSES

        arch = replace(arch, out_channels=len(CLASSES))
    cfg = replace(cfg, arch=arch)
    if not cfg.data:
        raise SystemExit("error: no training data; pass --data DIR (see --help)")
    for flag, v in (
        ("--class-weight", cfg.class_weight),
        ("--class-balance", cfg.class_balance),
        ("--contact-weight", cfg.contact_weight),
    ):
        if not (math.isfinite(v) and v >= 0):
            raise SystemExit(f"error: {flag} {v}: must be a number, 0 or more")
    if not 0 <= cfg.retexture <= 1:
        raise SystemExit(f"error: --retexture {cfg.retexture}: a share of crops, 0 to 1")
    if cfg.contact_weight > 0 and cfg.arch.out_channels == 1:
        raise SystemExit(
            f"error: --contact-weight {cfg.contact_weight} needs a multi-class model: where the "
            "figure meets its support comes from the label maps' classes; add --classes "
            "(or start from a multi-class --init)"
        )
    return cfg


def cmd_train(args) -> int:
    from .train import train

    cfg = config_from_args(args)
    scores = train(cfg, resume=args.resume, progress=not args.quiet)
    print(json.dumps(scores, indent=1))
    return 0


def cmd_eval(args) -> int:
    from segcore.io import atomic_write_bytes

    from .evaluate import (
        MARKDOWN_HEAD,
        evaluate,
        grabcut_predictor,
        markdown_row,
        otsu_predictor,
        samples_of,
        segcore_predictor,
        worst_sheet,
    )

    if args.model in ("grabcut", "otsu"):
        predict = grabcut_predictor() if args.model == "grabcut" else otsu_predictor()
    else:
        model = args.model
        if model and model.endswith(".pt"):
            model = _export_temp(model)
        keep = tuple(k.strip() for k in args.keep.split(",") if k.strip()) if args.keep else None
        predict = segcore_predictor(
            model,
            args.refine,
            args.temporal,
            args.flip,
            args.edges,
            keep=keep,
            size=args.size,
            threshold=args.threshold,
            garment_regions=args.garment_regions,
        )
    if args.families:
        return _eval_families(args, predict)
    if not args.data:
        print("error: eval needs --data or --families", file=sys.stderr)
        return 2
    samples = samples_of(args.data, args.sequences)
    rows, pooled = evaluate(predict, samples, args.aspect, args.oracle_band)
    table = MARKDOWN_HEAD + "\n" + markdown_row(args.name or str(args.model), pooled)
    print(table)
    print(f"flicker (mean |IoU step - true IoU step|): {pooled['flicker']:.4f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "results.md", (table + "\n").encode())
        atomic_write_bytes(
            out / "frames.json", json.dumps({"pooled": pooled, "frames": rows}, indent=1).encode()
        )
        worst_sheet(predict, rows, samples, out / "worst.png", aspect=args.aspect)
        print(f"wrote {out}/results.md, frames.json, worst.png", file=sys.stderr)
    return 0


def cmd_edges(args) -> int:
    from .edges import EdgeConfig, choose_checkpoint, export_edges, runtime_graph, train_edges

    if args.export:
        from segcore.card import load_card

        card_path = Path(args.export)
        card = load_card(card_path)
        onnx = card_path.parent / f"{card.name}_edges.onnx"
        chosen = Path(args.out) / "chosen.pt"  # `--choose`'s pick, else the lowest window loss
        checkpoint = chosen if chosen.exists() else Path(args.out) / "best.pt"
        entry = export_edges(str(checkpoint), str(onnx))
        d = json.loads(card_path.read_text())
        d["edge_refiner"] = entry
        from segcore.io import atomic_write_bytes

        atomic_write_bytes(card_path, (json.dumps(d, indent=2) + "\n").encode())
        print(f"wrote {onnx} and the edge_refiner entry of {card_path}", file=sys.stderr)
        if args.runtime_graph and (out := runtime_graph(card_path)) is not None:
            print(f"wrote {out} (ONNX Runtime's graph)", file=sys.stderr)
        return 0
    if args.choose:
        if not args.val:
            print("error: --choose needs --val (validation families)", file=sys.stderr)
            return 2
        choice = choose_checkpoint(args.out, args.model, args.val)
        for r in choice["rows"]:
            print(
                f"{r['candidate']:>20}  BF@2px {r['bf2']:.4f}  IoU {r['iou']:.4f}  "
                f"F1 {r['f1']:.4f}  worst {r['worst_family']}"
            )
        print(f"chose {choice['chosen']} -> {Path(args.out) / 'chosen.pt'}", file=sys.stderr)
        return 0
    if not args.data or not args.val:
        print("error: training the refiner needs --data and --val", file=sys.stderr)
        return 2
    cfg = EdgeConfig(
        data=args.data,
        val=args.val,
        out=args.out,
        model=args.model,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        width=args.width,
        fuse=args.fuse,
        levels=args.levels,
        margin=args.margin,
        guide=args.guide,
        scale=tuple(args.scale),
        threads=args.threads,
    )
    print(json.dumps(train_edges(cfg, resume=args.resume), indent=1))
    return 0


def _eval_families(args, predict) -> int:
    from segcore.io import atomic_write_bytes

    from .evaluate import evaluate_families, families_markdown

    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    result = evaluate_families(predict, args.families, out, args.aspect, args.oracle_band)
    table = families_markdown(result)
    print(f"{args.name or args.model or 'garment'} (means over frames, full resolution)")
    print(table)
    if out:
        atomic_write_bytes(out / "results.md", (table + "\n").encode())
        atomic_write_bytes(out / "families.json", json.dumps(result, indent=1).encode())
        print(f"wrote {out}/results.md, families.json, <family>_worst.png", file=sys.stderr)
    return 0


def _aspect(text: str) -> tuple[int, int]:
    """``W:H`` (positive integers) for ``eval --aspect``."""
    try:
        w, h = (int(v) for v in text.split(":"))
    except ValueError:
        w = h = 0
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give width:height, e.g. 3:4 or 3:2")
    return w, h


def _export_temp(pt: str) -> str:
    import tempfile

    from .export import export_checkpoint

    d = tempfile.mkdtemp(prefix="segcore-eval-")
    return str(export_checkpoint(pt, "candidate", d))


def cmd_export(args) -> int:
    from .export import check_target, export_checkpoint

    check_target(args.name, args.out_dir, args.overwrite)  # before reading anything
    if args.threshold is not None and not 0 < args.threshold < 1:
        print(f"error: --threshold {args.threshold}: give a probability in (0, 1)", file=sys.stderr)
        return 2
    extra = json.loads(Path(args.card_extra).read_text()) if args.card_extra else None
    path = export_checkpoint(
        args.checkpoint,
        args.name,
        args.out_dir,
        args.threshold,
        extra,
        overwrite=args.overwrite,
        input_size=args.input_size,
        runtime_graph=args.runtime_graph,
        like=args.like,
    )
    print(f"wrote {path} and {path.with_suffix('.onnx')}")
    _how_to_use(path, args.name)
    return 0


def cmd_runtime_graph(args) -> int:
    from segcore.card import load_card
    from segcore.errors import SegcoreError

    from .runtime_graph import add_refiner_graph, add_runtime_graph

    try:
        out = add_runtime_graph(args.card, quantize=not args.float)
        print(f"wrote {out} and the onnx_runtime entry of {args.card}")
        if "edge_refiner" in load_card(args.card).extra:
            out = add_refiner_graph(args.card, quantize=not args.float)
            print(f"wrote {out} and the edge_refiner.onnx_runtime entry of {args.card}")
    except (SegcoreError, ValueError) as exc:  # ValueError: a graph it cannot rewrite
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _how_to_use(card: Path, name: str) -> None:
    """How to run the exported model: by name when segcore finds it so, else by path."""
    from segcore.card import resolve_model_path

    found = resolve_model_path(name).resolve() == card.resolve()
    print(f"use it with: segcore segment FRAMES -o OUT --model {name if found else card}")
    if not found and (MODELS_DIR / f"{name}.json").exists() and card.parent != MODELS_DIR:
        print(
            f"note: a bundled model is also named {name!r}; `--model {name}` means the "
            f"bundled one, so give the path ({card})"
        )


def base_checkpoint(base: str) -> Path:
    """The weights (.pt) fine-tuning starts from: ``base`` as a .pt file, a card (.json,
    its .pt beside it) or a model name (bundled, then the user's); FileNotFoundError
    saying what is missing."""
    from segcore.card import resolve_model_path

    p = Path(base)
    if p.suffix == ".pt":
        pt = p
    else:
        card = p if p.suffix == ".json" else resolve_model_path(base)
        pt = card.with_suffix(".pt")
    if not pt.is_file():
        raise FileNotFoundError(
            f"{pt}: the weights to fine-tune from are not there; --base takes a model whose "
            "<name>.pt lies beside its card (the bundled garment's ships with segcore: "
            "reinstall it if it is missing), a card or a .pt file"
        )
    return pt


def base_card(pt: Path) -> Path | None:
    """The card beside the weights fine-tuning starts from (its post-processing and edge
    refiner go to the fine-tuned card), or None when the weights have none."""
    card = pt.with_suffix(".json")
    return card if card.is_file() else None


def cmd_prepare(args) -> int:
    from tqdm import tqdm

    from .prepare import WHOLE_FRAME_SIZE, pair_files, prepare

    n = len(pair_files(Path(args.photos), Path(args.labels)))
    symmetries = 2 if args.whole_frames else 8
    with tqdm(total=n, desc="preparing", disable=args.quiet) as bar:
        done, errors = prepare(
            args.photos,
            args.labels,
            args.out,
            args.size or (WHOLE_FRAME_SIZE if args.whole_frames else 320),
            None if args.whole_frames else args.margin,
            args.sigma,
            args.name,
            bar,
            symmetries,
        )
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"{done} photos -> {symmetries * done} training frames in {args.out}")
    return 1 if errors else 0


def cmd_finetune(args) -> int:
    """prepare + train from the shipped model + export, in one command."""
    from dataclasses import replace

    from .export import check_target, like_card
    from .prepare import WHOLE_FRAME_SIZE, prepare
    from .train import TrainConfig, train

    check_target(args.name, args.out_dir, args.overwrite)  # refused before any work
    base = base_checkpoint(args.base)
    like = None if args.fresh_card else base_card(base)
    if like is not None:
        like_card(like)  # a base card that cannot be read stops here, before any work
    work = Path(args.work or f"runs/finetune-{args.name}")
    data = work / "data"
    if args.paper_prep:  # cropped to the subject, the 8 symmetries of the square
        done, errors = prepare(args.photos, args.labels, data, name="photos")
    else:  # whole upright frames, as they are and mirrored, as the base model was trained on
        done, errors = prepare(
            args.photos,
            args.labels,
            data,
            size=WHOLE_FRAME_SIZE,
            margin=None,
            name="photos",
            symmetries=2,
        )
    val = []
    if args.val:  # held-out labelled photos: the checkpoint is picked on them, whole and upright
        v_done, v_errors = prepare(
            *args.val, work / "val", size=WHOLE_FRAME_SIZE, margin=None, name="photos", symmetries=1
        )
        errors += v_errors
        val = [str(work / "val")] if v_done else []
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not done or (args.val and not val):
        return 1
    ck = __import__("torch").load(base, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict(ck["config"])
    cfg = replace(
        cfg,
        data=[str(data)],
        out=str(work / "run"),
        init=str(base),
        steps=args.steps,
        epoch_steps=max(25, args.steps // 4),
        lr=args.lr,
        warmup=min(50, args.steps // 10),
        val_share=0.0,
        val_sequences=[],
        # the base's validation sets are not the user's (nor on their machine): --val's, if any
        val_data=val,
        exclude_sequences=[],
    )
    train(cfg)
    from .export import export_checkpoint

    chosen = work / "run" / ("best.pt" if val else "last.pt")
    path = export_checkpoint(chosen, args.name, args.out_dir, overwrite=args.overwrite, like=like)
    if val:
        print(f"the checkpoint with the best F1 on the --val photos: {chosen.name}")
    print(f"fine-tuned model: {path}")
    _how_to_use(path, args.name)
    return 0


def cmd_table1(args) -> int:
    from .table1 import run_table1

    cfg = config_from_args(args)
    print(run_table1(cfg, Path(args.out or "runs/table1"), families=args.families))
    return 0


def cmd_realphotos(args) -> int:
    from .realphotos import real_photo_sheet

    print(f"wrote {real_photo_sheet(args.model, Path(args.out))}")
    return 0


def cmd_adapt_eval(args) -> int:
    from .adapt_eval import run

    return run(args)


def cmd_confidence(args) -> int:
    from .confidence import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Make data sets, train, evaluate and export garment segmentation models.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pr = sub.add_parser(
        "prepare",
        help="the paper's data-set steps on your labelled photos",
        description="Turn labelled photos into a training data set (docs/design.md layout, "
        "OUT/<name>/images and masks): the HSV V channel denoised, the photo cropped round "
        "the subject with a margin, resized, and amplified to eight by the symmetries of the "
        "square (--whole-frames: whole upright frames, for fine-tuning). Labels are "
        "matched to photos by file name (DSC_1.jpg: DSC_1.png or "
        "DSC_1.jpg.png): mask PNGs (255 = subject) or alpha cut-outs. Exit 1 when a label "
        "cannot be read (each named).",
        epilog="example:\n  python -m training prepare my_photos/ my_labels/ -o data/mine",
        formatter_class=HelpFormatter,
    )
    pr.add_argument("photos", metavar="PHOTOS", help="folder of photos")
    pr.add_argument("labels", metavar="LABELS", help="folder of mask PNGs or alpha cut-outs")
    pr.add_argument("-o", "--out", required=True, help="data set root to write")
    pr.add_argument(
        "--size",
        type=int,
        default=None,
        help="long side after normalisation, pixels (320; 640 with --whole-frames)",
    )
    pr.add_argument(
        "--margin",
        type=float,
        default=0.15,
        help="margin around the subject, a share of its size (0.15)",
    )
    pr.add_argument(
        "--sigma", type=float, default=0.5, help="V-channel denoise sigma, pixels; 0 = off (0.5)"
    )
    pr.add_argument(
        "--whole-frames",
        action="store_true",
        help="keep each photo whole and upright, as it is and mirrored (640 pixels on the long "
        "side unless --size; --margin unused), instead of the paper's crop and 8 symmetries: "
        "for fine-tuning a model trained on whole frames, such as garment (what finetune does)",
    )
    pr.add_argument("--name", help="sequence name (default: the photos folder's name)")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sy = sub.add_parser(
        "synth",
        help="render synthetic garment captures with Blender",
        description="Render synthetic garment captures with Blender (the bpy wheel): "
        "turntables and camera rings of garments on forms, mannequins and body figures in "
        "studios and rooms, each sequence OUT/<sequence>/ with images, masks (garment + "
        "figure), labels (garment, figure, support), cameras.json and meta.json. --trainable "
        "leaves out the held-out families (validation and test); --family draws inside one.",
        epilog="examples:\n"
        "  python -m training synth --out data/synth --trainable --sequences 200 --frames 6 "
        "--seed 1\n"
        "  python -m training synth --out data/heldout --family coat --sequences 2 --frames 6 "
        "--seed 2",
        formatter_class=HelpFormatter,
    )
    try:
        from .synth.cli import add_arguments

        add_arguments(sy)
    except ImportError as exc:  # bpy missing
        sy.set_defaults(_synth_error=str(exc))

    t = sub.add_parser(
        "train",
        help="train a model",
        description="Train on data sets in the docs/design.md layout (ROOT/<sequence>/images, "
        "masks, optional labels); sequences are split into training and validation, never "
        "frames of one sequence on both sides. Validates every --epoch-steps and keeps "
        "OUT/best.pt (best validation), OUT/last.pt, config.json, split.json, log.csv and "
        "curves.png. Export the result with `python -m training export`.",
        epilog="examples:\n"
        "  python -m training train --data data/synth --out runs/garment --steps 6000\n"
        "  python -m training train --data data/synth data/mine --out runs/mine --steps 4000 "
        "--init MODEL.pt",
        formatter_class=HelpFormatter,
    )
    _add_train_args(t)

    e = sub.add_parser(
        "eval",
        help="score a model on a data set (markdown + worst frames)",
        description="Run a model (or a classical baseline) on every frame of a data set as "
        "`segcore segment` would and score it against the masks at full resolution: "
        "precision, recall, F1, IoU and boundary F at 1, 2 and 4 px, as a markdown table. "
        "--families scores each family of ROOT/<family>/<sequence> separately.",
        epilog="examples:\n"
        "  python -m training eval --model runs/garment/best.pt --data data/heldout --out "
        "runs/eval\n"
        "  python -m training eval --model garment --families data/fam_test --out runs/eval_fam",
        formatter_class=HelpFormatter,
    )
    e.add_argument(
        "--model",
        default=None,
        help="bundled name, .json/.onnx card, a training "
        ".pt checkpoint, or 'grabcut' / 'otsu' for the classical baselines",
    )
    e.add_argument("--data", help="data set root (ROOT/<sequence>/images, masks)")
    e.add_argument(
        "--families",
        metavar="ROOT",
        nargs="+",
        help="ROOT/<family>/<sequence>: a table per family (means over frames), the mean "
        "and the worst family, a worst-frames sheet per family with --out; several ROOTs "
        "(the same families rendered with other seeds) pool each family's frames",
    )
    e.add_argument(
        "--edges", choices=("learned", "guided"), default=None, help="edge refinement (segcore)"
    )
    e.add_argument(
        "--keep",
        default=None,
        help="classes a multi-class model keeps, e.g. garment (default: the card's, garment,"
        "figure); the truth is the same classes of the data's label maps",
    )
    e.add_argument("--sequences", nargs="+", help="only these sequences")
    e.add_argument(
        "--size",
        type=int,
        default=None,
        help="network input long side (segcore segment --size; default: the card's)",
    )
    e.add_argument(
        "--oracle-band",
        type=float,
        default=None,
        metavar="PX",
        help="score each mask with the truth in place within PX pixels of its outline: what "
        "a perfect edge refiner working that close to the outline would give (a diagnostic)",
    )
    e.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="mask threshold on the probability (segcore segment --threshold; default: the card's)",
    )
    e.add_argument(
        "--aspect",
        type=_aspect,
        default=None,
        metavar="W:H",
        help="score the middle of every frame cut to this shape, e.g. 3:4 (portrait) or 3:2",
    )
    e.add_argument(
        "--refine",
        dest="refine",
        action="store_true",
        default=None,
        help="refine edges at full resolution (default: the card's)",
    )
    e.add_argument(
        "--no-refine", dest="refine", action="store_false", help="spline-upsampled edges only"
    )
    e.add_argument(
        "--flip",
        dest="flip",
        action="store_true",
        default=None,
        help="average with the mirrored frame's output (default: the card's)",
    )
    e.add_argument(
        "--no-flip", dest="flip", action="store_false", help="one inference a frame (default: card)"
    )
    e.add_argument(
        "--temporal", action="store_true", help="smooth along each sequence (segcore --temporal)"
    )
    e.add_argument(
        "--no-garment-regions",
        dest="garment_regions",
        action="store_false",
        help="a multi-class model's garment and figure as the network drew them, without "
        "making the garment coherent with the frame's colours (segcore.garment_regions)",
    )
    e.add_argument("--name", help="row name in the table")
    e.add_argument("--out", help="folder for results.md, frames.json and worst.png")

    user = user_models_dir()
    x = sub.add_parser(
        "export",
        help="checkpoint -> <name>.onnx + its model card, in your model folder",
        description="Export a training checkpoint as a model segcore runs: OUT_DIR/<name>.onnx, "
        "its card OUT_DIR/<name>.json (checked by loading the ONNX through OpenCV before it is "
        "written) and OUT_DIR/<name>.pt (the weights, to fine-tune from). OUT_DIR defaults to "
        f"your model folder ({user}; $SEGCORE_MODELS changes it), where `segcore segment "
        "--model <name>` finds it by name after the bundled models. A model of that name "
        "already in OUT_DIR is never replaced without --overwrite.",
        epilog="examples:\n"
        "  python -m training export runs/garment/best.pt --name my-garment\n"
        "  segcore segment shoot/ -o out/ --model my-garment",
        formatter_class=HelpFormatter,
    )
    x.add_argument("checkpoint", help="training checkpoint (.pt: best.pt or last.pt of a run)")
    x.add_argument("--name", required=True, help="the model's name (its files' stem)")
    x.add_argument(
        "--out-dir", default=None, help=f"where the model goes (default: your model folder, {user})"
    )
    x.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model of this name in OUT_DIR (without it the export is refused)",
    )
    x.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="the card's subject probability threshold (default: --like's, else 0.5)",
    )
    x.add_argument(
        "--like",
        metavar="CARD",
        help="take the post-processing and the learned edge refiner of this model (a card or "
        "a model's name; its refiner's graphs are copied beside the new card) instead of the "
        "defaults, which draw edges with the guided filter; e.g. --like garment for a model "
        "trained from garment's weights",
    )
    x.add_argument("--card-extra", help="JSON file merged into the card (metrics, commands)")
    x.add_argument(
        "--input-size",
        type=int,
        help="the long side the network runs at (default: the size it was trained for); the "
        "ONNX is fixed to a 4:3 landscape frame at that size, other shapes run through "
        "OpenCV's DNN",
    )
    x.add_argument(
        "--no-runtime-graph",
        dest="runtime_graph",
        action="store_false",
        help="do not write <name>_ort.onnx, the faster graph ONNX Runtime runs in place of "
        "<name>.onnx (`training runtime-graph` writes it later)",
    )

    rg = sub.add_parser(
        "runtime-graph",
        help="(re)write a model's faster graph for ONNX Runtime, <name>_ort.onnx",
        description="Write CARD's network as the graph ONNX Runtime runs in place of its "
        "<name>.onnx: deconvolutions as the equivalent sub-pixel convolutions (exact) and, "
        "unless --float, the layers below full resolution in int8, calibrated on the bundled "
        'example captures. The card gains an "onnx_runtime" entry naming it; OpenCV\'s DNN '
        "(Blender) keeps running <name>.onnx. `training export` does this by itself. A card "
        "with an edge refiner also gets <name>_edges_ort.onnx: the refiner computing only the "
        "centre of each window that the pipeline keeps (exact) and, unless --float, in int8 "
        "below its first layer (its entry: edge_refiner.onnx_runtime).",
        epilog="example:\n  python -m training runtime-graph ~/.local/share/segcore/models/"
        "my-garment.json",
        formatter_class=HelpFormatter,
    )
    rg.add_argument("card", help="the model's card (.json)")
    rg.add_argument(
        "--float", action="store_true", help="sub-pixel convolutions only, every layer in float"
    )

    t1 = sub.add_parser(
        "table1",
        help="the paper's Table I: variants with the same budget",
        description="Train the paper's variants (the full network, no multi-scale fusion, no "
        "residual connections, the FCN-style baseline) with the same training budget on "
        "--data and print the comparison of docs/results.md. Takes train's options.",
        epilog="example:\n  python -m training table1 --data data/synth --out runs/table1 "
        "--steps 3000",
        formatter_class=HelpFormatter,
    )
    _add_train_args(t1)
    t1.add_argument(
        "--families",
        nargs="+",
        metavar="ROOT",
        help="score on these roots of held-out families (ROOT/<family>/<sequence>: means over "
        "frames at full resolution and the worst family) instead of the runs' own validation "
        "split",
    )

    rp = sub.add_parser(
        "realphotos",
        help="masks on real photos shipped with packages",
        description="Segment the real photos of people that ship with installed packages "
        "(scikit-image's astronaut and camera, matplotlib's Grace Hopper) and write a "
        "contact sheet of their masks: no ground truth, for people to judge.",
    )
    rp.add_argument("--model", default=None, help="model card or bundled name (garment)")
    rp.add_argument(
        "--out", default="docs/real_photos.png", help="the sheet (default docs/real_photos.png)"
    )

    ed = sub.add_parser(
        "edges",
        help="train the learned full-resolution edge refiner",
        description="Train the edge refiner (segcore.edges) on full-resolution frames of the "
        "data sets, refining the edges of --model; the checkpoint with the lowest loss on the "
        "--val windows is kept as OUT/best.pt, and every 1000th step in OUT/steps/. --choose "
        "scores those in the pipeline on the --val families' whole frames (boundary F at 2 "
        "px) and keeps the best as OUT/chosen.pt. With --export CARD, write OUT/chosen.pt "
        "(else OUT/best.pt) as <card's name>_edges.onnx beside CARD and name it in the card "
        "instead.",
        epilog="example:\n"
        "  python -m training edges --data data/train_hr --val data/fam_val --model garment "
        "--out runs/edges --steps 5000 --guide guided\n"
        "  python -m training edges --choose --val data/fam_val data/fam_val3 --model garment "
        "--out runs/edges\n"
        "  python -m training edges --out runs/edges --export segcore/models/garment.json",
        formatter_class=HelpFormatter,
    )
    ed.add_argument("--data", nargs="+", metavar="DIR", help="training data set root(s)")
    ed.add_argument("--val", nargs="+", metavar="DIR", help="validation data set root(s)")
    ed.add_argument("--out", default="runs/edges", help="run folder (default runs/edges)")
    ed.add_argument("--model", default=None, help="coarse model whose edges are refined")
    ed.add_argument("--steps", type=int, default=3000, help="optimisation steps (3000)")
    ed.add_argument("--batch", type=int, default=48, help="cells per batch (48)")
    ed.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3)")
    ed.add_argument("--width", type=int, default=12, help="channels of the refiner")
    ed.add_argument("--fuse", type=int, default=8, help="channels of the refiner's last layer")
    ed.add_argument(
        "--scale",
        type=float,
        nargs=2,
        default=(0.5, 2.0),
        metavar=("MIN", "MAX"),
        help="windows are rescaled by a factor in this range (other frame sizes)",
    )
    ed.add_argument("--margin", type=int, default=8, help="context pixels around each cell")
    ed.add_argument(
        "--levels",
        type=int,
        choices=(1, 2),
        default=1,
        help="resolution levels of the refiner's trunk: 1 = half resolution (context about 40 "
        "px), 2 = a quarter-resolution level too (about 100 px; use with --margin 16)",
    )
    ed.add_argument(
        "--guide",
        choices=("spline", "guided"),
        default="spline",
        help="the prior the refiner corrects: the spline-upsampled probability or the "
        "guided filter's",
    )
    ed.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    ed.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ed.add_argument(
        "--choose",
        action="store_true",
        help="score OUT/steps/*.pt in the pipeline on the --val families; keep the best as "
        "OUT/chosen.pt",
    )
    ed.add_argument(
        "--export", metavar="CARD", help="export OUT/chosen.pt (else best.pt) into this card"
    )
    ed.add_argument(
        "--no-runtime-graph",
        dest="runtime_graph",
        action="store_false",
        help="with --export: do not write <name>_edges_ort.onnx, the faster graph ONNX Runtime "
        "runs in place of the refiner (`training runtime-graph` writes it later)",
    )

    from .confidence import add_arguments as add_confidence

    add_confidence(
        sub.add_parser(
            "confidence",
            help="measure the confidence flag (suspect frames) on data sets and real photos",
            description="Segment each sequence as `segcore segment` does and compare the "
            "frames it flags as suspect with the frames that really fail (IoU below "
            "--bad-iou against the data's masks). Prints each confidence signal's spread on "
            "good and bad frames, the limit that would flag no good frame, and the flag's "
            "precision and recall with the limits in force (segcore/confidence.py, LIMITS). "
            "Tune the limits on validation families; report on test families.",
            epilog="example:\n  python -m training confidence --families data/fam_val --photos\n"
            "  python -m training confidence --families data/fam_test --json conf_test.json",
            formatter_class=HelpFormatter,
        )
    )

    f = sub.add_parser(
        "finetune",
        help="fine-tune the shipped model on your labelled photos",
        description="prepare + train + export in one command: the labelled photos are "
        "prepared as whole upright frames, as they are and mirrored (`prepare --whole-frames`; "
        "--paper-prep for the paper's crop and 8 symmetries), the model --base is trained on "
        "them for --steps steps, and the result is exported as --name into your model folder "
        f"({user}; --out-dir for elsewhere), where `segcore segment --model <name>` finds it. "
        "A model of that name already there is never replaced without --overwrite (checked "
        "before any work). The new card keeps --base's post-processing and learned edge "
        "refiner (--fresh-card: the defaults). The work folder keeps the prepared data and "
        "the training run.",
        epilog="example:\n"
        "  python -m training finetune my_photos/ my_labels/ --name my-garments\n"
        "  segcore segment shoot/ -o out/ --model my-garments",
        formatter_class=HelpFormatter,
    )
    f.add_argument("photos", metavar="PHOTOS", help="folder of your photos")
    f.add_argument(
        "labels",
        metavar="LABELS",
        help="folder of their labels: mask PNGs (255 = subject) or alpha cut-outs, matched "
        "by file name (DSC_1.jpg: DSC_1.png or DSC_1.jpg.png)",
    )
    f.add_argument("--name", required=True, help="name of the new model (its files' stem)")
    f.add_argument(
        "--base",
        default="garment",
        help="the model to start from: a bundled or your own model's name, its card (.json) "
        "or its weights (.pt); it needs the <name>.pt weights beside its card (default: "
        "garment, whose garment.pt ships with segcore)",
    )
    f.add_argument("--steps", type=int, default=600, help="optimisation steps (600)")
    f.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (2e-4)")
    f.add_argument("--work", help="work folder (default runs/finetune-<name>)")
    f.add_argument(
        "--out-dir", default=None, help=f"where the model goes (default: your model folder, {user})"
    )
    f.add_argument(
        "--overwrite", action="store_true", help="replace a model of this name in OUT_DIR"
    )
    f.add_argument(
        "--val",
        nargs=2,
        metavar=("VAL_PHOTOS", "VAL_LABELS"),
        help="held-out labelled photos of your setup (not in PHOTOS): scored at every quarter "
        "of the steps, and the best step exported (without: the last step)",
    )
    f.add_argument(
        "--paper-prep",
        action="store_true",
        help="prepare the photos the paper's way (cropped to the subject, the 8 symmetries of "
        "the square) instead of as whole upright frames and their mirror images",
    )
    f.add_argument(
        "--fresh-card",
        action="store_true",
        help="write the card's defaults (guided-filter edges) instead of taking --base's "
        "post-processing and learned edge refiner",
    )
    from .adapt_eval import add_arguments as add_adapt_eval

    add_adapt_eval(
        sub.add_parser(
            "adapt-eval",
            help="score segcore adapt: one and two corrected frames per sequence",
        )
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "synth":
        if getattr(args, "_synth_error", None):
            print(f"error: the synth generator needs bpy ({args._synth_error})", file=sys.stderr)
            return 2
        from .synth.cli import run

        return run(args)
    if getattr(args, "out_dir", "unset") is None:  # export, finetune: the user's model folder
        args.out_dir = user_models_dir()
    cmd = {
        "train": cmd_train,
        "eval": cmd_eval,
        "export": cmd_export,
        "runtime-graph": cmd_runtime_graph,
        "prepare": cmd_prepare,
        "finetune": cmd_finetune,
        "table1": cmd_table1,
        "realphotos": cmd_realphotos,
        "edges": cmd_edges,
        "confidence": cmd_confidence,
        "adapt-eval": cmd_adapt_eval,
    }[args.command]
    from segcore.errors import SegcoreError

    from .export import ModelExists

    try:
        return cmd(args)
    except (ModelExists, SegcoreError) as exc:  # a bad option or model: one line, no trace
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
