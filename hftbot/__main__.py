"""`python -m hftbot` is `python -m hftbot.run`."""

import sys

from hftbot.run import main

sys.exit(main())
