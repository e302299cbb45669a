"""arting-2api: Arting.ai's image models behind the protocols clients already speak."""

__version__ = "0.1.0"
