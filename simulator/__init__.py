"""Local stand-ins for outside systems: the MathFi API simulator (and the Slack sink).

Imports nothing from `bot/` or `store/`.
"""

from simulator.faults import Fault
from simulator.mathfi import (
    Simulator,
    SimulatorError,
    SimulatorStats,
    serve,
    start_in_background,
)

__all__ = [
    "Fault",
    "Simulator",
    "SimulatorError",
    "SimulatorStats",
    "serve",
    "start_in_background",
]
