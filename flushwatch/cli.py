"""The ``flushwatch`` command line. Heavy imports happen inside each command so ``--help`` is instant."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from flushwatch.config import Config, load_config
from flushwatch.errors import ConfigError, FlushwatchError
from flushwatch.logs import setup_logging

log = logging.getLogger("flushwatch")

DESCRIPTION = """\
flushwatch watches crypto-derivatives venues for leverage flushes: liquidation cascades, open-interest
flushes and rebuilds. Venue websockets -> Kafka (fw.md.*) -> detectors -> alerts (fw.alerts) -> sinks.

Configuration: a TOML file (--config or FLUSHWATCH_CONFIG) plus FLUSHWATCH_* environment variables,
e.g. FLUSHWATCH_KAFKA__BOOTSTRAP_SERVERS='["kafka:9092"]'. With no bootstrap servers, `run` starts an
embedded in-memory development broker. `flushwatch config show` prints the effective settings.
"""

EPILOG = """\
examples:
  flushwatch run                          live if Binance is reachable, else the bundled replay
  flushwatch run --offline --speed 60     the bundled real liquidation burst, 60x faster
  flushwatch run --replay rec.jsonl.gz    the whole pipeline over your recording
  flushwatch backtest rec.jsonl.gz --out alerts.jsonl
  flushwatch record --venue binance --out rec.jsonl.gz --duration 600
"""


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="TOML config file (default: FLUSHWATCH_CONFIG)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override log.level")


def _add_service(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve /metrics, /healthz, /readyz on this port (0: any free port)")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop gracefully after this long")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(prog="flushwatch", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run ingest, processing and sinks in one process",
                         description="Run the whole pipeline in one process. With no kafka.bootstrap_servers "
                         "it starts an embedded in-memory broker. With --replay (or --offline, or when Binance "
                         "is unreachable) it serves the recording from a local server that speaks the venue's "
                         "protocol, so the real ingest path runs, and exits when the replay is fully processed.")
    _add_config(run)
    _add_service(run)
    run.add_argument("--replay", nargs="+", metavar="FILE", help="replay these recordings instead of going live")
    run.add_argument("--offline", action="store_true", help="replay the bundled recording; do not go live")
    run.add_argument("--speed", type=float, default=None,
                     help="replay speed: 1 = real time, 60 = 60x, 0 = as fast as possible "
                     "(default 1 for --replay, 60 for the bundled recording)")
    run.add_argument("--alerts-out", metavar="FILE", help="also append alerts as JSON lines to FILE")
    run.add_argument("--json", action="store_true", help="print alerts as JSON lines instead of text")

    for role, text in (("ingest", "venue websockets and pollers -> fw.md.* topics"),
                       ("process", "fw.md.* -> detectors -> fw.alerts (a consumer group member)"),
                       ("sink", "fw.alerts -> stdout/JSONL (its own consumer group)")):
        role_parser = sub.add_parser(role, help=text, description=f"Run only the {role} role: {text}. "
                                     "Needs kafka.bootstrap_servers (see `flushwatch broker`).")
        _add_config(role_parser)
        _add_service(role_parser)
        if role == "sink":
            role_parser.add_argument("--alerts-out", metavar="FILE", help="also append alerts to FILE")
            role_parser.add_argument("--json", action="store_true", help="print alerts as JSON lines")

    broker = sub.add_parser("broker", help="start the embedded development broker and wait",
                            description="Start the embedded in-memory Tansu broker on loopback and print its "
                            "bootstrap address, for running the roles as separate processes. Ctrl-C stops it.")
    broker.add_argument("--port", type=int, default=0, help="port (default: a free one)")

    record = sub.add_parser("record", help="record live venue traffic to a file",
                            description="Record every websocket frame and REST response of a venue in the "
                            "recording format (JSON Lines, gzip when FILE ends in .gz).")
    _add_config(record)
    record.add_argument("--venue", required=True, help="venue to record (see `flushwatch venues`)")
    record.add_argument("--out", required=True, metavar="FILE", help="output recording")
    record.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    record.add_argument("--max-frames", type=int, metavar="N", help="stop after N lines (frames and responses)")

    replay = sub.add_parser("replay", help="serve recordings as local venue servers",
                            description="Serve recorded frames over a local websocket server speaking the "
                            "venue's protocol, and recorded REST responses over HTTP on the same port. "
                            "Point venues.<venue>.ws_url/rest_url at the printed URLs.")
    replay.add_argument("files", nargs="+", metavar="FILE")
    replay.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    replay.add_argument("--port", type=int, default=0, help="port of the first venue (default: free)")
    replay.add_argument("--exit-when-done", action="store_true", help="exit once every frame was sent")

    backtest = sub.add_parser("backtest", help="run parsers and detectors over recordings, no Kafka",
                              description="Run the venue parsers and detectors directly over recordings, time "
                              "driven by recv_ts, and write every alert as one JSON line (the fw.alerts "
                              "schema). Deterministic: the same input gives byte-identical output.")
    _add_config(backtest)
    backtest.add_argument("files", nargs="+", metavar="FILE")
    backtest.add_argument("--out", metavar="FILE", help="alerts output (default: stdout)")
    backtest.add_argument("--dlq", metavar="FILE", help="write rejected frames and lines here as JSON lines")
    backtest.add_argument("--processes", type=int, choices=(1, 2), default=None,
                          help="2 = read and parse in a second process while this one runs the detectors (same "
                          "output, nearly twice the lines/s on two CPUs); default: 2 for inputs of 16 MiB or "
                          "more when the machine has two CPUs, else 1")

    config = sub.add_parser("config", help="inspect configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the effective config (secrets masked)")
    _add_config(show)
    show.add_argument("--json", action="store_true", help="JSON instead of TOML")

    tail = sub.add_parser("tail", help="show alerts from the alert topic as a downstream consumer sees them",
                          description="Read fw.alerts without joining a consumer group (nothing is committed) "
                          "and print each alert, human-readable or as the JSON downstream services receive.")
    tail_sub = tail.add_subparsers(dest="tail_command", metavar="WHAT", required=True)
    tail_alerts = tail_sub.add_parser("alerts", help="alerts on fw.alerts")
    _add_config(tail_alerts)
    tail_alerts.add_argument("--json", action="store_true", help="print the alert JSON, one per line")
    tail_alerts.add_argument("--from-beginning", action="store_true", help="start at the oldest retained alert")
    tail_alerts.add_argument("--no-follow", action="store_true", help="stop at the end of the topic")
    tail_alerts.add_argument("--bootstrap", metavar="HOST:PORT",
                             help="Kafka to read (default: kafka.bootstrap_servers)")

    sub.add_parser("venues", help="list supported venues and what each provides")
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(getattr(args, "config", None))
    level = getattr(args, "log_level", None) or config.log.level
    setup_logging(level, config.log.format)
    return config


def _service_overrides(config: Config, args: argparse.Namespace) -> Config:
    if getattr(args, "metrics_port", None) is not None:
        config = config.model_copy(update={"metrics": config.metrics.model_copy(
            update={"port": args.metrics_port})})
    sink_update: dict[str, object] = {}
    if getattr(args, "alerts_out", None):
        sink_update["jsonl_path"] = args.alerts_out
    if getattr(args, "json", False):
        sink_update["stdout_format"] = "json"
    if sink_update:
        config = config.model_copy(update={"sink": config.sink.model_copy(update=sink_update)})
    return config


def cmd_run(args: argparse.Namespace, roles: frozenset[str]) -> int:
    """run / ingest / process / sink."""
    from flushwatch.app import RunOptions, demo_recording_path, online, run_service  # noqa: PLC0415

    config = _service_overrides(_load(args), args)
    replay = tuple(getattr(args, "replay", None) or ())
    speed = getattr(args, "speed", None)
    offline = bool(getattr(args, "offline", False))
    if roles == {"ingest", "process", "sink"} and not replay and (offline or not online()):
        if not offline:
            log.warning("Binance is not reachable from here: replaying the bundled recording instead "
                        "(real Binance liquidations, 2025-01-27 16:50-17:20 UTC)")
        replay = (str(demo_recording_path()),)
        speed = 60.0 if speed is None else speed
    options = RunOptions(roles=roles, replay=replay, speed=1.0 if speed is None else speed,
                         duration_s=args.duration)
    return asyncio.run(run_service(config, options))


def cmd_broker(args: argparse.Namespace) -> int:
    """Start the embedded broker and wait for Ctrl-C."""
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from flushwatch.broker import EmbeddedBroker  # noqa: PLC0415

    setup_logging("INFO")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with EmbeddedBroker(port=args.port) as broker:
        print(f"FLUSHWATCH_KAFKA__BOOTSTRAP_SERVERS='[\"{broker.bootstrap}\"]'", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Record live traffic."""
    from flushwatch.recorder import record  # noqa: PLC0415

    config = _load(args)
    return asyncio.run(record(config, args.venue, Path(args.out), args.duration, args.max_frames))


