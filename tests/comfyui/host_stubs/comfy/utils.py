"""Stand-in for ``comfy.utils``: ``ProgressBar`` and the global hook ComfyUI's server
installs (the hook is where the real app reports progress and checks for Cancel)."""

_hook = {"fn": None}


def set_progress_bar_global_hook(function):
    _hook["fn"] = function


class ProgressBar:
    """Signature as in ComfyUI: ``ProgressBar(total, node_id=None)``, values clamped to
    the total, each update passed to the hook that was current at construction."""

    def __init__(self, total, node_id=None):
        self.total, self.current, self.node_id = total, 0, node_id
        self.hook = _hook["fn"]

    def update_absolute(self, value, total=None, preview=None):
        self.total = self.total if total is None else total
        self.current = min(value, self.total)
        if self.hook:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
