"""Business processes started from the conversation: service tickets, order commands, the catalog and the
dispatch of one process input."""
