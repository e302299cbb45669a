"""The node pack's code; ``daemon_client.py`` is shared with the SD-WebUI extension."""
