"""The job engine: jobs (``jobs``), their slots and queue (``queue``), the runner that takes
each job through its stages (``runner``), and the journal that keeps them (``journal``)."""
