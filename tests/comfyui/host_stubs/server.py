"""Stand-in for ComfyUI's ``server`` module: the ``PromptServer`` methods a node calls,
recording every message instead of sending it over a websocket."""

import struct


class BinaryEventTypes:
    """ComfyUI's binary websocket event numbers (3 is free text for a node)."""

    PREVIEW_IMAGE, UNENCODED_PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA = 1, 2, 3, 4


class PromptServer:
    instance = None

    def __init__(self):
        PromptServer.instance = self
        self.sent = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))

    def send_progress_text(self, text, node_id, sid=None):
        """Wire format of ComfyUI's TEXT event: 4-byte length of the node id, the id, the text."""
        body = text.encode("utf-8") if isinstance(text, str) else text
        node = str(node_id).encode("utf-8")
        self.send_sync(BinaryEventTypes.TEXT, struct.pack(">I", len(node)) + node + body, sid)
