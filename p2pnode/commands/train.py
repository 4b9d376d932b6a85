"""``p2pnode train``: train the quality and duration predictors and report held-out metrics."""

from __future__ import annotations

import json
from pathlib import Path

from p2pnode.errors import ConfigError, NodeError

DEFAULT_OUT = Path("predictor.npz")
MIN_ROWS = 500
DEFAULT_UTC_OFFSET_H = -5.0   # models.forecast.DEFAULT_UTC_OFFSET_S (not imported: numpy)


def register(sub) -> None:
    parser = sub.add_parser(
        "train", help="train the transaction quality/duration predictors",
        description="Generate a seeded synthetic trade history, train the predictors on 80 %, "
                    "print held-out R2/MAE against the naive baselines (training mean, the "
                    "seller's past average) and write the model (a portable .npz that the node evaluates with numpy; needs the [train] extra).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"model file to write (default: {DEFAULT_OUT})")
    parser.add_argument("--rows", type=int, default=None, help="synthetic trades (default: 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and training (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--ledgers", type=Path, nargs="+", metavar="DIR",
                        help="train on the co-signed DELIVERY settlements in these ledger files "
                             "(or the *.db files in these directories) instead of synthetic "
                             "trades; held out: the last day and a quarter of the sellers")
    parser.add_argument("--utc-offset-h", type=float, default=DEFAULT_UTC_OFFSET_H,
                        help="with --ledgers: the ledgers' clock minus UTC in hours, which places "
                             f"the sun (default: {DEFAULT_UTC_OFFSET_H:g}, the simulator's clock; "
                             "0 for daemons on the wall clock)")
    parser.set_defaults(func=_train)


def ledger_files(paths: list[Path]) -> list[Path]:
    """The ledger files named, or found (``*.db``) in the directories named."""
    files = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.db"))
            if not found:
                raise ConfigError(f"--ledgers: {path} holds no ledger file (*.db)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"--ledgers: {path} does not exist")
    return files


def _train_on_ledgers(args) -> int:
    from models import ModelError
    from models.ledger_data import evaluate_by_day, evaluate_by_seller, rows_from_ledgers, fit_all
    from ledger import LedgerError
    files = ledger_files(args.ledgers)
    try:
        if not -14 <= args.utc_offset_h <= 14:
            raise ConfigError(f"--utc-offset-h must be between -14 and 14, got {args.utc_offset_h:g}")
        dataset = rows_from_ledgers(files, utc_offset_s=round(args.utc_offset_h * 3600))
        metrics = {"ledger_rows": len(dataset), "ledger_files": len(files)}
        if len(set(dataset.day.tolist())) > 1:
            metrics.update(evaluate_by_day(dataset, args.seed))
        metrics.update(evaluate_by_seller(dataset, args.seed))
        predictor = fit_all(dataset, args.seed).with_metrics(metrics)
        predictor.save(args.out)
    except (ModelError, LedgerError, OSError) as exc:
        raise NodeError(f"training on ledgers failed: {exc}") from exc
    if args.json:
        print(json.dumps(metrics | {"out": str(args.out)}))
    else:
        for name, value in metrics.items():
            print(f"{name:36} {value}")
        print(f"wrote {args.out}")
    return 0


def _train(args) -> int:
    if args.ledgers:
        return _train_on_ledgers(args)
    from models import ModelError, train
    from models.train import DEFAULT_ROWS
    rows = DEFAULT_ROWS if args.rows is None else args.rows
    if rows < MIN_ROWS:
        raise ConfigError(f"--rows must be at least {MIN_ROWS}, got {rows}")
    try:
        predictor, evaluation = train(rows, args.seed)
        predictor.save(args.out)
    except (ModelError, OSError) as exc:
        raise NodeError(f"training failed: {exc}") from exc
    if args.json:
        print(json.dumps(evaluation.to_dict() | {"out": str(args.out)}))
    else:
        print(evaluation.table())
        print(f"wrote {args.out}")
    return 0
