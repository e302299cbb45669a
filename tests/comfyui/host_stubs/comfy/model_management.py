"""Stand-in for ``comfy.model_management``: only the interrupt flag a node touches.

Same names and behaviour as ComfyUI's (a process-wide flag that the check clears as
it raises), written for these tests; the real module initialises torch devices.
"""

import threading


class InterruptProcessingException(Exception):
    """ComfyUI ends a prompt with ``execution_interrupted`` when a node raises this."""


_lock = threading.Lock()
_flag = {"set": False}


def interrupt_current_processing(value=True):
    with _lock:
        _flag["set"] = bool(value)


def processing_interrupted():
    with _lock:
        return _flag["set"]


def throw_exception_if_processing_interrupted():
    with _lock:
        was_set, _flag["set"] = _flag["set"], False
    if was_set:
        raise InterruptProcessingException()
