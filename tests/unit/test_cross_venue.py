"""One BTC long cascade recorded on three venues, in their wire formats, through ``flushwatch backtest``.

The recording (``tests/fixtures/cross_venue/``, written by ``make_btc_cascade.py`` there) carries the same
50 s flush as Binance ``!forceOrder@arr`` (``S`` SELL), Bybit ``allLiquidation`` (``S`` Buy) and OKX
``liquidation-orders`` (contracts, converted with ``ctVal`` from the instruments REST line), plus trades.
The expected sums are computed here from the raw frames with Decimal, independently of the adapters and
of the detector: Binance ``z × ap``, Bybit ``v × p``, OKX ``sz × ctVal × bkPx``. A second file adds
Hyperliquid trades and asset contexts: no liquidations there, so the detector estimates them from the OI
drop and the net taker flow, and labels the figure as an estimate.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from flushwatch.backtest import BacktestReport, run_backtest
from flushwatch.config import Config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "cross_venue"
THREE = FIXTURES / "btc_cascade_3venues.jsonl"
HYPERLIQUID = FIXTURES / "btc_cascade_hyperliquid.jsonl"
VENUES = ("binance", "bybit", "okx")
TOLERANCE = Decimal("0.001")  # 0.1 %


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_btc_cascade", FIXTURES / "make_btc_cascade.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_btc_cascade"] = module
    spec.loader.exec_module(module)
    return module


def backtest(*paths: Path, **cascade: Any) -> tuple[BacktestReport, list[dict[str, Any]], bytes]:
    config = Config.model_validate({"detectors": {"enabled": ["cascade"]}, "cascade": cascade})
    out, dlq = io.BytesIO(), io.BytesIO()
    report = run_backtest(list(paths), config, out, dlq)
    return report, [orjson.loads(line) for line in out.getvalue().splitlines()], dlq.getvalue()


def raw_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class Inputs:
    """What the raw frames say, computed with Decimal and each venue's documented conventions."""

    def __init__(self, path: Path) -> None:
        self.long: dict[str, Decimal] = defaultdict(Decimal)
        self.short: dict[str, Decimal] = defaultdict(Decimal)
        self.long_events = 0
        self.first_long_ts: int | None = None
        ct_val: Decimal | None = None
        for line in raw_lines(path):
            data = orjson.loads(line["data"])
            venue = line["venue"]
            if venue == "okx" and line["kind"] == "rest":
                (instrument,) = (i for i in data["data"] if i["instId"] == "BTC-USDT-SWAP")
                ct_val = Decimal(instrument["ctVal"]) * Decimal(instrument["ctMult"])
            elif venue == "binance" and data["stream"] == "!forceOrder@arr":
                order = data["data"]["o"]
                self.add(venue, order["S"] == "SELL", Decimal(order["z"]) * Decimal(order["ap"]), order["T"])
            elif venue == "bybit" and data["topic"].startswith("allLiquidation."):
                for item in data["data"]:  # position side: Buy = a long was liquidated
                    self.add(venue, item["S"] == "Buy", Decimal(item["v"]) * Decimal(item["p"]), item["T"])
            elif venue == "okx" and data["arg"]["channel"] == "liquidation-orders":
                assert ct_val is not None, "the instruments line comes first"
                for entry in data["data"]:
                    for d in entry["details"]:
                        notional = Decimal(d["sz"]) * ct_val * Decimal(d["bkPx"])
                        self.add(venue, d["side"] == "sell", notional, int(d["ts"]))

    def add(self, venue: str, long: bool, notional: Decimal, ts: int) -> None:
        if long:
            self.long[venue] += notional
            self.long_events += 1
            self.first_long_ts = ts if self.first_long_ts is None else min(self.first_long_ts, ts)
        else:
            self.short[venue] += notional


