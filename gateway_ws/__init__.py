"""gateway_ws: the WebSocket edge for apps; translates frames into gRPC calls and delivers events."""
