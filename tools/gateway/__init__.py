"""The gateway: the front door for clients (``exch gateway``), over HTTP and WebSocket."""
