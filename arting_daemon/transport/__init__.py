"""How the daemon's requests leave the machine: which proxy each goes through
(``proxies``), tunnels through one for the light pool (``tunnel``), and the one place that
picks the client carrying a request (``director``)."""
