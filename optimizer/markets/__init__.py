"""Markets from the literature and feeder accounting, as pure functions.

* :mod:`~optimizer.markets.orders`: ``Order``, ``Trade``, ``TimeFrames``, ``trade_matrix``.
* :mod:`~optimizer.markets.auction`: uniform-price k-double auction per time-of-day frame.
* :mod:`~optimizer.markets.continuous`: continuous matching with price-time priority.
* :mod:`~optimizer.markets.pooling`: cooperative pooling of one interval's surpluses.
* :mod:`~optimizer.markets.accounting`: G, C, T, local, surplus/deficit, loss and its alert.
* :mod:`~optimizer.markets.feeder_state`: transformer loading, voltages, technical losses.
* :mod:`~optimizer.markets.pool_price`: real-time pool price from the supply/demand ratio.
* :mod:`~optimizer.markets.tables`: orders and readings from CSV rows, errors naming line/column.
* :mod:`~optimizer.markets.welfare`, :mod:`~optimizer.markets.nsga2`: buyer/seller welfare
  Pareto front under load-flow feasibility (uses :mod:`optimizer.powerflow`).

Errors: :class:`MarketError` > :class:`OrderError` (names the order or field). Expected
outcomes (nothing matched, infeasible network) are results.
"""

from optimizer.markets.accounting import FeederAccount, LossWatch, account_interval
from optimizer.markets.auction import AuctionResult, PricingRule, clear_double_auction, clear_frames
from optimizer.markets.continuous import ContinuousResult, match_continuous, match_frames
from optimizer.markets.errors import MarketError, OrderError
from optimizer.markets.feeder_state import FeederState, feeder_state, place_on_houses
from optimizer.markets.nsga2 import Nsga2Config, Nsga2Result, WelfareSolution, optimise_welfare
from optimizer.markets.orders import Order, Side, TimeFrames, Trade, TradeMatrix, trade_matrix
from optimizer.markets.pool_price import PoolPrice, PoolTariffs, pool_price
from optimizer.markets.pooling import NodeReading, PoolAllocation, PoolResult, share_pool
from optimizer.markets.tables import orders_from_rows, readings_from_rows
from optimizer.markets.welfare import Participant, WelfareProblem, problem_from_orders

__all__ = [
    "AuctionResult", "ContinuousResult", "FeederAccount", "FeederState", "LossWatch", "MarketError",
    "NodeReading", "Nsga2Config", "Nsga2Result", "Order", "OrderError", "Participant",
    "PoolAllocation", "PoolPrice", "PoolResult", "PoolTariffs", "PricingRule", "Side",
    "TimeFrames", "Trade", "TradeMatrix", "WelfareProblem", "WelfareSolution",
    "account_interval", "clear_double_auction", "clear_frames", "feeder_state", "match_continuous",
    "match_frames", "optimise_welfare", "orders_from_rows", "place_on_houses", "pool_price", "problem_from_orders",
    "readings_from_rows", "share_pool", "trade_matrix",
]
