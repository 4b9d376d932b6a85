"""Build a :class:`Feeder` from a pandapower network (balanced, radial, one external grid).

The element models are pandapower's, re-derived from its documented parameters:

* line: pi model, ``z = (r + jx) * length / parallel``, shunt ``(g + j 2 pi f c) * length *
  parallel`` split half and half between the two ends;
* two-winding transformer: T model on the low-voltage side of an ideal transformer of ratio
  ``(vn_hv / vn_lv) / (vn_hv_bus / vn_lv_bus) * exp(j shift)``; short-circuit impedance from
  ``vk_percent``/``vkr_percent`` split by ``leakage_*_ratio_hv`` (0.5 by default); magnetising
  branch in the middle with conductance ``pfe_kw`` (iron losses) and susceptance from
  ``i0_percent``; ratio taps change the rated voltage of their side;
* loads and static generators: constant power, ``p_mw * scaling`` (generation counts negative).

Anything else (generators, 3-winding transformers, shunts, ZIP loads, closed bus-bus switches,
meshes) is refused with a :class:`FeederError` naming the table, row and field.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from optimizer.powerflow.errors import FeederError
from optimizer.powerflow.feeder import (
    Branches, Feeder, Topology, check_topology, fold_sweeps, sweep_matrices,
)

UNSUPPORTED_TABLES = (
    "gen", "trafo3w", "impedance", "dcline", "ward", "xward", "storage", "shunt", "motor",
    "asymmetric_load", "asymmetric_sgen", "svc", "tcsc", "ssc", "vsc",
)
ZIP_COLUMNS = ("const_z_p_percent", "const_i_p_percent", "const_z_q_percent",
               "const_i_q_percent", "const_z_percent", "const_i_percent")


@dataclass(frozen=True)
class _Edge:
    kind: str  # "line" or "trafo"
    index: int
    a: int  # from bus (lines) or hv bus (transformers)
    b: int


class _Builder:
    """Collects nodes in parent-first order while walking the bus graph from the slack."""

    def __init__(self, root_bus: int, root_vn_kv: float):
        self.parent, self.ratio, self.z, self.shunt = [-1], [1.0 + 0j], [0j], [0j]
        self.vn_kv, self.node_of = [root_vn_kv], {root_bus: 0}

    def add(self, parent: int, ratio: complex, z: complex, vn_kv: float) -> int:
        self.parent.append(parent), self.ratio.append(ratio), self.z.append(z)
        self.shunt.append(0j), self.vn_kv.append(vn_kv)
        return len(self.parent) - 1


def feeder_from_pandapower(net, name: str = "") -> Feeder:
    """A :class:`Feeder` with the buses, lines, transformers, loads and sgens of ``net``."""
    _check_supported(net)
    buses = net.bus.index[net.bus.in_service.astype(bool)]
    root_bus, v_slack = _slack(net)
    builder = _Builder(root_bus, float(net.bus.vn_kv.at[root_bus]))
    lines, trafos = _walk(net, set(buses), root_bus, builder)
    missing = [b for b in buses if b not in builder.node_of]
    if missing:
        raise FeederError(f"bus {missing[0]}: not connected to the external grid")
    topology = Topology(np.array(builder.parent), np.array(builder.ratio), np.array(builder.z))
    check_topology(topology)
    backward, forward, no_load = sweep_matrices(topology)
    shunt = np.array(builder.shunt)
    folded, folded_no_load = fold_sweeps(backward, forward, shunt, no_load)
    bus_index = np.array(sorted(buses))
    p_mw, q_mvar, load_buses = _bus_loads(net, bus_index)
    return Feeder(
        name=name, base_mva=float(net.sn_mva), bus_index=bus_index,
        node_of_bus=np.array([builder.node_of[b] for b in bus_index]),
        node_vn_kv=np.array(builder.vn_kv), v_slack_pu=v_slack,
        shunt_pu=shunt, no_load_factor=no_load, backward=backward, forward=forward,
        folded=folded, folded_no_load=folded_no_load, lines=lines, trafos=trafos[0],
        trafo_hv_node=trafos[1], trafo_ratio=trafos[2],
        base_p_mw=p_mw, base_q_mvar=q_mvar, load_buses=load_buses,
    )


def _check_supported(net) -> None:
    for table in UNSUPPORTED_TABLES:
        frame = net.get(table)
        if frame is None or len(frame) == 0:
            continue
        active = frame[frame.in_service.astype(bool)] if "in_service" in frame.columns else frame
        if len(active):
            raise FeederError(f"{table} {active.index[0]}: table '{table}' is not supported "
                              "(lines, 2-winding transformers, loads and sgens only)")
    for table in ("load", "sgen"):
        frame = net[table]
        for column in ZIP_COLUMNS:
            if column in frame and (frame[column].fillna(0) != 0).any():
                row = frame.index[(frame[column].fillna(0) != 0)][0]
                raise FeederError(f"{table} {row}: {column} must be 0 (constant power only)")
    switches = net.switch
    closed_bb = switches[(switches.et == "b") & switches.closed.astype(bool)]
    if len(closed_bb):
        raise FeederError(f"switch {closed_bb.index[0]}: closed bus-bus switches are not supported")


def _slack(net) -> tuple[int, complex]:
    grids = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if len(grids) != 1:
        raise FeederError(f"ext_grid: expected exactly one in-service external grid, got {len(grids)}")
    row = grids.iloc[0]
    return int(row.bus), complex(row.vm_pu * np.exp(1j * np.deg2rad(row.va_degree)))


def _edges(net, buses: set[int]) -> list[_Edge]:
    open_sw = net.switch[~net.switch.closed.astype(bool)]
    edges = []
    for kind, table, a, b in (("line", net.line, "from_bus", "to_bus"),
                              ("trafo", net.trafo, "hv_bus", "lv_bus")):
        cut = set(open_sw.element[open_sw.et == kind[0]])
        for idx, row in table.iterrows():
            if row.in_service and idx not in cut and row[a] in buses and row[b] in buses:
                edges.append(_Edge(kind, int(idx), int(row[a]), int(row[b])))
    return edges


def _walk(net, buses: set[int], root: int, builder: _Builder):
    adjacency: dict[int, list[_Edge]] = {}
    for edge in _edges(net, buses):
        adjacency.setdefault(edge.a, []).append(edge)
        adjacency.setdefault(edge.b, []).append(edge)
    used: set[tuple[str, int]] = set()
    line_rows, trafo_rows = [], []
    queue = deque([root])
    while queue:
        bus = queue.popleft()
        for edge in adjacency.get(bus, []):
            if (edge.kind, edge.index) in used:
                continue
            used.add((edge.kind, edge.index))
            child = edge.b if edge.a == bus else edge.a
            if child in builder.node_of:
                raise FeederError(f"{edge.kind} {edge.index}: closes a loop, the feeder is not radial")
            if edge.kind == "line":
                line_rows.append(_add_line(net, edge, bus, child, builder))
            else:
                trafo_rows.append(_add_trafo(net, edge, bus, child, builder))
            queue.append(child)
    return _line_branches(line_rows), _trafo_branches(trafo_rows)


def _add_line(net, edge: _Edge, bus: int, child: int, builder: _Builder) -> tuple:
    row = net.line.loc[edge.index]
    vn_kv = float(net.bus.vn_kv.at[edge.a])
    if float(net.bus.vn_kv.at[edge.b]) != vn_kv:
        raise FeederError(f"line {edge.index}: from_bus and to_bus have different vn_kv")
    z_base = vn_kv ** 2 / float(net.sn_mva)
    z = (row.r_ohm_per_km + 1j * row.x_ohm_per_km) * row.length_km / row.parallel / z_base
    g_us = float(row.get("g_us_per_km", 0.0) or 0.0)
    y = (g_us * 1e-6 + 2j * np.pi * float(net.f_hz) * row.c_nf_per_km * 1e-9) \
        * row.length_km * row.parallel * z_base
    parent = builder.node_of[bus]
    node = builder.add(parent, 1.0 + 0j, complex(z), vn_kv)
    builder.node_of[child] = node
    builder.shunt[parent] += y / 2
    builder.shunt[node] += y / 2
    return edge.index, node, float(row.max_i_ka * row.df * row.parallel)


def _add_trafo(net, edge: _Edge, bus: int, child: int, builder: _Builder) -> tuple:
    if bus != edge.a:
        raise FeederError(f"trafo {edge.index}: reached from its lv_bus; the slack must be on "
                          "the high-voltage side")
    row = net.trafo.loc[edge.index]
    vn_hv_bus, vn_lv_bus = (float(net.bus.vn_kv.at[b]) for b in (edge.a, edge.b))
    vn_hv, vn_lv = _tapped_voltages(row, edge.index)
    ratio = (vn_hv / vn_lv) / (vn_hv_bus / vn_lv_bus) * np.exp(1j * np.deg2rad(row.shift_degree))
    base_mva = float(net.sn_mva)
    scale = (vn_lv / vn_lv_bus) ** 2 * base_mva / row.sn_mva / row.parallel
    r = row.vkr_percent / 100 * scale
    x = np.sqrt((row.vk_percent / 100 * scale) ** 2 - r ** 2)
    pfe_mw, ym_mva = row.pfe_kw / 1000, row.i0_percent / 100 * row.sn_mva
    b_mva = -np.sqrt(max(ym_mva ** 2 - pfe_mw ** 2, 0.0))
    y_m = (pfe_mw + 1j * b_mva) / vn_lv ** 2 * (vn_lv_bus ** 2 / base_mva) * row.parallel
    r_hv, x_hv = (_ratio_hv(row, c) for c in ("leakage_resistance_ratio_hv",
                                              "leakage_reactance_ratio_hv"))
    hv_node = builder.node_of[bus]
    mid = builder.add(hv_node, complex(ratio), complex(r * r_hv + 1j * x * x_hv), vn_lv_bus)
    builder.shunt[mid] += complex(y_m)
    lv = builder.add(mid, 1.0 + 0j, complex(r * (1 - r_hv) + 1j * x * (1 - x_hv)), vn_lv_bus)
    builder.node_of[child] = lv
    return edge.index, mid, float(row.sn_mva * row.parallel), hv_node, complex(ratio)


def _ratio_hv(row, column: str) -> float:
    value = row.get(column, np.nan)
    return 0.5 if value is None or not np.isfinite(value) else float(value)


def _tapped_voltages(row, index: int) -> tuple[float, float]:
    vn_hv, vn_lv = float(row.vn_hv_kv), float(row.vn_lv_kv)
    pos, neutral, step = (row.get(c, np.nan) for c in ("tap_pos", "tap_neutral", "tap_step_percent"))
    values = [np.nan if v is None else float(v) for v in (pos, neutral, step)]
    if not all(np.isfinite(values)) or values[0] == values[1]:
        return vn_hv, vn_lv
    if row.get("tap_dependency_table", False) is True:
        raise FeederError(f"trafo {index}: tap_dependency_table is not supported")
    degree = row.get("tap_step_degree", 0.0)
    kind = row.get("tap_changer_type", "Ratio")
    if (degree is not None and np.isfinite(degree) and degree != 0) or kind not in ("Ratio", None):
        raise FeederError(f"trafo {index}: tap_changer_type must be 'Ratio' without tap_step_degree")
    factor = 1 + (values[0] - values[1]) * values[2] / 100
    side = row.get("tap_side")
    if side == "hv":
        return vn_hv * factor, vn_lv
    if side == "lv":
        return vn_hv, vn_lv * factor
    raise FeederError(f"trafo {index}: tap_side must be 'hv' or 'lv', got {side!r}")


def _line_branches(rows: list[tuple]) -> Branches:
    index, node, rating = (np.array(c) for c in zip(*rows)) if rows else ([],) * 3
    return Branches(np.asarray(index, dtype=int), np.asarray(node, dtype=int),
                    np.asarray(rating, dtype=float))


def _trafo_branches(rows: list[tuple]) -> tuple[Branches, np.ndarray, np.ndarray]:
    columns = list(zip(*rows)) if rows else [[], [], [], [], []]
    branches = Branches(np.asarray(columns[0], dtype=int), np.asarray(columns[1], dtype=int),
                        np.asarray(columns[2], dtype=float))
    return branches, np.asarray(columns[3], dtype=int), np.asarray(columns[4], dtype=complex)


def _bus_loads(net, bus_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    position = {int(b): i for i, b in enumerate(bus_index)}
    p, q = np.zeros(len(bus_index)), np.zeros(len(bus_index))
    hosts: list[int] = []
    for table, sign in (("load", 1.0), ("sgen", -1.0)):
        frame = net[table]
        for _, row in frame[frame.in_service.astype(bool)].iterrows():
            if int(row.bus) not in position:
                continue
            at = position[int(row.bus)]
            p[at] += sign * row.p_mw * row.scaling
            q[at] += sign * row.q_mvar * row.scaling
            if table == "load" and at not in hosts:
                hosts.append(at)
    return p, q, tuple(sorted(hosts))
