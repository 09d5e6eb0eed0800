"""The CLI's side of a team server: login credentials' use, the HTTP client, the server backend
(runs queued there and followed here), and runs, logs and the queue read from the server."""
