"""Arting.ai: its protocol (``client``), identities (``tokens``), Cloudflare in front of it
(``cloudflare``), and the provider that runs jobs with them (``provider``)."""
