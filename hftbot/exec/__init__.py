"""Execution: strategies → the risk manager (the only door) → the gateway → positions and PnL.

Pure logic (strategy, risk, positions, filters, rate limits, fees) apart from I/O (the trade log,
the gateway and the execution process), so the backtester runs the same code. See docs/exec.md,
and docs/gateway.md for the gateway, the execution process and the modes.
"""
