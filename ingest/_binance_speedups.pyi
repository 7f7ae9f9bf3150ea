"""Type stub of the optional C extension ingest/_binance_speedups.c (see there for what it does and why)."""

from decimal import Decimal

from flushwatch.events import Trade
from ingest.base import ParseResult
from ingest.symbols import SymbolInfo

def configure(trade: type[Trade], result: type[ParseResult], decimal: type[Decimal], /) -> None: ...
def agg_trade(
    raw: bytes | str,
    recv_ts: int,
    venue: str,
    symbols: dict[str, SymbolInfo | None],
    last_ids: dict[str, int],
    /,
) -> ParseResult | None: ...
