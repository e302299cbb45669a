"""Midjourney through the midjourney-proxy API (``kind = "midjourney"``): ``settings``
holds its ``[[providers]]`` fields, ``protocol`` the wire's rules, ``provider`` the rest."""
