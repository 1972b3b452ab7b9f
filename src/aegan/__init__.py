"""aegan: does fusing an autoencoder into a GAN help, and which way of fusing wins?"""

import time

__version__ = "0.1.0"

# Imported first by the `aegan` command, so this is (within milliseconds) the stage process's start:
# every stage records its wall time from here, imports included, and the report adds them up.
_STARTED = time.monotonic()


def wall_seconds() -> float:
    """Seconds since this process started running aegan code."""
    return time.monotonic() - _STARTED
