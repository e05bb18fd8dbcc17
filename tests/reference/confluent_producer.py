"""A producer nobody here wrote: confluent-kafka's AvroSerializer with its SchemaRegistryClient,
publishing an affiliate day straight to the events topic, as a checkout backend would
(docs/PRODUCERS.md). For tests/tests/registry.rs.

    confluent_producer.py BOOTSTRAP REGISTRY_URL TOPIC RUN

The serializer takes the subject's latest schema from the registry (TopicNameStrategy:
TOPIC-value) and writes the Confluent wire format. The day, all on 2026-11-20, orders
o-1..o-9 of run RUN:
- eight SALEs (o-1..o-8); o-1 is sent three times, as a network retrying would;
- a REFUND of o-3 in full and a CHARGEBACK of o-4;
- one invalid SALE, o-9: revenue without a currency.
Prints the number of records delivered.
"""

import datetime
import decimal
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

DAY = datetime.datetime(2026, 11, 20, tzinfo=datetime.timezone.utc)

SALES = [  # order, revenue, payout
    ("o-1", "49.99", "20.00"),
    ("o-2", "19.99", "8.00"),
    ("o-3", "29.99", "12.00"),
    ("o-4", "99.00", "40.00"),
    ("o-5", "9.95", "4.00"),
    ("o-6", "149.50", "60.00"),
    ("o-7", "24.00", "10.00"),
    ("o-8", "74.25", "30.00"),
]


def event(run, event_id, name, order, minute, revenue, payout, currency="USD"):
    at = DAY + datetime.timedelta(minutes=minute)
    # Every field of the contract: optional ones null unless given.
    return {
        "event_id": f"{run}-{event_id}",
        "event_name": name,
        "occurred_at": at,
        "occurred_at_original": None,
        "source_timezone": None,
        "received_at": at,
        "settled_at": None,
        "network": "first_party",
        "order_id": f"{run}-{order}",
        "transaction_id": None,
        "parent_order_id": None,
        "rebill_sequence": None,
        "lead_id": None,
        "native_event_type": None,
        "status_only": False,
        "click_id": None,
        "affiliate_id": "aff-7",
        "campaign_id": None,
        "offer_id": "keto-vsl",
        "source": None,
        "placement": None,
        "utm_source": None,
        "utm_medium": None,
        "utm_campaign": None,
        "utm_term": None,
        "utm_content": None,
        "sub1": None,
        "sub2": None,
        "sub3": None,
        "sub4": None,
        "sub5": None,
        "revenue": decimal.Decimal(revenue),
        "payout": decimal.Decimal(payout),
        "currency": currency,
        "payout_status": None,
        "refund_status": None,
        "is_test": False,
        "consent_state": "UNKNOWN",
        "data_minimization": [],
        "ip_hash": None,
        "email_hash": None,
        "user_agent": None,
        "route": "kafka:checkout",
        "delivery_attempt": None,
        "attributes": {"producer": "confluent-kafka-python"},
        "quality_flags": [],
        "match_keys": None,
    }


def main() -> int:
    bootstrap, registry_url, topic, run = sys.argv[1:5]
    registry = SchemaRegistryClient({"url": registry_url})
    # The contract is registered by `trackctl schema register`; a producer only uses it.
    serialize = AvroSerializer(
        registry, conf={"auto.register.schemas": False, "use.latest.version": True}
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    day = []
    for i, (order, revenue, payout) in enumerate(SALES):
        day.append(event(run, f"sale-{order}", "SALE", order, 60 + i, revenue, payout))
    day.append(day[0])  # the network retries o-1 ...
    day.append(day[0])  # ... twice
    day.append(event(run, "refund-o-3", "REFUND", "o-3", 300, "29.99", "12.00"))
    day.append(event(run, "chargeback-o-4", "CHARGEBACK", "o-4", 400, "99.00", "40.00"))
    day.append(event(run, "sale-o-9", "SALE", "o-9", 500, "10.00", "0", currency=None))

    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    for record in day:
        value = serialize(record, SerializationContext(topic, MessageField.VALUE))
        # The partition key rule (docs/PRODUCERS.md): {network}/order/{order_id}.
        key = f"{record['network']}/order/{record['order_id']}"
        producer.produce(topic, key=key.encode(), value=value, on_delivery=delivered)
    remaining = producer.flush(30)
    if remaining or failures:
        print(f"{remaining} undelivered, failures: {failures}", file=sys.stderr)
        return 1
    print(len(day))
    return 0


if __name__ == "__main__":
    sys.exit(main())
