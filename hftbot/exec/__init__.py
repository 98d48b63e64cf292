"""Execution (next wave): strategy, risk manager, gateway, positions, the executor process.

The risk manager will be the only door to the gateway; see ../shared/DESIGN.md and docs/.
"""
