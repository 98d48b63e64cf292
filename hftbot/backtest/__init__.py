"""The backtester: recorded market data replayed through the live strategy, risk and fee code
against the one matching engine (hftbot.sim.kernels). docs/backtest.md says how."""
