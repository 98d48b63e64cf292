"""The local exchange simulator: a Binance USDⓈ-M venue on loopback, and offline recordings.

Pure parts (market model, matching engine, message formatting, account, signing, venue logic)
never touch a socket; `server.py` is the only module that does network I/O. See docs/sim.md.
"""
