"""oa's Kafka security variables -> kafka-python client options.

The same names oa reads (librdkafka's, as environment variables), so a test gives a foreign
client exactly the settings it gives oa-server:
  KAFKA_SECURITY_PROTOCOL     PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
  KAFKA_SASL_MECHANISM        PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
  KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD
  KAFKA_SSL_CA_LOCATION, KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION
  KAFKA_SSL_ENDPOINT_IDENTIFICATION   https | none
"""

import os


def security_options():
    """Keyword arguments for KafkaConsumer / KafkaProducer."""
    env = os.environ.get
    protocol = (env("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    options = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = env("KAFKA_SASL_MECHANISM")
        options["sasl_plain_username"] = env("KAFKA_SASL_USERNAME")
        options["sasl_plain_password"] = env("KAFKA_SASL_PASSWORD")
    if protocol.endswith("SSL"):
        if env("KAFKA_SSL_CA_LOCATION"):
            options["ssl_cafile"] = env("KAFKA_SSL_CA_LOCATION")
        if env("KAFKA_SSL_CERTIFICATE_LOCATION"):
            options["ssl_certfile"] = env("KAFKA_SSL_CERTIFICATE_LOCATION")
            options["ssl_keyfile"] = env("KAFKA_SSL_KEY_LOCATION")
        options["ssl_check_hostname"] = (env("KAFKA_SSL_ENDPOINT_IDENTIFICATION") or "https") != "none"
    return options
