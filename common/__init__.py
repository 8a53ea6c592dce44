"""Code shared by the manager, the worker and the CLI; imports only proto."""
