"""Who may use a shared daemon, and how much: user API keys (``store``, ``ring``), the one
schema of their limits and a class per limit (``limits``), the gate that applies them
(``gate``) over the backend's counters (``counters``), what they used (``usage``), and the
command line (``cli``)."""
