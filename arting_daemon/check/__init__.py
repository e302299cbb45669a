"""``arting-daemon check``: how the live Arting behaves, and what to configure for it.

``runner.run_check`` runs one check (the command, and the daemon's admin endpoint);
``reach``, ``probes`` and ``generate`` are its steps; ``report`` holds the findings and
the ``arting.toml`` lines they call for; ``cli`` is the command.
"""

from .report import Finding, Report
from .runner import Options, identities_for, run_check

__all__ = ["Finding", "Options", "Report", "identities_for", "run_check"]
