"""Stability AI's REST API (``kind = "stability"``): ``settings`` holds its
``[[providers]]`` fields, ``protocol`` the wire's rules, ``provider`` the rest."""
