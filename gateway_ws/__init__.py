"""gateway_ws: the WebSocket edge for apps.

It authenticates, translates frames into gRPC calls, and delivers events; it is never the source
of truth for a message.
"""
