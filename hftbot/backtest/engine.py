"""The replay loop: a recording through the live strategy, risk and positions against the matching engine.

What runs is what runs live (`hftbot.exec.process.Executor`): the strategy `make_strategy` builds,
the `RiskManager` (the only door), `Positions` (PnL, fees, round trips) and the `[exec]` fee
rates. Where the gateway and the venue would be, `EngineVenue` drives the one matching engine
(`hftbot.sim.kernels` through `MatchingEngine`). docs/backtest.md, "Replay loop", says it all;
in short:

- Market data. The raw frames go through the live feed's `FeedCore` (the book records and trade
  records execution reads, exactly as `--mode replay` publishes them) and through
  `replayrows.RowBuilder` (the same frames as the engine's full-depth level and trade rows). The
  engine applies a row at its exchange time (`[backtest] feed_latency = "recorded"`; clamped to
  the receive time when the clocks disagree) or its receive time (`"zero"`); the strategy sees a
  record at its receive time. So the venue runs ahead of what we know by the recorded feed latency.
- Our side, in local time: books, then trades, then signals at the same time (the executor's
  order); a signal is seen at its book's receive time plus the inference latency
  (`[backtest] inference_latency_us`, -1 = measured). Each hook's intents go through
  `risk.check` and, approved, to the venue at that time; fills and order updates reach positions
  at their response time. The risk manager's PnL limits run every 50 ms of local time.
- Queue and order latency: `hftbot.backtest.latency` (risk-averse, proportional, power-prob;
  constant or recorded round trips). Partial fills are the engine's.
- Quiet records: with a strategy that has a compiled step for them (`mm`), the records where
  nothing happens — no order wanted, no limit near, no answer due, no fill — run in one numba
  call (`hftbot.backtest.fastpath`, `[backtest] fast_path`), with byte-identical results.
- Memory: `chunk_frames` raw frames at a time; what grows with the run is one equity row per
  `period_s` (and per fill), the fills and the closed trades — not the events.

Entry point: `run_backtest(paths, ...)` -> `BacktestResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hftbot.backtest.latency import latency_model, queue_model
from hftbot.backtest.prepared import Chunk, Grid, prepare, prepared_chunks
from hftbot.backtest.result import EQUITY_DTYPE, FILL_DTYPE, SIGNAL_DTYPE, BacktestResult
from hftbot.backtest.signals import SignalSource, compute_signals, frame_chunks
from hftbot.backtest.venue import EngineVenue
from hftbot.config import Config, load_config
from hftbot.exec.filters import SymbolFilters
from hftbot.exec.ids import ClientIds
from hftbot.exec.messages import Fill, OrderUpdate, Refused, Rejected
from hftbot.exec.positions import Positions
from hftbot.exec.risk import RiskManager
from hftbot.exec.strategy import Strategy, fee_model, make_strategy
from hftbot.feed import decode as d
from hftbot.records import BOOK_VALID
from hftbot.records import SIGNAL_DTYPE as RING_SIGNAL_DTYPE
from hftbot.sim.kernels import MARKET_EVENT_DTYPE, MEF, S_BAD_ROW
from hftbot.sim.matching import MatchingEngine
from hftbot.sim.models import FeeModel as EngineFees
from hftbot.sim.replayrows import RowBuilder, row_frames

HOUSEKEEPING_NS = 50_000_000
K_BOOK, K_TRADE, K_SIGNAL = 0, 1, 2
FAR = 1 << 62


def chunks(paths: list[Path], levels: int, chunk_frames: int) -> tuple[RowBuilder, object]:
    """(row builder, iterator of Chunk): every `chunk_frames` raw frames through both builders."""
    rb = RowBuilder()

    def gen():
        for blk, i, i2, books, trades in frame_chunks(paths, levels, chunk_frames):
            rb.frames(blk, row_frames(blk, i, i2))
            rows = rb.take()
            # an exchange time after the receive time is the two clocks disagreeing: the row applies
            # at its receive time (done once here, so the prepared cache holds final rows)
            np.minimum(rows["exch_ns"], rows["recv_ns"], out=rows["exch_ns"])
            yield Chunk(books, trades, rows, i2 - i, int(blk.nss[i2 - 1]))

    return rb, gen()


def _mids(books: np.ndarray) -> np.ndarray:
    """Each book record's mid in ticks, NaN where it has none (not BOOK_VALID, or a side empty):
    the equity curve's mark, for a chunk at once."""
    if not len(books):
        return np.zeros(0, np.float64)
    bid = books["bid_px"][:, 0].astype(np.int64)
    ask = books["ask_px"][:, 0].astype(np.int64)
    ok = ((books["flags"] & BOOK_VALID) != 0) & (bid > 0) & (ask > 0)
    return np.where(ok, (bid + ask) * 0.5, np.nan)


