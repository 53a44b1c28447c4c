"""dialwatch I/O: Kafka, Redis, files, HTTP, the command line."""
