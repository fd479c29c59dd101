"""Tools around the service: the forewarn command, the demo, the doctor, the traffic generator, the example
notifier and the launchers of the embedded broker, ClickHouse server and child workers."""