def hyperliquid_estimates(
    path: Path, start_ms: int, end_ms: int, dominance: Decimal = Decimal(2)
) -> dict[str, Decimal]:
    """The documented heuristic, recomputed from the raw Hyperliquid frames: between two asset contexts, an
    OI drop (coins x markPx) with taker flow dominant in one direction adds min(drop, net flow) to the side
    that flow closes, for estimates made during the episode [start_ms, end_ms)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    previous: tuple[int, Decimal] | None = None
    buys = sells = Decimal(0)
    for line in raw_lines(path):
        data = orjson.loads(line["data"])
        if data["channel"] == "trades":
            for t in data["data"]:
                notional = Decimal(t["px"]) * Decimal(t["sz"])
                if t["side"] == "A":
                    sells += notional
                else:
                    buys += notional
        elif data["channel"] == "activeAssetCtx":
            ts, oi = line["recv_ts"], Decimal(data["data"]["ctx"]["openInterest"])
            mark = Decimal(data["data"]["ctx"]["markPx"])
            if previous is not None and previous[1] > oi and ts - previous[0] <= 60_000 and start_ms <= ts < end_ms:
                drop = (previous[1] - oi) * mark
                if sells > 0 and sells >= dominance * buys:
                    out["long"] += min(drop, sells - buys)
                elif buys > 0 and buys >= dominance * sells:
                    out["short"] += min(drop, buys - sells)
            previous, buys, sells = (ts, oi), Decimal(0), Decimal(0)
    return out


def close(actual: float, expected: Decimal) -> bool:
    return abs(Decimal(str(actual)) - expected) <= TOLERANCE * abs(expected)


def test_fixtures_are_what_the_generator_writes() -> None:
    content = load_generator().render()
    assert content[THREE.name] == THREE.read_bytes()
    assert content[HYPERLIQUID.name] == HYPERLIQUID.read_bytes()


def test_the_same_cascade_on_three_venues_gives_one_cascade_with_exact_by_venue_sums() -> None:
    inputs = Inputs(THREE)
    assert set(inputs.long) == set(VENUES) and inputs.long_events >= 30  # tens of liquidations, all venues
    report, alerts, dlq = backtest(THREE)
    assert report.rejects_by_kind == {} and report.bad_lines == 0 and dlq == b""
    assert report.frames_by_venue.keys() == set(VENUES)

    assert [(a["type"], a["base"], a["metrics"]["side"]) for a in alerts] == [
        ("cascade_started", "BTC", "long"), ("cascade_ended", "BTC", "long")]
    started, ended = alerts
    assert started["metrics"]["episode_id"] == ended["metrics"]["episode_id"]
    for alert in alerts:
        assert alert["venues"] == list(VENUES)
        assert alert["window"]["start"] == inputs.first_long_ts
        assert alert["metrics"]["lower_bound"] is True  # Binance and OKX are sampled feeds
        assert alert["metrics"]["estimated"] is False

    m = ended["metrics"]
    assert m["by_venue"].keys() == set(VENUES)
    for venue in VENUES:
        assert close(m["by_venue"][venue], inputs.long[venue]), (venue, m["by_venue"][venue], inputs.long[venue])
    total = sum(inputs.long.values(), Decimal(0))
    assert close(m["notional_usd"], total) and close(m["by_side"]["long"], total)
    assert close(m["by_side"]["short"], inputs.short["bybit"])  # the two Bybit "Sell" rows, same minutes
    assert m["events"] == inputs.long_events
    # the started alert holds what the window had when the threshold was crossed: a part of each venue
    s = started["metrics"]
    assert s["notional_usd"] >= s["threshold_usd"] == 150_000.0 and s["events"] >= 10
    assert all(0 < s["by_venue"][v] <= m["by_venue"][v] for v in VENUES)
    assert started["message"].startswith(
        "BTC long liquidation cascade started: at least $") and "across binance, bybit, okx" in started["message"]


def test_hyperliquid_trades_and_oi_add_an_estimate_labelled_as_such() -> None:
    inputs = Inputs(THREE)
    _, base_alerts, _ = backtest(THREE)
    report, alerts, dlq = backtest(THREE, HYPERLIQUID)
    assert report.rejects_by_kind == {} and dlq == b"" and report.events_by_type["open_interest"] > 50
    assert "liquidation" in report.events_by_type and report.frames_by_venue["hyperliquid"] > 0

    assert [(a["type"], a["base"], a["metrics"]["side"]) for a in alerts] == [
        ("cascade_started", "BTC", "long"), ("cascade_ended", "BTC", "long")]
    started, ended = alerts
    # the estimate neither started the episode earlier nor changed its severity: real liquidations decide
    assert (started["ts"], started["severity"], ended["ts"]) == (
        base_alerts[0]["ts"], base_alerts[0]["severity"], base_alerts[1]["ts"])
    assert ended["venues"] == ["binance", "bybit", "hyperliquid", "okx"]

    expected = hyperliquid_estimates(HYPERLIQUID, ended["window"]["start"], ended["ts"])
    assert expected["long"] > 0
    m = ended["metrics"]
    assert m["by_venue"].keys() == {*VENUES, "hyperliquid~est"}
    for venue in VENUES:  # the real venues are untouched
        assert close(m["by_venue"][venue], inputs.long[venue])
    assert close(m["by_venue"]["hyperliquid~est"], expected["long"])
    assert m["estimated"] is True and m["estimated_usd"] == m["by_venue"]["hyperliquid~est"]
    assert close(m["notional_usd"], sum(inputs.long.values(), Decimal(0)) + expected["long"])
    assert close(m["by_side"]["short"], inputs.short["bybit"] + expected["short"])
    assert m["events"] == inputs.long_events  # estimates are never counted as liquidation events
    assert "estimated from hyperliquid trades and OI" in ended["message"]
    # the estimates made between the first liquidation and the start are already in the started alert
    assert 0 < started["metrics"]["estimated_usd"] < m["estimated_usd"]
    assert "estimated from hyperliquid trades and OI" in started["message"]


@pytest.mark.parametrize("paths", [(THREE,), (THREE, HYPERLIQUID)])
def test_cross_venue_backtest_is_deterministic(paths: tuple[Path, ...]) -> None:
    assert backtest(*paths)[1] == backtest(*paths)[1]
