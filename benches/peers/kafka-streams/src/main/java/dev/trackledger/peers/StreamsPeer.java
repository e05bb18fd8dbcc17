package dev.trackledger.peers;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.state.WindowStoreIterator;

/**
 * The processor's ledger stage as a team would write it on Kafka Streams (exactly_once_v2):
 * per input event, decode the Avro contract, deduplicate on event_id in a RocksDB window store,
 * look up and update the conversion's state in a RocksDB key-value store (reversals and lead
 * statuses join their original by conversion key, or wait for it), and write the ledger entry,
 * a receipt for a repeat, and the outbox record for a postback destination, all Avro, in the
 * task's transaction. What it leaves out of the real processor is listed in docs/BENCHMARKS.md.
 *
 * <p>Flags: --bootstrap, --input, --ledger, --receipts, --outbox, --quarantine, --app-id,
 * --state-dir, --schemas (the repo's schemas/avro), --threads [1], --window-days [200].
 * Prints "peer: running after restoring N records in S s" once running, for the benchmark.
 */
public final class StreamsPeer {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (!a.startsWith("--") || eq < 0) {
                throw new IllegalArgumentException("flags are --name=value, got " + a);
            }
            args.put(a.substring(2, eq), a.substring(eq + 1));
        }
        File schemas = new File(required(args, "schemas"));
        Contract contract = new Contract(
                parse(new File(schemas, "tracking_event.v3.avsc")),
                parse(new File(schemas, "ledger_entry.v3.avsc")),
                parse(new File(schemas, "receipt.v1.avsc")),
                parse(new File(schemas, "postback_outbox.v2.avsc")));
        Duration window = Duration.ofDays(Long.parseLong(args.getOrDefault("window-days", "200")));

        Topology topology = new Topology();
        topology.addSource("events", new ByteArrayDeserializer(), new ByteArrayDeserializer(),
                required(args, "input"));
        topology.addProcessor("ledger-stage", () -> new LedgerStage(contract, window), "events");
        topology.addStateStore(Stores.windowStoreBuilder(
                Stores.persistentWindowStore("dedup", window, window, false),
                Serdes.String(), Serdes.ByteArray()).withCachingEnabled(), "ledger-stage");
        topology.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore("conversions"),
                Serdes.String(), Serdes.ByteArray()).withCachingEnabled(), "ledger-stage");
        for (String sink : List.of("ledger", "receipts", "outbox", "quarantine")) {
            topology.addSink(sink, required(args, sink), new ByteArraySerializer(),
                    new ByteArraySerializer(), "ledger-stage");
        }

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, required(args, "app-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, required(args, "bootstrap"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.STATE_DIR_CONFIG, required(args, "state-dir"));
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args.getOrDefault("threads", "1"));
        // The benchmark runs the processor with the same session timeout.
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), "6000");

        KafkaStreams streams = new KafkaStreams(topology, props);
        Restores restores = new Restores();
        streams.setGlobalStateRestoreListener(restores);
        CountDownLatch stopped = new CountDownLatch(1);
        long started = System.nanoTime();
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.RUNNING && restores.reported.compareAndSet(0, 1)) {
                System.out.printf("peer: running after restoring %d records in %.3f s (%.3f s since start)%n",
                        restores.records.get(), restores.seconds(),
                        (System.nanoTime() - started) / 1e9);
                System.out.flush();
            }
            if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
                stopped.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            // Leaving the group lets a restart take the partitions at once, rather than after
            // the session timeout (a Streams member stays in the group on close by default).
            streams.close(new KafkaStreams.CloseOptions().timeout(Duration.ofSeconds(30)).leaveGroup(true));
            stopped.countDown();
        }));
        streams.start();
        stopped.await();
        if (streams.state() == KafkaStreams.State.ERROR) {
            System.exit(1);
        }
    }

    private static String required(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + "= is required");
        }
        return v;
    }

    private static Schema parse(File f) throws IOException {
        return new Schema.Parser().parse(f);
    }

    record Contract(Schema event, Schema ledger, Schema receipt, Schema outbox) {}

    /** Restored records and time, summed over every store and partition. */
    static final class Restores implements StateRestoreListener {
        final AtomicLong records = new AtomicLong();
        final AtomicLong firstStart = new AtomicLong();
        final AtomicLong lastEnd = new AtomicLong();
        final AtomicLong reported = new AtomicLong();

        @Override
        public void onRestoreStart(TopicPartition tp, String store, long from, long to) {
            firstStart.compareAndSet(0, System.nanoTime());
        }

        @Override
        public void onBatchRestored(TopicPartition tp, String store, long end, long n) {}

        @Override
        public void onRestoreEnd(TopicPartition tp, String store, long total) {
            records.addAndGet(total);
            lastEnd.set(System.nanoTime());
        }

        double seconds() {
            long start = firstStart.get();
            return start == 0 ? 0 : (lastEnd.get() - start) / 1e9;
        }
    }

    /** The conversion's state: its status, original, net amounts and entries awaiting it. */
    static final class Conversion {
        String status = "";
        String original = "";
        long originalRevenue;
        long netRevenue;
        long netPayout;
        final List<Pending> pending = new ArrayList<>();

        record Pending(String eventId, String name, long amount) {}

        static Conversion read(byte[] bytes) {
            Conversion c = new Conversion();
            if (bytes == null) {
                return c;
            }
            try (DataInputStream in = new DataInputStream(new java.io.ByteArrayInputStream(bytes))) {
                c.status = in.readUTF();
                c.original = in.readUTF();
                c.originalRevenue = in.readLong();
                c.netRevenue = in.readLong();
                c.netPayout = in.readLong();
                for (int n = in.readInt(); n > 0; n--) {
                    c.pending.add(new Pending(in.readUTF(), in.readUTF(), in.readLong()));
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return c;
        }

        byte[] write() {
            ByteArrayOutputStream bytes = new ByteArrayOutputStream(64);
            try (DataOutputStream out = new DataOutputStream(bytes)) {
                out.writeUTF(status);
                out.writeUTF(original);
                out.writeLong(originalRevenue);
                out.writeLong(netRevenue);
                out.writeLong(netPayout);
                out.writeInt(pending.size());
                for (Pending p : pending) {
                    out.writeUTF(p.eventId);
                    out.writeUTF(p.name);
                    out.writeLong(p.amount);
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return bytes.toByteArray();
        }
    }

    static final class LedgerStage implements Processor<byte[], byte[], byte[], byte[]> {
        private final Contract contract;
        private final long windowMs;
        private final BinaryMessageDecoder<GenericRecord> decoder;
        private final BinaryMessageEncoder<GenericRecord> ledgerEncoder;
        private final BinaryMessageEncoder<GenericRecord> receiptEncoder;
        private final BinaryMessageEncoder<GenericRecord> outboxEncoder;
        private final GenericDatumWriter<GenericRecord> eventWriter;
        private final ByteArrayOutputStream fingerprintBytes = new ByteArrayOutputStream(512);
        private BinaryEncoder fingerprintEncoder;
        private ProcessorContext<byte[], byte[]> context;
        private WindowStore<String, byte[]> dedup;
        private KeyValueStore<String, byte[]> conversions;

        LedgerStage(Contract contract, Duration window) {
            this.contract = contract;
            this.windowMs = window.toMillis();
            GenericData model = GenericData.get();
            this.decoder = new BinaryMessageDecoder<>(model, contract.event());
            this.ledgerEncoder = new BinaryMessageEncoder<>(model, contract.ledger());
            this.receiptEncoder = new BinaryMessageEncoder<>(model, contract.receipt());
            this.outboxEncoder = new BinaryMessageEncoder<>(model, contract.outbox());
            this.eventWriter = new GenericDatumWriter<>(contract.event(), model);
        }

        @Override
        public void init(ProcessorContext<byte[], byte[]> context) {
            this.context = context;
            this.dedup = context.getStateStore("dedup");
            this.conversions = context.getStateStore("conversions");
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            GenericRecord event;
            try {
                event = decoder.decode(record.value());
            } catch (IOException | RuntimeException e) {
                context.forward(record, "quarantine");
                return;
            }
            RecordMetadata at = context.recordMetadata().orElseThrow();
            long now = System.currentTimeMillis();
            String eventId = event.get("event_id").toString();
            long fingerprint = fingerprint(event);
            long ts = record.timestamp();

            // Dedup value: fingerprint, occurrences, first received_at.
            try (WindowStoreIterator<byte[]> seen = dedup.fetch(eventId, ts - windowMs, ts)) {
                if (seen.hasNext()) {
                    KeyValue<Long, byte[]> first = seen.next();
                    ByteBuffer v = ByteBuffer.wrap(first.value);
                    long firstFingerprint = v.getLong();
                    int occurrence = v.getInt() + 1;
                    long firstReceived = v.getLong();
                    dedup.put(eventId, dedupValue(firstFingerprint, occurrence, firstReceived), first.key);
                    GenericRecord receipt = new GenericData.Record(contract.receipt());
                    receipt.put("event_id", eventId);
                    receipt.put("conversion_key", new String(record.key(), StandardCharsets.UTF_8));
                    receipt.put("kind", symbol(contract.receipt(), "kind",
                            firstFingerprint == fingerprint ? "DUPLICATE" : "CONFLICT"));
                    receipt.put("event_name", event.get("event_name").toString());
                    receipt.put("occurrence", occurrence);
                    receipt.put("route", event.get("route"));
                    receipt.put("delivery_attempt", event.get("delivery_attempt"));
                    receipt.put("received_at", event.get("received_at"));
                    receipt.put("first_received_at", firstReceived);
                    receipt.put("content_fingerprint", Long.toHexString(fingerprint));
                    receipt.put("first_fingerprint", Long.toHexString(firstFingerprint));
                    receipt.put("is_test", event.get("is_test"));
                    receipt.put("recorded_at", now);
                    receipt.put("input_partition", at.partition());
                    receipt.put("input_offset", at.offset());
                    context.forward(record.withValue(encode(receiptEncoder, receipt)), "receipts");
                    return;
                }
            }
            dedup.put(eventId, dedupValue(fingerprint, 1, (Long) event.get("received_at")), ts);

            String key = new String(record.key(), StandardCharsets.UTF_8);
            Conversion c = Conversion.read(conversions.get(key));
            String name = event.get("event_name").toString();
            long revenue = micros(event.get("revenue"));
            long payout = micros(event.get("payout"));
            List<String> adopted = new ArrayList<>();
            String link = "NONE";
            String linked = null;
            long signedRevenue = 0;
            long signedPayout = 0;
            switch (name) {
                case "CLICK" -> c.status = "CLICKED";
                case "SALE", "LEAD" -> {
                    c.original = eventId;
                    c.originalRevenue = revenue;
                    c.status = name.equals("SALE") ? "SOLD" : "LEAD";
                    signedRevenue = revenue;
                    signedPayout = payout;
                    c.netRevenue += revenue;
                    c.netPayout += payout;
                    for (Conversion.Pending p : c.pending) {
                        adopted.add(p.eventId());
                        apply(c, p.name(), p.amount());
                    }
                    c.pending.clear();
                }
                default -> {
                    if (c.original.isEmpty()) {
                        link = "AWAITING_ORIGINAL";
                        c.pending.add(new Conversion.Pending(eventId, name, revenue));
                        c.status = "AWAITING_ORIGINAL";
                    } else {
                        link = "LINKED";
                        linked = c.original;
                        long before = c.netPayout;
                        apply(c, name, revenue);
                        signedRevenue = -revenue;
                        signedPayout = c.netPayout - before;
                    }
                }
            }
            conversions.put(key, c.write());

            GenericRecord entry = new GenericData.Record(contract.ledger());
            entry.put("conversion_key", key);
            entry.put("link_status", symbol(contract.ledger(), "link_status", link));
            entry.put("linked_event_id", linked);
            entry.put("adopted_event_ids", adopted);
            entry.put("signed_revenue", decimal(signedRevenue));
            entry.put("signed_payout", decimal(signedPayout));
            entry.put("conversion_status", symbol(contract.ledger(), "conversion_status", c.status));
            entry.put("net_revenue", decimal(c.netRevenue));
            entry.put("net_payout", decimal(c.netPayout));
            entry.put("flags", List.of());
            entry.put("recorded_at", now);
            entry.put("input_partition", at.partition());
            entry.put("input_offset", at.offset());
            // The ledger's event record is a prefix of the contract's (v3 moved three fields
            // up to the entry), so the decoded record is written as it is.
            entry.put("event", event);
            entry.put("payout_source", symbol(contract.ledger(), "payout_source", payout != 0 ? "EVENT" : "NONE"));
            entry.put("payout_rule", null);
            entry.put("match_keys", event.get("match_keys"));
            entry.put("platform_ids", event.get("platform_ids"));
            context.forward(record.withValue(encode(ledgerEncoder, entry)), "ledger");

            // The benchmark's destinations (tests/src/processor.rs): non-test sales and their
            // reversals, and approved leads.
            boolean test = (Boolean) event.get("is_test");
            String destination = switch (name) {
                case "SALE", "REFUND", "CHARGEBACK" -> test ? null : "network";
                case "APPROVED_LEAD" -> "lead-approvals";
                default -> null;
            };
            if (destination != null) {
                GenericRecord outbox = new GenericData.Record(contract.outbox());
                outbox.put("destination", destination);
                outbox.put("idempotency_key", eventId);
                outbox.put("enqueued_at", now);
                outbox.put("entry", entry);
                outbox.put("match_keys", event.get("match_keys"));
                outbox.put("platform_ids", event.get("platform_ids"));
                context.forward(record.withValue(encode(outboxEncoder, outbox)), "outbox");
            }
        }

        /** A reversal or status change applied to a conversion whose original is known. */
        private static void apply(Conversion c, String name, long amount) {
            switch (name) {
                case "REFUND", "CHARGEBACK" -> {
                    if (c.originalRevenue > 0) {
                        c.netPayout -= BigInteger.valueOf(c.netPayout).multiply(BigInteger.valueOf(amount))
                                .divide(BigInteger.valueOf(Math.max(c.netRevenue, 1))).longValue();
                    }
                    c.netRevenue -= amount;
                    c.status = name.equals("CHARGEBACK") ? "CHARGED_BACK"
                            : c.netRevenue <= 0 ? "REFUNDED" : "PARTIALLY_REFUNDED";
                }
                case "CANCELED" -> c.status = "CANCELED";
                case "QUALIFIED_LEAD" -> c.status = "QUALIFIED";
                case "APPROVED_LEAD" -> c.status = "APPROVED";
                case "REJECTED_LEAD" -> c.status = "REJECTED";
                default -> { }
            }
        }

        /** FNV-1a 64 of the event's encoding with the ingest-stamped fields blanked. */
        private long fingerprint(GenericRecord event) {
            GenericData.Record copy = new GenericData.Record((GenericData.Record) event, false);
            if (copy.get("occurred_at").equals(copy.get("received_at"))) {
                copy.put("occurred_at", 0L);
            }
            copy.put("received_at", 0L);
            copy.put("route", "");
            copy.put("delivery_attempt", null);
            fingerprintBytes.reset();
            try {
                fingerprintEncoder = EncoderFactory.get().binaryEncoder(fingerprintBytes, fingerprintEncoder);
                eventWriter.write(copy, fingerprintEncoder);
                fingerprintEncoder.flush();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            long h = 0xcbf29ce484222325L;
            for (byte b : fingerprintBytes.toByteArray()) {
                h ^= b & 0xff;
                h *= 0x100000001b3L;
            }
            return h;
        }

        private static byte[] dedupValue(long fingerprint, int occurrences, long firstReceived) {
            return ByteBuffer.allocate(20).putLong(fingerprint).putInt(occurrences).putLong(firstReceived).array();
        }

        private static long micros(Object decimal) {
            if (decimal == null) {
                return 0;
            }
            ByteBuffer b = ((ByteBuffer) decimal).duplicate();
            byte[] a = new byte[b.remaining()];
            b.get(a);
            return new BigInteger(a).longValueExact();
        }

        private static ByteBuffer decimal(long micros) {
            return ByteBuffer.wrap(BigInteger.valueOf(micros).toByteArray());
        }

        private static GenericData.EnumSymbol symbol(Schema record, String field, String symbol) {
            Schema s = record.getField(field).schema();
            return new GenericData.EnumSymbol(s, symbol);
        }

        private static byte[] encode(BinaryMessageEncoder<GenericRecord> encoder, GenericRecord r) {
            try {
                return encoder.encode(r).array();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    private StreamsPeer() {}
}
