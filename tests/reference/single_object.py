"""A reference reader and writer of Avro single-object encoding, built on fastavro (nobody
here wrote it), for tests/tests/avro_reference.rs.

    single_object.py SCHEMA_FILE < hex lines

For each line (one single-object record written by Trackledger), it checks the header (C3 01
and fastavro's own CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form), decodes
the datum with fastavro, writes the decoded value back with fastavro under the same header,
and prints one JSON line: {"record": <decoded, as text>, "rewritten": "<hex>"}. The first
output line is {"fingerprint": "<hex>"}. A record whose header does not match fails the run.
"""

import io
import json
import sys

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def main() -> int:
    with open(sys.argv[1]) as f:
        schema = parse_schema(json.load(f))
    fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    header = b"\xc3\x01" + bytes.fromhex(fp)
    print(json.dumps({"fingerprint": fp}))
    for number, line in enumerate(sys.stdin, 1):
        data = bytes.fromhex(line.strip())
        if data[:10] != header:
            print(f"record {number}: header {data[:10].hex()} is not {header.hex()}", file=sys.stderr)
            return 1
        body = io.BytesIO(data[10:])
        record = schemaless_reader(body, schema, None)
        if body.read():
            print(f"record {number}: trailing bytes", file=sys.stderr)
            return 1
        out = io.BytesIO()
        schemaless_writer(out, schema, record)
        print(json.dumps({"record": record, "rewritten": (header + out.getvalue()).hex()}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
