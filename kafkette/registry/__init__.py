"""kafkette's built-in Schema Registry core: subjects, versions, ids, configs, modes and
compatibility decisions, sans-IO (Confluent Schema Registry's REST semantics).

`state.RegistryState` is rebuilt from the records of the `_schemas` topic (Confluent's
key/value JSON layout, `records`) and answers reads; a write is planned here as the
records to append, and the caller (kafkette.server.schema_registry) appends them and
applies them once read back, so every node of a cluster ends with the same state in
the same order. Schema types: `avro`, `json_schema`, `protobuf`.
"""
