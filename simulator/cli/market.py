"""``p2pnode market auction|pool|nsga2|compare`` and ``p2pnode powerflow``.

The literature markets and the feeder load flow of :mod:`optimizer.markets` and
:mod:`optimizer.powerflow` on CSV files, JSON on standard output; ``market compare`` runs them
all on a simulator scenario (:mod:`simulator.mechanisms`) and prints a table (or JSON). Bad
files and options exit with status 2 and a message naming the file, line, row and column.
Prices are per kWh (the examples use EUR/kWh).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

from p2pnode.errors import NodeError

DEFAULT_GRID_TARIFF = 0.30
DEFAULT_LOSS_FRACTION = 0.10
COMPARE_MECHANISMS = "double_auction,continuous,pooling,nsga2"  # simulator.mechanisms.MECHANISMS


class MarketInputError(NodeError):
    """A market or load-flow input file or option cannot be used (names the file and field)."""


def register(sub) -> None:
    market = sub.add_parser("market", help="run a literature market on CSV orders or readings",
                            description="Double auction, continuous matching, feeder pooling and "
                                        "NSGA-II welfare optimisation; JSON on standard output.")
    cmds = market.add_subparsers(dest="market_command", metavar="SUBCOMMAND", required=True)
    _register_auction(cmds)
    _register_pool(cmds)
    _register_nsga2(cmds)
    _register_compare(cmds)
    flow = sub.add_parser("powerflow", help="backward-forward sweep load flow of a named feeder",
                          description="Solve a named feeder (case33bw, kerber_dorfnetz) with its own "
                                      "loads, optionally scaled, and report voltages and losses.")
    flow.add_argument("feeder", metavar="NAME", help="case33bw or kerber_dorfnetz")
    flow.add_argument("--load-scale", type=float, default=1.0, metavar="S",
                      help="multiply every load and generator of the feeder (default 1)")
    flow.add_argument("--check", action="store_true",
                      help="also run pandapower's runpp and report the largest voltage difference")
    flow.set_defaults(func=_powerflow)


def _register_auction(cmds) -> None:
    auction = cmds.add_parser(
        "auction", help="uniform-price double auction per time-of-day frame",
        description="Clear ORDERS.csv (columns id,side,kwh,price,frame; side sell|buy; frame "
                    "off_peak|normal|peak) once per frame at one market clearing price.")
    auction.add_argument("orders", type=Path, metavar="ORDERS.csv")
    auction.add_argument("--grid-tariff", type=float, default=DEFAULT_GRID_TARIFF, metavar="P",
                         help=f"grid tariff per kWh, the price ceiling (default {DEFAULT_GRID_TARIFF})")
    auction.add_argument("--k", type=float, default=0.5,
                         help="k-double auction: 0 = lowest, 1 = highest admissible price (default 0.5)")
    auction.add_argument("--bounds", choices=("marginal", "clearing"), default="marginal",
                         help="price interval: marginal matched pair, or also the best unmatched orders")
    auction.add_argument("--continuous", action="store_true",
                         help="match orders on arrival with price-time priority instead")
    auction.set_defaults(func=_auction)


def _register_pool(cmds) -> None:
    pool = cmds.add_parser(
        "pool", help="feeder cooperative pooling and accounting for one interval",
        description="READINGS.csv has node,generation_kwh,consumption_kwh. Own generation is used "
                    "first, surpluses are pooled in proportion to the remaining demand. "
                    "loss_kwh = transformer + generation - consumption (unaccounted energy).")
    pool.add_argument("readings", type=Path, metavar="READINGS.csv")
    pool.add_argument("--transformer-kwh", type=float, required=True, metavar="T",
                      help="energy the transformer delivered into the feeder (negative: export)")
    pool.add_argument("--loss-threshold-kwh", type=float, metavar="X",
                      help=f"alert when |loss| > X (default {DEFAULT_LOSS_FRACTION * 100:.0f}%% of consumption)")
    pool.add_argument("--feeder", metavar="NAME",
                      help="also solve the load flow on this feeder (nodes at their bus column, "
                           "else on its houses in turn): voltages, transformer loading, losses")
    pool.add_argument("--interval-minutes", type=float, default=15.0, metavar="M",
                      help="length of the interval, for --feeder (default 15)")
    pool.add_argument("--feed-in-tariff", type=float, metavar="F", help="report the pool price (with --retail-tariff)")
    pool.add_argument("--retail-tariff", type=float, metavar="R", help="report the pool price (with --feed-in-tariff)")
    pool.set_defaults(func=_pool)


def _register_nsga2(cmds) -> None:
    nsga2 = cmds.add_parser(
        "nsga2", help="NSGA-II buyer/seller welfare optimisation checked by the load flow",
        description="For each frame of ORDERS.csv (optional column bus: a pandapower bus index; "
                    "orders without one go to the feeder's houses in turn), search the Pareto "
                    "front of seller and buyer welfare; sellers at buses outside 0.95-1.05 p.u. "
                    "are capped to 90 % until the front is feasible.")
    nsga2.add_argument("orders", type=Path, metavar="ORDERS.csv")
    nsga2.add_argument("--feeder", required=True, metavar="NAME", help="case33bw or kerber_dorfnetz")
    nsga2.add_argument("--grid-tariff", type=float, default=DEFAULT_GRID_TARIFF, metavar="P")
    nsga2.add_argument("--background-scale", type=float, default=0.0, metavar="S",
                       help="add the feeder's own loads times S to every candidate (default 0)")
    nsga2.add_argument("--seed", type=int, default=0)
    nsga2.add_argument("--population", type=int, default=48)
    nsga2.add_argument("--generations", type=int, default=60)
    nsga2.set_defaults(func=_nsga2)


def _register_compare(cmds) -> None:
    compare = cmds.add_parser(
        "compare", help="run every literature market on a scenario's data, side by side",
        description="Build the scenario's household profiles and clear every interval with each "
                    "mechanism; score them like every run (matched energy and welfare against "
                    "the exact optimum, self-sufficiency, grid import, peer price, savings and "
                    "their Gini) next to no trading and the optimum.")
    compare.add_argument("scenario", type=Path, nargs="?", metavar="SCENARIO.toml",
                         help="scenario file (default: the quickstart, examples/quickstart.toml)")
    compare.add_argument("--mechanisms", default=COMPARE_MECHANISMS, metavar="A,B,...",
                         help=f"comma-separated subset of {COMPARE_MECHANISMS} (default: all)")
    compare.add_argument("--k", type=float, default=0.5,
                         help="double auction price: 0 = lowest, 1 = highest admissible (default 0.5)")
    compare.add_argument("--nsga2-population", type=int, default=24, metavar="N",
                         help="NSGA-II population per interval (default 24)")
    compare.add_argument("--nsga2-generations", type=int, default=30, metavar="G",
                         help="NSGA-II generations per interval (default 30)")
    compare.add_argument("--modes", metavar="M,...",
                         help="also trade the scenario with real nodes in these market modes "
                              "(ex_post, real_time, day_ahead: one swarm each, minutes per "
                              "mode) and compare them against the perfect-foresight optimum")
    compare.add_argument("--out", type=Path, default=Path("runs/modes"), metavar="DIR",
                         help="run directories of --modes, one per mode (default runs/modes)")
    compare.add_argument("--json", action="store_true", help="JSON instead of a table")
    compare.set_defaults(func=_compare)


def _read_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    from optimizer.markets.errors import OrderError
    from optimizer.markets.tables import check_header

    from p2pnode.errors import FileLimitError
    from p2pnode.files import CSV_MAX_BYTES, read_bounded

    try:
        text = read_bounded(path, CSV_MAX_BYTES, "order CSV").decode("utf-8-sig")
    except OSError as exc:
        raise MarketInputError(f"{path}: cannot read: {exc.strerror}") from None
    except FileLimitError as exc:
        raise MarketInputError(str(exc)) from None
    except UnicodeDecodeError:
        raise MarketInputError(f"{path}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    rows = []
    try:
        check_header(reader.fieldnames, required, str(path))
        for row in reader:
            if None in row:
                raise MarketInputError(f"{path} line {reader.line_num}: more fields than columns")
            rows.append((reader.line_num, {k.strip(): v for k, v in row.items()}))
    except csv.Error as exc:
        raise MarketInputError(f"{path} line {reader.line_num}: bad CSV: {exc}") from None
    except OrderError as exc:
        raise MarketInputError(str(exc)) from exc
    return rows


def _core_errors():
    from optimizer.markets.errors import MarketError
    from optimizer.powerflow.errors import PowerFlowError

    return (MarketError, PowerFlowError)


def _emit(payload: dict) -> int:
    print(json.dumps(payload, indent=2, default=_plain))
    return 0


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 9)


def _auction(args) -> int:
    from optimizer.markets import (PricingRule, clear_frames, match_frames, trade_matrix)
    from optimizer.markets.tables import ORDER_COLUMNS, orders_from_rows

    rows = _read_rows(args.orders, ORDER_COLUMNS)
    try:
        orders, _ = orders_from_rows(rows, str(args.orders))
        if args.continuous:
            frames = {r.frame: _continuous_json(r) for r in match_frames(orders, args.grid_tariff)}
            return _emit({"mode": "continuous", "grid_tariff": args.grid_tariff, "frames": frames})
        rule = PricingRule(args.k, args.bounds)
        results = clear_frames(orders, args.grid_tariff, rule)
    except _core_errors() as exc:
        raise MarketInputError(str(exc)) from exc
    frames = {r.frame: _auction_json(r, trade_matrix(r.trades)) for r in results}
    return _emit({"mode": "auction", "grid_tariff": args.grid_tariff,
                  "pricing": {"k": args.k, "bounds": args.bounds}, "frames": frames})


def _auction_json(result, matrix) -> dict:
    return {
        "mcp": _num(result.mcp), "matched_kwh": _num(result.matched_kwh),
        "price_bounds": None if result.price_bounds is None else [_num(p) for p in result.price_bounds],
        "welfare": _num(result.welfare),
        "trades": [{"seller": t.seller, "buyer": t.buyer, "kwh": _num(t.kwh)} for t in result.trades],
        "matrix": {"sellers": matrix.sellers, "buyers": matrix.buyers,
                   "kwh": [[_num(v) for v in row] for row in matrix.kwh]},
        "unmatched": [{"id": oid, "kwh": _num(kwh)} for oid, kwh in result.unmatched],
    }


def _continuous_json(result) -> dict:
    matched = result.matched_kwh
    paid = sum(t.kwh * t.price for t in result.trades)
    return {
        "matched_kwh": _num(matched), "average_price": _num(paid / matched) if matched else None,
        "trades": [{"seller": t.seller, "buyer": t.buyer, "kwh": _num(t.kwh), "price": _num(t.price)}
                   for t in result.trades],
        "resting": [{"id": oid, "kwh": _num(kwh)} for oid, kwh in result.resting],
    }


def _pool(args) -> int:
    from optimizer.markets import LossWatch, PoolTariffs, account_interval, pool_price, share_pool
    from optimizer.markets.tables import READING_COLUMNS, readings_from_rows

    rows = _read_rows(args.readings, READING_COLUMNS)
    if (args.feed_in_tariff is None) != (args.retail_tariff is None):
        raise MarketInputError("--feed-in-tariff and --retail-tariff: give both or neither")
    try:
        readings, buses = readings_from_rows(rows, str(args.readings))
        pool = share_pool(readings)
        consumption = sum(a.consumption_kwh for a in pool.allocations)
        threshold = (DEFAULT_LOSS_FRACTION * consumption if args.loss_threshold_kwh is None
                     else args.loss_threshold_kwh)
        account = account_interval(pool, args.transformer_kwh, LossWatch(threshold))
        price = None
        if args.feed_in_tariff is not None:
            price = pool_price(pool.pool_kwh, pool.demand_kwh,
                               PoolTariffs(args.feed_in_tariff, args.retail_tariff))
        state = _feeder_state(args, readings, buses)
    except _core_errors() as exc:
        raise MarketInputError(str(exc)) from exc
    payload = {name: _num(getattr(account, name)) for name in (
        "generation_kwh", "consumption_kwh", "transformer_kwh", "local_kwh", "surplus_kwh",
        "deficit_kwh", "loss_kwh")}
    payload.update(alert=account.alert, loss_threshold_kwh=_num(threshold),
                   pool={"pool_kwh": _num(pool.pool_kwh), "demand_kwh": _num(pool.demand_kwh),
                         "shared_kwh": _num(pool.shared_kwh)})
    if price is not None:
        payload["pool_price"] = {"supply_demand_ratio": _num(price.supply_demand_ratio),
                                 "sell_price": _num(price.sell_price), "buy_price": _num(price.buy_price)}
    if state is not None:
        payload["feeder"] = {"name": args.feeder, **{k: (_num(v) if isinstance(v, float) else v)
                                                     for k, v in vars(state).items()}}
        payload["non_technical_loss_kwh"] = _num(account.loss_kwh - state.technical_loss_kwh)
    payload["allocations"] = [
        {key: (value if key == "node" else _num(value)) for key, value in vars(a).items()}
        for a in pool.allocations]
    return _emit(payload)


def _feeder_state(args, readings, buses):
    if args.feeder is None:
        return None
    from optimizer.markets import feeder_state, place_on_houses
    from optimizer.powerflow import load_feeder

    if not args.interval_minutes > 0:
        raise MarketInputError(f"--interval-minutes: must be > 0, got {args.interval_minutes}")
    feeder = load_feeder(args.feeder)
    placed = place_on_houses([r.node for r in readings], buses, feeder)
    return feeder_state(readings, placed, feeder, args.interval_minutes / 60.0)


def _nsga2(args) -> int:
    import numpy as np

    from optimizer.markets import (
        Nsga2Config, TimeFrames, optimise_welfare, place_on_houses, problem_from_orders,
    )
    from optimizer.markets.orders import by_frame
    from optimizer.markets.tables import ORDER_COLUMNS, orders_from_rows
    from optimizer.powerflow import load_feeder

    rows = _read_rows(args.orders, ORDER_COLUMNS)
    frames, rng = TimeFrames(), np.random.default_rng(args.seed)
    try:
        orders, buses = orders_from_rows(rows, str(args.orders))
        feeder = load_feeder(args.feeder)
        buses = place_on_houses([o.id for o in orders], buses, feeder)
        config = Nsga2Config(population=args.population, generations=args.generations)
        out = {}
        for name, group in by_frame(orders, frames).items():
            if group:
                problem = problem_from_orders(group, buses, args.grid_tariff, frames.hours(name))
                result = optimise_welfare(problem, feeder, rng, config,
                                          feeder.base_p_mw * args.background_scale,
                                          feeder.base_q_mvar * args.background_scale)
                out[name] = _nsga2_json(result, problem, feeder)
    except _core_errors() as exc:
        raise MarketInputError(str(exc)) from exc
    return _emit({"feeder": args.feeder, "seed": args.seed, "grid_tariff": args.grid_tariff,
                  "buses": buses, "frames": out})


def _nsga2_json(result, problem, feeder) -> dict:
    def solution(s, full: bool) -> dict:
        out = {"price": _num(s.price), "seller_welfare": _num(s.seller_welfare),
               "buyer_welfare": _num(s.buyer_welfare), "social_welfare": _num(s.social_welfare),
               "traded_kwh": _num(s.traded_kwh), "feasible": s.feasible,
               "vm_min_pu": _num(s.vm_pu.min()), "vm_max_pu": _num(s.vm_pu.max())}
        if full:
            out["trades"] = [{"seller": result.sellers[i], "buyer": result.buyers[j],
                              "kwh": _num(s.kwh[i, j])} for i, j in zip(*s.kwh.nonzero())]
            out["voltages"] = {"bus": feeder.bus_index, "vm_pu": [_num(v) for v in s.vm_pu]}
        return out

    return {
        "status": result.status, "reason": result.reason, "rounds": result.rounds,
        "evaluations": result.evaluations, "hours": problem.hours,
        "supply_kwh": {sid: _num(v) for sid, v in zip(result.sellers, result.supply_kwh)},
        "capped_sellers": result.capped_sellers,
        "chosen": None if result.chosen is None else solution(result.chosen, True),
        "front": [solution(s, False) for s in result.front],
    }


def _compare(args) -> int:
    from optimizer.markets import Nsga2Config, PricingRule
    from simulator import Scenario, SimulatorError, load_scenario
    from simulator.run import run_profiles
    from simulator.mechanisms import (
        check_names, compare_mechanisms, comparison_table, format_table, scenario_feeder,
    )

    try:
        names = check_names(n.strip() for n in args.mechanisms.split(",") if n.strip())
        PricingRule(args.k)
        config = Nsga2Config(population=args.nsga2_population, generations=args.nsga2_generations)
        scenario = Scenario.default() if args.scenario is None else load_scenario(args.scenario)
        feeder = scenario_feeder(scenario.feeder) if "nsga2" in names else None
        profiles, _ = run_profiles(scenario)   # the days our nodes trade in simulate
        comparison = compare_mechanisms(profiles, scenario.tariffs, names, feeder=feeder,
                                        seed=scenario.seed, k=args.k, nsga2=config)
    except (SimulatorError, *_core_errors()) as exc:
        raise MarketInputError(str(exc)) from exc
    rows = comparison_table(comparison)
    about = {"scenario": scenario.name, "source": scenario.source or "built-in quickstart",
             "meters": scenario.meters, "intervals": profiles.intervals,
             "interval_s": scenario.interval_s, "start_date": scenario.start_date.isoformat(),
             "feeder": scenario.feeder, "seed": scenario.seed,
             "currency": scenario.tariffs.currency, "mechanisms": list(names),
             "k": args.k, "nsga2": {"population": config.population,
                                    "generations": config.generations},
             "optimum_match_kwh": _num(comparison.optimum.matched_kwh)}
    modes = None
    if args.modes:
        from simulator.modes import compare_modes
        try:
            modes = compare_modes(scenario, [m.strip() for m in args.modes.split(",") if m.strip()],
                                  args.out, log=lambda line: print(line, file=sys.stderr))
        except SimulatorError as exc:
            raise MarketInputError(str(exc)) from exc
    if args.json:
        return _emit({**about, "rows": rows, **({"modes": modes} if modes else {})})
    print(f"{about['scenario']} ({about['source']}): {about['meters']} meters, "
          f"{about['intervals']} intervals of {about['interval_s']} s from "
          f"{about['start_date']}, feeder {about['feeder']}, seed {about['seed']}")
    print(format_table(rows, scenario.tariffs.currency))
    if modes:
        from simulator.modes import format_modes
        print(f"\nour nodes, by market mode (run directories in {args.out}/):")
        print(format_modes(modes))
    return 0


def _powerflow(args) -> int:
    from optimizer.powerflow import (FEEDERS, VoltageLimits, compare_with_pandapower,
                                     feeder_from_pandapower, pandapower_net, solve)

    try:
        net = pandapower_net(args.feeder)
        feeder = feeder_from_pandapower(net, args.feeder)
        p, q = feeder.base_p_mw * args.load_scale, feeder.base_q_mvar * args.load_scale
        result = solve(feeder, p, q)
        check = compare_with_pandapower(net, feeder, p, q) if args.check else None
    except _core_errors() as exc:
        raise MarketInputError(str(exc)) from exc
    vm, limits = result.vm_pu[0], VoltageLimits()
    payload = {
        "feeder": args.feeder, "description": FEEDERS[args.feeder], "load_scale": args.load_scale,
        "converged": bool(result.converged[0]), "iterations": result.iterations,
        "loss_kw": _num(result.loss_mw[0] * 1000), "p_slack_mw": _num(result.p_slack_mw[0]),
        "q_slack_mvar": _num(result.q_slack_mvar[0]),
        "min_vm_pu": _num(vm.min()), "min_vm_bus": int(feeder.bus_index[vm.argmin()]),
        "max_vm_pu": _num(vm.max()), "max_vm_bus": int(feeder.bus_index[vm.argmax()]),
        "limits_pu": [limits.v_min_pu, limits.v_max_pu],
        "buses_outside_limits": feeder.bus_index[result.outside_limits(limits)[0]],
        "trafo_loading_percent": [_num(v) for v in result.trafo_loading_percent[0]],
        "max_line_loading_percent": _num(result.line_loading_percent[0].max()),
        "voltages": {"bus": feeder.bus_index, "vm_pu": [_num(v) for v in vm]},
    }
    if check is not None:
        payload["pandapower"] = {"max_dv_pu": check.max_dv_pu,
                                 "loss_kw": _num(check.loss_pandapower_mw * 1000)}
    return _emit(payload)
