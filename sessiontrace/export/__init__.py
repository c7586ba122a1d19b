"""The export path that configure() owns: queues, loss accounting and the durable spool."""