class Replay:
    """The loop's state across chunks (one run)."""

    def __init__(self, cfg: Config, strategy: str, signals: SignalSource | None, start_ns: int, end_ns: int,
                 data_paths: list[Path], progress: Callable[[int, int], None] | None = None,
                 strategy_obj: Strategy | None = None) -> None:
        self.strategy_obj = strategy_obj
        self.cfg = cfg
        self.bt = cfg.backtest
        self.strategy_name = strategy
        self.signals = signals
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.period_ns = round(self.bt.period_s * 1e9)
        self.data_paths = data_paths
        self.progress = progress
        self.infer_ns = signals.infer_ns if signals is not None else 0
        if self.bt.inference_latency_us >= 0 and signals is not None:
            self.infer_ns = int(self.bt.inference_latency_us * 1000)
        self.zero_feed = self.bt.feed_latency == "zero"
        self.ready = False
        self.stopped = False  # reached end_ns
        self.rows_pending = np.zeros(0, MARKET_EVENT_DTYPE)
        self.carry_sig: list[tuple[int, int]] = []  # (time, index) of signals due after the chunk
        self.events = 0
        self.frames = 0
        self.equity: list[tuple] = []
        self.sig_rows: list[tuple] = []
        self.next_sample = 0
        self.next_house = 0
        self.book = None
        self.signal = None
        self.mid = 0.0
        self.refusals: dict[str, dict] = {}  # risk refusals: {reason: {count, first: its detail}}
        self.rejected = 0
        self.t_first = 0
        self.t_last = 0
        self.symbol = cfg.runtime.symbol.upper()
        self.tick = self.lot = 0.0
        self.fast = self.check = None  # fastpath.FastPath / FastCheck, from _setup

    # ---------------------------------------------------------------------------- set-up

    def _setup(self, rb: RowBuilder | Grid, rec) -> None:
        """Built at the first valid book: the grid is known from then on (as the mirror venue does)."""
        cfg = self.cfg
        self.tick, self.lot = float(rec["tick"]), float(rec["lot"])
        inst = rb.inst
        if inst is None or not (abs(inst.tick_u / d.FIXED - self.tick) < 1e-12
                                and abs(inst.lot_u / d.FIXED - self.lot) < 1e-12):
            raise ValueError(f"backtest: the feed's grid ({self.tick}, {self.lot}) and the rows' ({inst}) differ")
        from decimal import Decimal

        ex = cfg.exec
        fees = fee_model(ex)
        self.filters = SymbolFilters.from_tick_lot(self.symbol, self.tick, self.lot)
        self.positions = Positions(self.tick, self.lot, fees, self.symbol, self.strategy_name, "backtest")
        self.view = self.positions.view
        self.strategy = self.strategy_obj or make_strategy(ex, cfg.strategy, cfg.risk, fees)
        self.risk = RiskManager(cfg.risk, self.filters, self.positions, ClientIds(1, prefix="bt"),
                                strategy=self.strategy_name,
                                needs_signal=bool(self.strategy and self.strategy.needs_signal),
                                now_ns=int(rec["recv_ns"]))
        self.engine = MatchingEngine(
            self.tick, self.lot,
            fees=EngineFees(Decimal(repr(ex.maker_fee)), Decimal(repr(ex.taker_fee))),
            queue=queue_model(self.bt), latency=latency_model(self.bt, self.data_paths),
            log_levels=False, seed=self.bt.seed,
            center_px=int(rec["bid_px"][0]) or int(rec["ask_px"][0]),
            history=0,  # nothing queries a closed order here: the engine forgets it (bounded memory)
        )
        self.venue = EngineVenue(self.engine)
        # a strategy that keeps the base class's on_trade reads no trade record: the loop does not
        # stop at them (the engine applies their rows all the same, and answers are delivered at
        # their own response times), which is most of the capture's records
        self.wants_trades = self.strategy is not None and self.strategy.reads_trades
        self._sig = np.zeros((), RING_SIGNAL_DTYPE)
        mode = self.bt.fast_path
        if mode != "off":
            from hftbot.backtest.fastpath import FastCheck, FastPath

            if FastPath.supports(self.strategy):
                fp = FastPath(self, HOUSEKEEPING_NS)
                if mode == "on":
                    self.fast = fp
                else:  # "check": every record through Python, each verdict of the fast path checked
                    self.check = FastCheck(fp)
        self.ready = True

    def _fit(self, rows: np.ndarray) -> None:
        """Widen the engine's ladder for the first rows' price range before any is applied, when
        they would not fit it: a re-grid while running copies every occupied level (~5 ms on the
        capture, whose deep levels span 5,600..6,213,687 ticks); an empty ladder widens for
        nothing. Rows that fit change nothing (no re-centring: that cost the 24 h simulator run
        ~28 MB of peak RSS). A later row outside still re-grids, as it would have; a range wider
        than the engine's `max_width` is left to that path (it drops what cannot fit)."""
        px = rows["px"]
        px = px[px > 0]
        if len(px):
            self.engine.regrid(int(px.min()), int(px.max()))

    # ---------------------------------------------------------------------------- the loop

    def feed(self, rb: RowBuilder | Grid, ch: Chunk) -> None:
        if self.stopped:
            return
        self.frames += ch.frames
        rows = ch.rows if not len(self.rows_pending) else np.concatenate([self.rows_pending, ch.rows])
        if len(rows) and self.zero_feed:  # (recorded: `chunks` clamped them to the receive times)
            if rows is ch.rows:  # a view of the prepared cache's map: written pages would stay for
                rows = rows.copy()  # the whole run, so the chunk's own copy (memory: one chunk)
            rows["exch_ns"] = rows["recv_ns"]
        books, trades = ch.books, ch.trades
        if not self.ready:
            valid = np.flatnonzero((books["flags"] & BOOK_VALID) != 0) if len(books) else []
            if len(valid):
                self._setup(rb, books[valid[0]])
                self._fit(rows)
        if not self.ready:  # nothing tradable yet: the rows only build the engine's book later
            self.rows_pending = rows
            return
        # events of our side in local time: books, trades, signals (due at book time + inference)
        t_b, t_t = books["recv_ns"], trades["recv_ns"]
        sig_t = np.zeros(0, np.int64)
        sig_i = np.zeros(0, np.int64)
        if self.signals is not None and len(books):
            idx = self.signals.lookup(t_b)
            ok = idx >= 0
            sig_i = idx[ok]
            sig_t = t_b[ok] + self.infer_ns
        if self.carry_sig:
            ct = np.array([c[0] for c in self.carry_sig], np.int64)
            ci = np.array([c[1] for c in self.carry_sig], np.int64)
            sig_t, sig_i = np.concatenate([ct, sig_t]), np.concatenate([ci, sig_i])
            self.carry_sig = []
        horizon = ch.last_recv_ns
        late = sig_t > horizon
        if late.any():
            self.carry_sig = list(zip(sig_t[late].tolist(), sig_i[late].tolist(), strict=True))
            sig_t, sig_i = sig_t[~late], sig_i[~late]
        if not self.wants_trades:  # the engine still applies every trade row; no hook reads them
            t_t = t_t[:0]
        times = np.concatenate([t_b, t_t, sig_t])
        kinds = np.concatenate([np.full(len(t_b), K_BOOK), np.full(len(t_t), K_TRADE), np.full(len(sig_t), K_SIGNAL)])
        where = np.concatenate([np.arange(len(t_b)), np.arange(len(t_t)), sig_i])
        order = np.lexsort((kinds, times))
        # rows the venue has applied by each event's time (running max: the clock never goes back)
        emax = np.maximum.accumulate(rows["exch_ns"]) if len(rows) else np.zeros(0, np.int64)
        upto = np.searchsorted(emax, times[order], side="right")
        applied = self._loop(rows, books, trades, times[order], kinds[order], where[order], upto, _mids(books))
        tail = max(int(t_b[-1]) if len(t_b) else 0, int(trades["recv_ns"][-1]) if len(trades) else 0)
        if not self.stopped and self.strategy is not None and tail >= self.start_ns:
            self.t_last = max(self.t_last, tail)  # the span reaches the last record, read by a hook or not
        self.rows_pending = rows[applied:].copy()
        if self.progress is not None:
            self.progress(self.frames, 0)

    def _loop(self, rows, books, trades, times, kinds, where, upto, mids) -> int:
        eng, venue, strategy, view = self.engine, self.venue, self.strategy, self.view
        sigs = self.signals
        start, end = self.start_ns, self.end_ns
        words = np.ascontiguousarray(rows).view(np.int64).reshape(len(rows), MEF)
        run_rows, mv, after = eng._run_rows, eng._mv, eng._after
        fast = self.fast
        if fast is not None:
            fast.chunk(books, times, kinds, where, upto, mids, words)
        times, kinds, where, upto, mids = times.tolist(), kinds.tolist(), where.tolist(), upto.tolist(), mids.tolist()
        check = self.check
        n = len(times)
        r = k = 0
        got = None
        while k < n:
            t, kind, j, u = times[k], kinds[k], where[k], upto[k]
            k += 1
            if t >= end:  # the replay ends here: the market after `end` is not applied
                self.stopped = True
                break
            if got is None and u > r:  # (else the fast path already ran this record's rows)
                # the compiled kernel directly (the facade's run re-checks and re-views every call);
                # the facade takes over when the kernel stops early (re-grid, events to drain)
                got = run_rows(eng.lad, eng.mem, words, r, u, 0)
            if got is not None:
                after()
                if got != u:
                    eng.run(rows, mv[S_BAD_ROW] if got < 0 else got, u)
                got = None
                self.events += u - r
                r = u
            eng.advance(t)
            venue.collect()
            delivered = False
            while (due := venue.next_ns()) <= t:  # each answer at its own response time
                self._deliver(due)
                delivered = True
            # the rest of this book record, and the quiet records after it, compiled (fastpath.py);
            # not again for the record the last stretch stopped at for its own verdict, unless an
            # answer delivered since may have changed that verdict, nor while calls find nothing
            if (fast is not None and kind == K_BOOK and t >= start and k > fast.next_try
                    and (delivered or k - 1 != fast.stop_k)):
                kk, r, got = fast.run(k - 1, r, resume=True)
                if kk >= k:
                    k = kk
                    continue
            if t >= self.next_sample:
                self._sample(t)
            if t >= self.next_house:
                self._housekeeping(t)
            if kind == K_BOOK:
                rec = books[j : j + 1].reshape(())
                self.book = rec
                m = mids[j]
                if m == m:
                    self.mid = m
                if strategy is None or t < start:
                    continue
                view.now_ns = t
                intents = strategy.on_book(rec, view) if check is None else check.on_book(rec, view)
            elif kind == K_TRADE:
                if strategy is None or t < start:
                    continue
                view.now_ns = t
                intents = strategy.on_trade(trades[j : j + 1].reshape(()), view)
            else:
                s = self._signal(sigs, j, t)
                if strategy is None or t < start:
                    continue
                if not s["flags"]:
                    self.sig_rows.append((int(s["book_recv_ns"]), float(s["p_down"]), float(s["p_flat"]),
                                          float(s["p_up"]), int(sigs.labels[j])))
                view.now_ns = t
                intents = strategy.on_signal(s, view)
            if intents:
                self._decide(intents, t)
            self.t_last = t
        return r

    def _signal(self, sigs: SignalSource, j: int, t: int):
        s = self._sig
        s["seq"] = int(s["seq"]) + 1
        s["book_seq"] = 0
        s["book_recv_ns"] = sigs.book_recv_ns[j]
        s["model_id"] = sigs.model_id
        s["flags"] = sigs.flags[j]
        s["p_down"], s["p_flat"], s["p_up"] = sigs.probs[j]
        s["infer_start_ns"] = sigs.book_recv_ns[j]
        s["infer_end_ns"] = s["publish_ns"] = t
        self.signal = s
        return s

    def _decide(self, intents, t: int) -> None:
        risk, venue = self.risk, self.venue
        for intent in intents:
            req = risk.check(intent, self.book, t, self.signal)
            if type(req) is Refused:
                seen = self.refusals.setdefault(req.reason, {"count": 0, "first": req.detail})
                seen["count"] += 1
                continue
            venue.send(req, t)
        if venue.next_ns() <= t:
            self._deliver(t)

    def _deliver(self, t: int) -> None:
        pos = self.positions
        fills = False
        for m in self.venue.due(t):
            typ = type(m)
            if typ is Fill:
                pos.on_fill(m)
                fills = True
            elif typ is OrderUpdate:
                pos.on_update(m)
            elif typ is Rejected:
                self.rejected += 1
                if m.request == "place":
                    pos.on_rejected(m)
        if fills:
            self._sample(t, on_fill=True)

    def _sample(self, t: int, on_fill: bool = False) -> None:
        p = self.positions
        if not on_fill:
            if t < self.start_ns:  # the market before --start is replayed (book, queues), not reported
                return
            if self.next_sample == 0:
                self.next_sample = t - t % self.period_ns
                self.t_first = t
            while self.next_sample <= t:  # one row per period, flat periods included
                self.equity.append((self.next_sample, self.mid * self.tick, p.position, p.realised, p.fees,
                                    p.net_pnl(self.mid)))
                self.next_sample += self.period_ns
            return
        self.equity.append((t, self.mid * self.tick, p.position, p.realised, p.fees, p.net_pnl(self.mid)))

    def _housekeeping(self, t: int) -> None:
        self.next_house = t + HOUSEKEEPING_NS
        reqs = self.risk.update(t, self.book) if self.check is None else self.check.update(t, self.book)
        for req in reqs:
            self.venue.send(req, t)

    def finish(self) -> None:
        """Apply what is left of the rows and deliver what is still on its way."""
        if not self.ready:
            return
        eng = self.engine
        if len(self.rows_pending) and not self.stopped:
            eng.run(self.rows_pending)
            self.events += len(self.rows_pending)
            self.rows_pending = self.rows_pending[:0]
        t = self.t_last if self.stopped else max(self.t_last, int(self.engine.now_ns))
        eng.advance(t)
        self.venue.collect()
        self._deliver(t)
        self._sample(t, on_fill=True)

    def result(self, name: str, settings: dict) -> BacktestResult:
        eq = np.array(self.equity, dtype=EQUITY_DTYPE) if self.equity else np.zeros(0, EQUITY_DTYPE)
        if len(eq):
            eq = eq[np.argsort(eq["t_ns"], kind="stable")]
        fl = np.zeros(len(self.venue.fills) if self.ready else 0, FILL_DTYPE)
        if len(fl):
            a = list(zip(*self.venue.fills, strict=True))
            fl["t_ns"], fl["recv_ns"], fl["side"] = a[0], a[1], a[2]
            fl["px"] = np.asarray(a[3], np.float64) * self.tick
            fl["qty"] = np.asarray(a[4], np.float64) * self.lot
            fl["fee"], fl["maker"], fl["order_id"] = a[5], a[6], a[7]
        sg = np.array(self.sig_rows, dtype=SIGNAL_DTYPE) if self.sig_rows else np.zeros(0, SIGNAL_DTYPE)
        return BacktestResult(
            name=name, strategy=self.strategy_name, symbol=self.symbol,
            start_ns=self.t_first, end_ns=self.t_last, period_ns=self.period_ns, tick=self.tick, lot=self.lot,
            equity=eq, fills=fl, signals=sg, trades=list(self.positions.trades) if self.ready else [],
            events=self.events, orders=self.venue.orders if self.ready else 0,
            rejected=self.rejected + sum(r["count"] for r in self.refusals.values()), settings=settings,
            order_log=self.venue.order_log if self.ready else [],
            refusals={k: dict(v) for k, v in self.refusals.items()},
        )