def cmd_replay(args: argparse.Namespace) -> int:
    """Serve recordings."""
    from flushwatch.recorder import serve_replay  # noqa: PLC0415

    setup_logging("INFO")
    return asyncio.run(serve_replay(args.files, args.speed, args.port, args.exit_when_done))


def cmd_backtest(args: argparse.Namespace) -> int:
    """Backtest recordings."""
    from flushwatch.backtest import run_backtest  # noqa: PLC0415

    config = _load(args)
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115 - closed below
    dlq = open(args.dlq, "wb") if args.dlq else None  # noqa: SIM115 - closed below
    try:
        report = run_backtest(args.files, config, out, dlq, processes=args.processes)
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
        if dlq is not None:
            dlq.close()
    print(report.summary(), file=sys.stderr)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective config."""
    import orjson  # noqa: PLC0415

    from flushwatch.config import masked_dict  # noqa: PLC0415
    from flushwatch.tomlout import dump_toml  # noqa: PLC0415

    config = load_config(args.config)
    data = masked_dict(config)
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        print(dump_toml(data), end="")
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Tail the alert topic."""
    from sinks.tail import tail_alerts  # noqa: PLC0415

    config = _load(args)
    if not args.bootstrap and not config.kafka.bootstrap_servers:
        raise ConfigError("tail needs a cluster: --bootstrap HOST:PORT or kafka.bootstrap_servers (the embedded "
                          "broker of `flushwatch run` prints its address in the log)")
    fmt: Literal["text", "json"] = "json" if args.json else "text"
    asyncio.run(tail_alerts(config, args.bootstrap, fmt, args.from_beginning, not args.no_follow, sys.stdout))
    return 0


def cmd_venues(_args: argparse.Namespace) -> int:
    """List venues."""
    from ingest.catalog import describe_venues  # noqa: PLC0415

    print(describe_venues())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flushwatch`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, frozenset({"ingest", "process", "sink"}))
        if args.command in ("ingest", "process", "sink"):
            return cmd_run(args, frozenset({args.command}))
        handlers = {"broker": cmd_broker, "record": cmd_record, "replay": cmd_replay,
                    "backtest": cmd_backtest, "venues": cmd_venues, "tail": cmd_tail}
        if args.command == "config":
            return cmd_config_show(args)
        return handlers[args.command](args)
    except FlushwatchError as exc:
        print(f"flushwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
