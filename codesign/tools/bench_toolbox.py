"""The training levers of issue 16 measured on digits in one run, seeds fixed.

Prints four Markdown tables of test accuracy (every figure from a model trained here):
(1) the quantized, 50 %-pruned student at 3 and 4 bits trained on labels vs distilled from one float
teacher (hidden layers x --teacher-width, trained once and saved as .h5); (2) magnitude pruning at
80 % and 90 % sparsity one-shot (one round), iterative (--rounds prune / fine-tune rounds) and
rewound (the same rounds, lottery-ticket rewinding to epoch --rewind-epoch); (3) structured neuron
pruning at 50 % by magnitude, Taylor and activation importance; (4) dense_0 (64 x 32) at two ranks
against the full layer: accuracy, multipliers (n_in*r + r*n_out vs n_in*n_out) and measured nonzeros.
Every model trains --epochs epochs per round on the default 64-32-32-10 MLP (6 bits unless stated).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from codesign import config, distill, train
from codesign.data import load_dataset
from codesign.model_io import model_input
from codesign.tools.tables import log, table


def _pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_toolbox", description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=30, help="training epochs per round of every model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-width", type=int, default=4, help="the float teacher's width multiplier")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of iterative and rewound pruning")
    ap.add_argument("--rewind-epoch", type=int, default=1)
    ap.add_argument("--ranks", default="4,8", help="two ranks of the low-rank dense_0")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    base = config.from_dict({}).replace(**{"training.epochs": args.epochs, "training.seed": args.seed})
    out: dict[str, Any] = {"epochs": args.epochs, "seed": args.seed}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_toolbox_") as tmp:
        work = Path(tmp)
        counter = iter(range(10_000))

        def run(**over: Any) -> dict[str, Any]:
            cfg = base.replace(**over)
            t0 = time.perf_counter()
            res = train.run(cfg, work / f"run{next(counter)}")
            log(f"{over}: accuracy {res['test_accuracy']:.4f}, sparsity {res['weight_sparsity']:.3f}, "
                f"{time.perf_counter() - t0:.1f} s")
            return res

        # (1) distillation: one float teacher for both bit widths
        teacher_path = work / "teacher.h5"
        acc_teacher = _train_teacher(base, args.teacher_width, teacher_path)
        log(f"float teacher (hidden x{args.teacher_width}): test accuracy {acc_teacher:.4f}")
        dist: dict[str, Any] = {"teacher_accuracy": acc_teacher, "teacher_width": args.teacher_width, "rows": {}}
        for bits in (3, 4):
            plain = run(**{"model.bits": bits})
            taught = run(**{"model.bits": bits, "training.distill.teacher": str(teacher_path)})
            dist["rows"][bits] = {"labels": plain["test_accuracy"], "distilled": taught["test_accuracy"],
                                  "sparsity": taught["weight_sparsity"]}
        out["distill"] = dist

        # (2) one-shot vs iterative vs rewound magnitude pruning
        prune: dict[str, Any] = {}
        for target in (0.8, 0.9):
            sp = {"pruning.target_sparsity": target}
            prune[target] = {
                "one-shot": run(**sp),
                "iterative": run(**sp, **{"pruning.rounds": args.rounds}),
                "rewound": run(**sp, **{"pruning.rounds": args.rounds, "pruning.rewind_epoch": args.rewind_epoch}),
            }
        out["pruning"] = {str(t): {k: {"accuracy": r["test_accuracy"], "sparsity": r["weight_sparsity"],
                                       "epochs_total": r["epochs_total"]} for k, r in v.items()}
                          for t, v in prune.items()}

        # (3) structured pruning criteria at equal sparsity
        crit = {c: run(**{"pruning.structured": True, "pruning.target_sparsity": 0.5, "pruning.criterion": c})
                for c in ("magnitude", "taylor", "activation")}
        out["criteria"] = {c: {"accuracy": r["test_accuracy"], "sparsity": r["weight_sparsity"]}
                           for c, r in crit.items()}

        # (4) low rank dense_0 at two ranks vs the full layer (no pruning: the multipliers are the rank's)
        ranks = [int(r) for r in args.ranks.split(",")]
        nop = {"pruning.target_sparsity": 0.0}
        full = run(**nop)
        lows = {r: run(**nop, **{"model.low_rank": {"dense_0": r}}) for r in ranks}
        d0 = next(e for e in full["layers"] if e["name"] == "dense_0")
        out["low_rank"] = {"full": {"accuracy": full["test_accuracy"], "multipliers": d0["weights"],
                                    "nonzero": d0["nonzero"]},
                           **{str(r): {"accuracy": res["test_accuracy"],
                                       "multipliers": res["low_rank"]["dense_0"]["multipliers"],
                                       "nonzero": res["low_rank"]["dense_0"]["nonzero"]}
                              for r, res in lows.items()}}
    out["wall_seconds"] = time.perf_counter() - t_start

    print(f"\n## Distillation (float teacher, hidden x{args.teacher_width}: {_pct(acc_teacher)}; "
          f"student 64-32-32-10, 50 % pruned, T = 4, alpha = 0.5)\n")
    print(table([["bits", "labels only", "distilled", "gain (points)"]] + [
        [str(b), _pct(r["labels"]), _pct(r["distilled"]), f"{100 * (r['distilled'] - r['labels']):+.2f}"]
        for b, r in dist["rows"].items()]))
    print(f"\n## Magnitude pruning: one-shot vs iterative ({args.rounds} rounds) vs rewound (rewind to epoch "
          f"{args.rewind_epoch})\n")
    rows = [["sparsity", "one-shot", "iterative", "rewound", "epochs (one-shot / iter / rewound)"]]
    for target, v in prune.items():
        rows.append([f"{int(target * 100)} %"] + [_pct(v[k]["test_accuracy"]) for k in ("one-shot", "iterative",
                                                                                          "rewound")]
                    + [" / ".join(str(v[k]["epochs_total"]) for k in ("one-shot", "iterative", "rewound"))])
    print(table(rows))
    print("\n## Structured (neuron) pruning at 50 %: importance criterion\n")
    print(table([["criterion", "accuracy", "weight sparsity"]] + [
        [c, _pct(r["test_accuracy"]), _pct(r["weight_sparsity"])] for c, r in crit.items()]))
    print("\n## Low-rank dense_0 (64 x 32), unpruned\n")
    lr = out["low_rank"]
    print(table([["dense_0", "accuracy", "multipliers", "nonzero weights"]] + [
        [k if k == "full" else f"rank {k}", _pct(v["accuracy"]), str(v["multipliers"]), str(v["nonzero"])]
        for k, v in lr.items()]))
    print(f"\nwall time {out['wall_seconds']:.0f} s, {args.epochs} epochs per round, seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True))
    return 0


def _train_teacher(base: config.Config, width: int, path: Path) -> float:
    """Train the float teacher once (seeded like the students), save it as .h5, return its accuracy."""
    import numpy as np
    import tensorflow as tf

    cfg = base.replace(**{"training.distill.teacher_width": width})
    train._seed_everything(cfg.training.seed)
    data = load_dataset(cfg.data, cfg.training.seed)
    model = distill.float_model(cfg, train.input_shape(cfg, data.n_features), data.n_classes)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.training.learning_rate),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(model_input(model, data.X_train), data.y_train, epochs=cfg.training.epochs,
              batch_size=cfg.training.batch_size, shuffle=True, verbose=0)
    model.save(path)
    logits = model.predict(model_input(model, data.X_test), verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == data.y_test))


if __name__ == "__main__":
    raise SystemExit(main())