def _settings(cfg: Config, strategy: str, checkpoint: Path | None, paths: list[Path], infer_ns: int) -> dict:
    bt = cfg.backtest
    return {
        "paths": [str(p) for p in paths], "strategy": strategy, "checkpoint": str(checkpoint or ""),
        "queue_model": bt.queue_model, "queue_power": bt.queue_power, "feed_latency": bt.feed_latency,
        "order_latency": bt.order_latency, "order_entry_us": bt.order_entry_us,
        "order_response_us": bt.order_response_us, "inference_latency_ns": infer_ns,
        "maker_fee": cfg.exec.maker_fee, "taker_fee": cfg.exec.taker_fee, "period_s": bt.period_s,
        "chunk_frames": bt.chunk_frames, "cache": bt.cache, "signals": bt.signals, "fast_path": bt.fast_path,
    }


def _with_data_symbol(cfg: Config, paths: list[Path]) -> Config:
    """The symbol comes from the data (stream names, payload `s`, file metadata), as in a live
    replay: a BTCUSDT capture is reported, filtered and logged as BTCUSDT whatever
    `runtime.symbol` says. Paths that mix symbols are refused (ValueError naming them)."""
    from hftbot.feed.recording import MixedSymbolsError, RecordingError, recording_symbol

    try:
        symbol = recording_symbol(paths)
    except MixedSymbolsError as e:
        raise ValueError(f"backtest: {e}") from None
    except RecordingError:
        return cfg  # no raw data here: the loop says what is wrong with these paths
    if symbol and symbol != cfg.runtime.symbol.upper():
        return cfg.override_sections(runtime={"symbol": symbol}, sim={"symbol": symbol})
    return cfg


