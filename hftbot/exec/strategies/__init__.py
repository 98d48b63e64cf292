"""The strategies: `deeplob` (model signals), `imbalance` (the baseline), `mm` (market making).

Built by `hftbot.exec.strategy.make_strategy`; the interface is in `hftbot.exec.strategy`.
"""
