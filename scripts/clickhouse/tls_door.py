"""ClickHouse's HTTPS door in the local stack: a TLS terminator in front of the engine's HTTP
port, as a load balancer or proxy stands in front of ClickHouse in many deployments.

Used only by scripts/stack. The engine from the chdb wheel cannot open an HTTPS listener
(clickhouse-local's SYSTEM START LISTEN takes only HTTP and TCP), so TLS ends here, with the
stack's own CA-signed certificate; the bytes behind it are the real ClickHouse's.

    tls_door.py LISTEN_PORT UPSTREAM_PORT CERT_FILE KEY_FILE
"""

import asyncio
import ssl
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(listen: int, upstream: int, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, ssl=context)
    async with server:
        await server.serve_forever()


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    listen, upstream, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    try:
        asyncio.run(serve(listen, upstream, cert, key))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
