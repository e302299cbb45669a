"""Where images are made: the provider interface (``base``) and the providers behind it."""
