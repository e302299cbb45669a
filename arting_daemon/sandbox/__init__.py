"""A local emulator of Arting's private image API, for tests, benchmarks and demos.

    sandbox = Sandbox(generation_time=2.0)
    base_url = await sandbox.start()      # point the daemon's base_url here
    sandbox.add_fault("cf_challenge", route="create", count=1)
    ...
    await sandbox.close()

``python -m arting_daemon.sandbox`` runs one standalone.
"""

from .models import Fault, Recorded, SandboxConfig, SandboxJob
from .server import Sandbox

__all__ = ["Fault", "Recorded", "Sandbox", "SandboxConfig", "SandboxJob"]
