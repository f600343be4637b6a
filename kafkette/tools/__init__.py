"""Command-line admin tools (`kafkette topics`, `kafkette groups`, and Kafka's own tools
under their names: kafka_topics.py = kafka-topics.sh, ...): a small synchronous
Kafka client, so that users without Kafka's Java tools can inspect any
Kafka-compatible broker. This package is a client: it never imports kafkette.broker
or kafkette.server, only the wire messages."""