def prepare_recording(paths: list[Path], cfg: Config) -> Path | None:
    """Write the prepared cache of `paths` now if `[backtest] cache` is on (see prepared.prepare)."""
    if not cfg.backtest.cache:
        return None
    return prepare([Path(p) for p in paths], cfg.feed.levels, cfg.backtest.chunk_frames, chunks)


def run_backtest(
    paths: list[Path],
    *,
    strategy: str | Strategy = "deeplob",
    checkpoint: Path | None = None,
    cfg: Config | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    signals: SignalSource | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Replay `paths` (raw recordings, .gz captures or folders) through `strategy`; see the module doc.

    deeplob takes its signals from `signals`, else from `checkpoint` (batched up front), else it
    sees no signal and trades nothing (as live without a checkpoint, where they say "no model").
    `strategy` may also be a `Strategy` object (tests' scripted strategies): it runs instead of
    `[exec] strategy`."""
    given = strategy if isinstance(strategy, Strategy) else None
    name = given.name if given is not None else strategy
    cfg = (cfg or load_config()).override("exec", strategy=name if given is None else "none")
    paths = [Path(p) for p in paths]
    cfg = _with_data_symbol(cfg, paths)
    bt = cfg.backtest
    t0 = time.perf_counter()
    if name == "deeplob" and signals is None and checkpoint is not None:
        from hftbot.model.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        infer = -1 if bt.inference_latency_us < 0 else int(bt.inference_latency_us * 1000)
        prepare_recording(paths, cfg)  # with the cache on: one decoding pass serves signals and replay
        signals = compute_signals(paths, ckpt, levels=cfg.feed.levels, device=bt.device,
                                  batch=bt.inference_batch, chunk_frames=bt.chunk_frames, infer_ns=infer,
                                  use_cache=bt.cache, method=bt.signals)
    rep = Replay(cfg, name, signals, start_ns if start_ns is not None else -FAR,
                 end_ns if end_ns is not None else FAR, paths, progress, given)
    rb, gen = prepared_chunks(paths, cfg.feed.levels, bt.chunk_frames, chunks, use_cache=bt.cache)
    try:
        for ch in gen:  # deeplob without signals sees none (live: "no model" ones): it opens nothing
            rep.feed(rb, ch)
            if rep.stopped:
                break
    finally:
        gen.close()  # a cache being written is finished only by a run that read every chunk
    rep.finish()
    res = rep.result(name if checkpoint is None else f"{name}:{checkpoint.name}",
                     _settings(cfg, name, checkpoint, paths, rep.infer_ns))
    res.settings["wall_s"] = time.perf_counter() - t0
    res.settings["fast_path_records"] = rep.fast.records if rep.fast is not None else 0
    if rep.fast is not None:  # how often it handed a record to Python, and why (docs/backtest.md)
        res.settings["fast_path_calls"], res.settings["fast_path_stops"] = rep.fast.calls, dict(rep.fast.stops)
    if rep.check is not None:
        res.settings["fast_path_seen"], res.settings["fast_path_quiet"] = dict(rep.check.seen), dict(rep.check.quiet)
    return res
