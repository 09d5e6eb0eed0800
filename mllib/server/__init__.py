"""The team server: an HTTP API over the library (users and tokens, submissions into a durable
queue, runs, logs, blobs), and the dispatcher that hands queued runs to the server's agents."""
