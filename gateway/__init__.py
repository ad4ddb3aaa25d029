"""Gateway: the stateless edge. WebSocket sessions and REST; publishes commands, never decides."""
