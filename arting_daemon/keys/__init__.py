"""Who may use a shared daemon, and how much: user API keys (``store``, ``ring``), their
limits (``limits``), what they used (``usage``), and the command line (``cli``)."""
