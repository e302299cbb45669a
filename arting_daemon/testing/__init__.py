"""The conformance kit of provider plugins: ``check_provider`` (a function) and the
``provider_conformance`` pytest fixture (``pytest_plugin``), run against a plugin's
provider and an emulator of its upstream (``Upstream``). See
``docs/plugins/writing-a-provider.md``."""

from .conformance import (FAULTS, RULES, ConformanceError, Harness, Upstream, Violation,
                          check_provider, conformance)

__all__ = ["FAULTS", "RULES", "ConformanceError", "Harness", "Upstream", "Violation",
           "check_provider", "conformance"]
