"""The Faust worker: the app, its topics and tables, one module per agent, timer and service, and the Kafka
plumbing they share. The only code that imports Faust."""
